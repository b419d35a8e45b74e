"""Staging and resume: where partial files live, what they record, how they reach final paths.

Every planned file is written to ``<staging>/<digest of its path>.part`` with a JSON sidecar
(``.json``) that records the source identity, the size and the byte ranges already written.
``<staging>`` is ``<destination>/.model-agent-partial`` (same filesystem as the final paths) or,
with ``--temp-dir``, ``<temp-dir>/model-agent-<digest of the destination>``. A rerun after a
crash keeps the completed ranges when the identity and size are unchanged, else starts the file
over. ``place`` makes a verified file appear at its final path in one rename (fsync first);
across filesystems it copies to a temporary name beside the final path first, so a partial
file is never visible at a final path. One pull holds ``<staging>/.lock`` (flock) at a time.
``<staging>/plan.json`` lists every name a pull of this destination planned (the union over
attempts): with the completion manifest it is what a delete may remove, and nothing else.
The staging directory is created through ``trust.confine`` (a planted symlink never leads
out) and removed without following one.

Owns the staging directory; must not download or hash (``engine``, ``verify`` do).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import pathlib
import secrets
import time
from typing import Any

import aiofiles
import aiofiles.os

from model_agent import blocking, errors
from model_agent.download import ranges
from model_agent.trust import confine

__all__ = ["STAGING_NAME", "StagedFile", "Staging", "StagingBusyError", "check_space", "place"]

STAGING_NAME = ".model-agent-partial"
_SIDECAR_VERSION = 1
_SIDECAR_MAX_BYTES = 1024 * 1024
_CHECKPOINT_SECONDS = 0.5
_PLAN = "plan.json"
_KEEP = frozenset({".lock", _PLAN})
#: A cross-filesystem copy moves this much per thread hop: cancellation lands between steps.
_COPY_STEP = 64 * 1024**2


class StagingBusyError(errors.RetryableError):
    """Another pull holds the staging lock of the same destination."""

    reason = "Busy"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


async def _write_json(path: pathlib.Path, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON: a unique temp name, then one rename."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        async with aiofiles.open(tmp, "w", encoding="utf-8") as handle:
            await handle.write(json.dumps(value, separators=(",", ":")))
        await aiofiles.os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(tmp)


def _atomic_write_json(path: pathlib.Path, value: Any) -> None:
    """``_write_json`` for code already in a thread (blocking)."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(value, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _sync_data(path: pathlib.Path) -> None:
    """fdatasync ``path`` (blocking): what was written to it so far survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


_sync_data_async = aiofiles.os.wrap(_sync_data)


@dataclasses.dataclass(eq=False)
class StagedFile:
    """One file being downloaded: its temp path, its sidecar and the ranges written so far."""

    path: str
    size: int
    identity: str
    temp_path: pathlib.Path
    sidecar_path: pathlib.Path
    completed: tuple[ranges.Range, ...] = ()
    _saved_at: float = 0.0
    _lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    #: Set whenever ``mark`` records new bytes (a hasher following the download waits on it).
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    @property
    def completed_bytes(self) -> int:
        return ranges.covered(self.completed)

    @property
    def done(self) -> bool:
        return not ranges.missing(self.completed, self.size)

    def missing(self) -> tuple[ranges.Range, ...]:
        return ranges.missing(self.completed, self.size)

    def mark(self, start: int, end: int) -> None:
        """Record bytes ``[start, end)`` as written (to the page cache) in the temp file."""
        if end > start:
            self.completed = ranges.add(self.completed, (start, end))
            self.changed.set()

    @property
    def frontier(self) -> int:
        """End of the contiguous written prefix ``[0, frontier)``."""
        first = self.completed[0] if self.completed else None
        return first[1] if first is not None and first[0] == 0 else 0

    def _record(self) -> dict[str, Any]:
        return {
            "version": _SIDECAR_VERSION,
            "path": self.path,
            "size": self.size,
            "identity": self.identity,
            "ranges": [list(r) for r in self.completed],
        }

    async def checkpoint(self, *, force: bool = False) -> None:
        """Write the sidecar, at most twice a second unless ``force``. The ranges it records
        are taken first, then the temp file is fdatasynced, then the sidecar replaced: a
        sidecar never claims bytes that a power cut could lose. Losing the last half second only
        costs a re-fetch; a lying sidecar is still caught by verification."""
        now = time.monotonic()
        if not force and now - self._saved_at < _CHECKPOINT_SECONDS:
            return
        async with self._lock:
            self._saved_at = now
            await blocking.finish(self._save(self._record()))

    async def _save(self, record: dict[str, Any]) -> None:
        await _sync_data_async(self.temp_path)
        await _write_json(self.sidecar_path, record)

    async def reset(self) -> None:
        """Forget every written range and empty the temp file (after a checksum mismatch)."""
        self.completed = ()
        await blocking.finish(self._empty())

    async def _empty(self) -> None:
        async with aiofiles.open(self.temp_path, "wb") as handle:
            await handle.truncate(self.size)
        await _write_json(self.sidecar_path, self._record())

    async def discard(self) -> None:
        await blocking.finish(self._discard())

    async def _discard(self) -> None:
        for leftover in (self.temp_path, self.sidecar_path):
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(leftover)


async def _read_sidecar(path: pathlib.Path) -> dict[str, Any] | None:
    try:
        if (await aiofiles.os.stat(path)).st_size > _SIDECAR_MAX_BYTES:
            return None
        async with aiofiles.open(path, encoding="utf-8") as handle:
            value = json.loads(await handle.read())
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict) or value.get("version") != _SIDECAR_VERSION:
        return None
    return value


def _read_sidecar_blocking(path: pathlib.Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > _SIDECAR_MAX_BYTES:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict) or value.get("version") != _SIDECAR_VERSION:
        return None
    return value


def _kept_ranges(
    previous: dict[str, Any] | None, *, path: str, size: int, identity: str
) -> tuple[ranges.Range, ...] | None:
    """The ranges a sidecar lets a rerun keep, or None when it is for something else."""
    if (
        previous is None
        or previous.get("identity") != identity
        or previous.get("size") != size
        or previous.get("path") != path
    ):
        return None
    try:
        return ranges.normalize((int(s), min(int(e), size)) for s, e in previous.get("ranges", []))
    except (TypeError, ValueError):
        return None


class Staging:
    """The staging directory of one destination; ``async with`` (or, in a thread, ``with``)
    takes its lock."""

    def __init__(self, destination: pathlib.Path, *, temp_dir: pathlib.Path | None = None):
        self.destination = destination
        if temp_dir is None:
            self.root = destination / STAGING_NAME
            self.base = destination
        else:
            resolved = os.path.realpath(destination)
            self.root = temp_dir / f"model-agent-{_digest(resolved)}"
            self.base = temp_dir
        self._lock_fd: int | None = None

    async def __aenter__(self) -> Staging:
        await blocking.to_end(self._make_root)
        self._lock_fd = await blocking.opened(_lock, self.root / ".lock", self.destination)
        return self

    def __enter__(self) -> Staging:
        """The blocking ``async with`` for code already in a thread."""
        self._make_root()
        self._lock_fd = _lock(self.root / ".lock", self.destination)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)

    async def __aexit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing a descriptor does not block

    async def same_filesystem(self) -> bool:
        await blocking.finish(aiofiles.os.makedirs(self.destination, exist_ok=True))
        root, destination = await asyncio.gather(
            aiofiles.os.stat(self.root), aiofiles.os.stat(self.destination)
        )
        return root.st_dev == destination.st_dev

    async def stage(self, *, path: str, size: int, identity: str) -> StagedFile:
        """The staged file for ``path``: resumed from its sidecar when the identity and size
        match, else a fresh empty (sparse) temp file."""
        name = _digest(path)
        staged = StagedFile(
            path=path,
            size=size,
            identity=identity,
            temp_path=self.root / f"{name}.part",
            sidecar_path=self.root / f"{name}.json",
        )
        kept = _kept_ranges(
            await _read_sidecar(staged.sidecar_path), path=path, size=size, identity=identity
        )
        if kept is not None:
            try:
                if (await aiofiles.os.stat(staged.temp_path)).st_size == size:
                    staged.completed = kept
                    return staged
            except OSError:
                pass
        await staged.reset()
        return staged

    def resumable_bytes(self, *, path: str, size: int, identity: str) -> int:
        """Bytes a rerun would keep for ``path`` (for the disk-space check; blocking, one
        thread call covers every file); no side effects."""
        previous = _read_sidecar_blocking(self.root / f"{_digest(path)}.json")
        if previous is None or previous.get("identity") != identity or previous.get("size") != size:
            return 0
        try:
            return ranges.covered(
                (int(s), min(int(e), size)) for s, e in previous.get("ranges", [])
            )
        except (TypeError, ValueError):
            return 0

    def remove_stale(self, keep: set[str]) -> None:
        """Delete partial files whose path is not in ``keep`` (another revision's leftovers;
        blocking: one thread call walks the directory)."""
        wanted = {_digest(p) for p in keep}
        for entry in self.root.iterdir():
            if entry.name in _KEEP:
                continue
            if entry.name.split(".", 1)[0] not in wanted:
                with contextlib.suppress(OSError):
                    entry.unlink()

    def remove(self) -> None:
        """Delete the whole staging directory (after success, or ``--cleanup-temp``;
        blocking: a tree walk that never follows a symlink out)."""
        confine.remove_tree_inside(self.root, root=self.base)

    def _make_root(self) -> None:
        if self.base != self.destination:
            self.base.mkdir(parents=True, exist_ok=True)
        confine.make_dirs(self.base, self.root)

    def planned(self) -> list[str]:
        """Every name a pull of this destination planned (``plan.json``; [] when absent;
        blocking)."""
        if os.path.islink(self.root):
            return []
        try:
            path = self.root / _PLAN
            if path.stat().st_size > 64 * _SIDECAR_MAX_BYTES:
                return []
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        names = value.get("paths") if isinstance(value, dict) else None
        return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []

    def record_plan(self, names: set[str]) -> None:
        """Add ``names`` to ``plan.json`` before any of them is placed (blocking)."""
        union = sorted(set(self.planned()) | names)
        _atomic_write_json(self.root / _PLAN, {"version": 1, "paths": union})


def _lock(path: pathlib.Path, destination: pathlib.Path) -> int:
    """Open and flock ``path`` without waiting (blocking open: run it in a thread)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StagingBusyError(f"another pull is writing to {destination} (lock {path})") from None
    return fd


