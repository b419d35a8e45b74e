"""One file at a time, from plan to final path: download, verify, retry, place.

``Worker.file(remote)`` keeps a file that already sits at its final path with the right size
and digest (hashing, not downloading), else stages it, lets the engine fill the missing ranges
(at most ``concurrency`` files download at once) while a thread hashes the written prefix
as it arrives (inline in the transfer threads, ``verify.Verifier.follow`` reading back only
what arrived out of order), checks the digest, re-downloads it from
scratch on a mismatch up to ``download_retry`` times, then fsyncs and renames it into place.
``Tracker`` holds the byte and file counters behind the progress callback.

Logs: ``downloading file``, ``verification passed``/``verification failed``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pathlib
import stat
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import aiofiles.os

from model_agent import blocking, errors, manifest, metrics, planning, verify
from model_agent.download import engine, staging
from model_agent.storage import base
from model_agent.trust import confine

__all__ = [
    "FileProgress",
    "Progress",
    "Tracker",
    "Worker",
    "check_space",
    "final_path",
    "resumed_bytes",
    "space_needs",
]

log = logging.getLogger("model_agent.download")

_PROGRESS_INTERVAL = 0.5


@dataclasses.dataclass(frozen=True)
class FileProgress:
    """One file being downloaded right now."""

    path: str
    size: int
    completed_bytes: int


@dataclasses.dataclass(frozen=True)
class Progress:
    phase: str  # "scanning" | "downloading" | "finalizing"
    total_bytes: int
    completed_bytes: int
    total_files: int
    completed_files: int
    speed_bytes_per_sec: float
    #: Bytes actually received from the source (files verified in place count in
    #: ``completed_bytes`` only).
    received_bytes: int = 0
    #: The files downloading at this moment (staged bytes included), in start order.
    files: tuple[FileProgress, ...] = ()
    #: Bytes received by source (``origin`` / ``peer``).
    bytes_by_source: Mapping[str, int] = dataclasses.field(default_factory=dict)


class Tracker:
    """Byte and file counters, the speed estimate and the throttled progress callback."""

    def __init__(self, callback: Callable[[Progress], None] | None) -> None:
        self._callback = callback
        self.phase = "scanning"
        self.total_bytes = self.completed_bytes = self.received = 0
        self.total_files = self.completed_files = 0
        self._window: tuple[float, int] = (time.monotonic(), 0)
        self._speed = 0.0
        self._emitted = 0.0
        #: The files downloading now, by path (their staged state holds the written bytes).
        self.active: dict[str, staging.StagedFile] = {}
        self.by_source: dict[str, int] = {}

    def add(self, nbytes: int, source: str = "origin") -> None:
        self.received += nbytes
        self.by_source[source] = self.by_source.get(source, 0) + nbytes
        self.completed_bytes += nbytes
        self.emit()

    def emit(self, *, force: bool = False) -> None:
        now = time.monotonic()
        started, base_bytes = self._window
        if now - started >= 1.0:
            self._speed = (self.received - base_bytes) / (now - started)
            self._window = (now, self.received)
        if self._callback is None or (not force and now - self._emitted < _PROGRESS_INTERVAL):
            return
        self._emitted = now
        self._callback(
            Progress(
                self.phase,
                self.total_bytes,
                max(0, min(self.completed_bytes, self.total_bytes)),
                self.total_files,
                self.completed_files,
                round(self._speed, 1),
                self.received,
                tuple(
                    FileProgress(path, staged.size, min(staged.completed_bytes, staged.size))
                    for path, staged in self.active.items()
                ),
                dict(self.by_source),
            )
        )


async def final_path(destination: pathlib.Path, name: str) -> pathlib.Path:
    """``destination/name``, its directory created only after each existing component was
    checked to resolve inside ``destination`` (one thread call); ``UnsafePathError``
    otherwise."""
    final = destination / planning.safe_relative_path(name)
    try:
        await blocking.to_end(confine.make_dirs, destination, final.parent)
    except errors.UnsafePathError as exc:
        raise errors.UnsafePathError(
            f"{name} would be written outside {destination}: {exc}"
        ) from None
    return final


_lstat = aiofiles.os.wrap(os.lstat)


def space_needs(
    stage: staging.Staging, destination: pathlib.Path, files: list[base.RemoteFile]
) -> list[tuple[str, int, int]]:
    """``(directory, bytes, files)`` still to be written on each filesystem: what is left to
    download into the staging directory and, across filesystems, the whole model at the
    destination (blocking: one thread call stats every final path and reads every sidecar)."""
    needed = count = 0
    for file in files:
        try:
            if (destination / file.path).stat().st_size == file.size:
                continue
        except OSError:
            pass
        kept = stage.resumable_bytes(path=file.path, size=file.size, identity=file.identity)
        needed += file.size - kept
        count += 1
    needs = [(str(stage.root), needed, count)]
    if os.stat(stage.root).st_dev != os.stat(destination).st_dev:
        needs.append((str(destination), sum(f.size for f in files), len(files)))
    return needs


def resumed_bytes(stage: staging.Staging, files: list[base.RemoteFile]) -> int:
    """Bytes earlier attempts left that a rerun keeps (blocking: reads every sidecar)."""
    return sum(stage.resumable_bytes(path=f.path, size=f.size, identity=f.identity) for f in files)


async def check_space(
    stage: staging.Staging, destination: pathlib.Path, files: list[base.RemoteFile], what: str
) -> None:
    """Refuse to start (``NoSpaceError``) when the staging filesystem cannot hold what is left
    to download, or, across filesystems, the destination cannot hold the model."""
    for directory, needed, _ in await asyncio.to_thread(space_needs, stage, destination, files):
        await staging.check_space(pathlib.Path(directory), needed, what=what)


class Blame(Protocol):
    """Who sent the bytes of a file that failed verification (``peers.router.Router``)."""

    def blame(self, path: str) -> bool: ...


class Worker:
    """Downloads, verifies and places the files of one pull; collects manifest entries."""

    def __init__(
        self,
        *,
        destination: pathlib.Path,
        stage: staging.Staging,
        fetcher: engine.Engine,
        tracker: Tracker,
        concurrency: int,
        download_retry: int,
        same_filesystem: bool,
        recorder: metrics.Metrics | None = None,
        labels: metrics.ModelLabels | None = None,
        blame: Blame | None = None,
    ) -> None:
        self.blame = blame
        #: Paths verified and placed so far, and the staged files of the others from their
        #: first byte until they are placed (what the peer server may read).
        self.placed: set[str] = set()
        self.serving: dict[str, staging.StagedFile] = {}
        self.destination, self.stage, self.fetcher, self.tracker = (
            destination,
            stage,
            fetcher,
            tracker,
        )
        self.download_retry = download_retry
        self.recorder, self.labels = recorder, labels
        self.verifier = verify.Verifier(parallel=max(2, concurrency))
        self.slots = asyncio.Semaphore(concurrency)
        self.same_fs = same_filesystem
        self.entries: list[manifest.Entry] = []

    def _verified(self, result: str, seconds: float, algorithm: str | None = None) -> None:
        if self.recorder is not None and self.labels is not None:
            self.recorder.verified(self.labels, result=result, seconds=seconds, algorithm=algorithm)

    async def _adopt(self, file: base.RemoteFile, final: pathlib.Path) -> bool:
        """Keep a file already at its final path when its size and digest match."""
        expected = file.checksum
        try:
            found = await _lstat(final)  # a symlink is never adopted
            if expected is None or not stat.S_ISREG(found.st_mode) or found.st_size != file.size:
                return False
            await self.verifier.verify(final, name=file.path, size=file.size, expected=expected)
        except (OSError, errors.ChecksumMismatchError):
            return False
        log.info("verification passed for %s (already in place)", file.path)
        return True

    async def file(self, file: base.RemoteFile) -> None:
        final = await final_path(self.destination, file.path)
        expected = file.checksum
        if await self._adopt(file, final):
            self.tracker.completed_bytes += file.size
        else:
            await self._download(file, final)
        placed = await _lstat(final)
        digest = str(expected) if expected else None
        self.entries.append(manifest.Entry(file.path, file.size, placed.st_mtime_ns, digest))
        self.placed.add(file.path)
        self.tracker.completed_files += 1
        self.tracker.emit(force=True)

    async def _download(self, file: base.RemoteFile, final: pathlib.Path) -> None:
        expected = file.checksum
        attempts = self.download_retry + 1
        attempt = 0
        while attempt < attempts:
            attempt += 1
            staged = await self.stage.stage(path=file.path, size=file.size, identity=file.identity)
            self.serving[file.path] = staged
            digest = self.verifier.digest_for(staged, expected)
            hashing = asyncio.create_task(self.verifier.follow(staged, digest))
            try:
                async with self.slots:
                    if not staged.done:
                        log.info(
                            "downloading file %s (%d bytes, %d already staged)",
                            file.path,
                            file.size,
                            staged.completed_bytes,
                            extra={"file": file.path, "bytes": file.size},
                        )
                        self.tracker.active[file.path] = staged
                        try:
                            await self.fetcher.fetch(file, staged, digest=digest)
                        finally:
                            self.tracker.active.pop(file.path, None)
                started = time.monotonic()
                self.verifier.check(await hashing, name=file.path, expected=expected)
            except errors.ChecksumMismatchError as exc:
                self._verified("failure", 0.0)
                log.warning("verification failed (attempt %d of %d): %s", attempt, attempts, exc)
                self.serving.pop(file.path, None)
                await staged.discard()
                self.tracker.completed_bytes -= file.size
                if self.blame is not None and self.blame.blame(file.path):
                    attempt -= 1  # peers sent bad bytes and are dropped: not this file's fault
                    continue
                if attempt == attempts:
                    raise verify.ChecksumFailedError(
                        f"{exc} (after {attempts} downloads)"
                    ) from None
                continue
            finally:
                if not hashing.done():
                    hashing.cancel()
                    await asyncio.wait([hashing])
            self._verified(
                "success" if expected else "size_only",
                time.monotonic() - started,
                expected.algorithm if expected else None,
            )
            algorithm = expected.algorithm if expected else "size only"
            log.info("verification passed for %s (%s)", file.path, algorithm)
            await staging.place(staged, final, same_filesystem=self.same_fs, root=self.destination)
            self.placed.add(file.path)  # served from its final path from now on
            self.serving.pop(file.path, None)
            return