async def check_space(directory: pathlib.Path, needed: int, *, what: str) -> None:
    """``NoSpaceError`` when ``directory``'s filesystem has less than ``needed`` bytes free."""
    found = await aiofiles.os.statvfs(directory)
    free = found.f_bavail * found.f_frsize
    if needed > free:
        raise errors.NoSpaceError(
            f"not enough disk space for {what}: {needed} bytes needed, {free} free in {directory}"
        )


def _fsync_path(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_fsync_async = aiofiles.os.wrap(_fsync_path)


def _copy_step(source: int, target: int, offset: int, count: int) -> int:
    """Copy up to ``count`` bytes at ``offset`` from ``source`` to ``target`` (blocking)."""
    try:
        return os.copy_file_range(source, target, count, offset, offset)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    data = os.pread(source, count, offset)
    view = memoryview(data)
    done = 0
    while done < len(data):
        done += os.pwrite(target, view[done:], offset + done)
    return len(data)


async def _copy(source: pathlib.Path, target: pathlib.Path, size: int) -> None:
    """Copy ``source`` to a new ``target`` in ``_COPY_STEP`` thread hops, then fsync it: a
    cancellation (SIGTERM) ends the copy within one step, never after the whole file."""
    src = await blocking.opened(os.open, source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = await blocking.opened(
            os.open, target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644
        )
        try:
            offset = 0
            while offset < size:
                step = min(_COPY_STEP, size - offset)
                count = await blocking.to_end(_copy_step, src, dst, offset, step)
                if count <= 0:
                    raise OSError(errno.EIO, f"{source} ended at byte {offset}, expected {size}")
                offset += count
            await blocking.to_end(os.fsync, dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


async def place(
    staged: StagedFile, final: pathlib.Path, *, same_filesystem: bool, root: pathlib.Path
) -> None:
    """Move a verified temp file to ``final`` atomically: fsync, one rename (or, across
    filesystems, a copy to a temporary name beside ``final`` first), fsync the directory.
    ``final``'s directory is (re)checked to resolve inside ``root`` first."""
    await blocking.to_end(confine.make_dirs, root, final.parent)
    try:
        await blocking.finish(_fsync_async(staged.temp_path))
        if same_filesystem:
            await blocking.finish(aiofiles.os.replace(staged.temp_path, final))
        else:
            beside = final.with_name(f".{final.name}.{secrets.token_hex(4)}.incomplete")
            try:
                await _copy(staged.temp_path, beside, staged.size)
                await blocking.finish(aiofiles.os.replace(beside, final))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    await blocking.finish(aiofiles.os.remove(beside))
            await blocking.finish(aiofiles.os.remove(staged.temp_path))
        await blocking.finish(_fsync_async(final.parent))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise errors.NoSpaceError(f"no space left on device placing {staged.path}") from None
        raise
    with contextlib.suppress(FileNotFoundError):
        await blocking.finish(aiofiles.os.remove(staged.sidecar_path))
