"""Verification of downloaded files: size always, then the strongest checksum available.

A file being downloaded is hashed as it arrives: transfer threads hash in-order bytes from
memory right after writing them (``download.digest.InlineDigest.offer``) and ``follow`` reads
back from the page cache only what arrived out of order (the later parts of a file fetched in
parallel ranges, a resumed prefix), in a thread, at most ``parallel`` files at a time. A file
already in place is hashed by ``verify``. Every hashing thread call covers at most
``_STEP_SIZE`` bytes and a cancellation waits for the step in flight (``blocking.to_end``):
SIGTERM during a whole-file hash ends within one step. A mismatch raises
``errors.ChecksumMismatchError`` naming the file, the expected and the actual digest; the
caller deletes the temp file and retries.

Owns hashing of local files; must not download, rename or delete.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import time

import aiofiles.os

from model_agent import blocking, checksums, errors
from model_agent.download import digest as digests
from model_agent.download import staging

__all__ = ["ChecksumFailedError", "Outcome", "Verifier", "hash_file"]

_READ_SIZE = 1024**2
#: ``follow`` reads back once at least this much waits behind the hashed prefix.
_BATCH_SIZE = 4 * 1024**2
#: One thread call hashes at most this much (a cancellation waits for one step at most).
_STEP_SIZE = 64 * 1024**2


class ChecksumFailedError(errors.ChecksumMismatchError):
    """A file still mismatched after ``--download-retry`` fresh downloads: not retried again
    by the pipeline (the source itself is likely wrong)."""

    retryable = False


@dataclasses.dataclass(frozen=True)
class Outcome:
    """``result`` is ``success`` (digest matched) or ``size_only`` (no digest was promised)."""

    result: str
    seconds: float
    digest: checksums.Checksum | None


def _hash_step(
    hasher: checksums.Hasher, fd: int, offset: int, count: int, buffer: bytearray
) -> int:
    """Feed up to ``count`` bytes at ``offset`` of ``fd`` to ``hasher`` (blocking); returns
    the bytes read (fewer only at the end of the file)."""
    view = memoryview(buffer)
    done = 0
    while done < count:
        read = os.preadv(fd, [view[: min(len(view), count - done)]], offset + done)
        if not read:
            break
        hasher.update(view[:read])
        done += read
    return done


def hash_file(path: pathlib.Path, algorithm: str | checksums.Checksum, size: int) -> str:
    """Hex digest of ``path`` (blocking, in one go: for threads and tools, not the agent's
    loop) by an algorithm name or an expected ``Checksum``'s own hasher."""
    if isinstance(algorithm, checksums.Checksum):
        hasher = algorithm.hasher(size)
    else:
        hasher = checksums.new_hasher(algorithm, size)
    buffer = bytearray(_READ_SIZE)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        offset = 0
        while count := _hash_step(hasher, fd, offset, _STEP_SIZE, buffer):
            offset += count
    finally:
        os.close(fd)
    return hasher.hexdigest()


async def _hash_file(path: pathlib.Path, expected: checksums.Checksum, size: int) -> str:
    """``hash_file`` in ``_STEP_SIZE`` thread calls: cancellable between steps."""
    hasher = expected.hasher(size)
    buffer = bytearray(_READ_SIZE)
    fd = await blocking.opened(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        offset = 0
        while count := await blocking.to_end(_hash_step, hasher, fd, offset, _STEP_SIZE, buffer):
            offset += count
    finally:
        os.close(fd)
    return hasher.hexdigest()


class Verifier:
    """Checks size and digest of files, ``parallel`` files at a time: finished files
    (``verify``) or files still downloading (``follow``)."""

    def __init__(self, *, parallel: int = 2) -> None:
        self._slots = asyncio.Semaphore(parallel)
        self.bytes_hashed = 0
        self.bytes_read_back = 0

    async def verify(
        self,
        path: pathlib.Path,
        *,
        name: str,
        size: int,
        expected: checksums.Checksum | None,
    ) -> Outcome:
        """Raise ``ChecksumMismatchError`` unless ``path`` has ``size`` bytes and, when a
        digest is expected, that digest. ``name`` is the file's path in the model (messages)."""
        started = time.monotonic()
        actual_size = (await aiofiles.os.stat(path)).st_size
        if actual_size != size:
            raise errors.ChecksumMismatchError(
                f"verification failed for {name}: expected {size} bytes, got {actual_size}"
            )
        if expected is None:
            return Outcome("size_only", time.monotonic() - started, None)
        async with self._slots:
            digest = await _hash_file(path, expected, size)
        self.bytes_hashed += size
        self.bytes_read_back += size
        if digest != expected.value:
            raise errors.ChecksumMismatchError(
                f"verification failed for {name}: expected {expected.algorithm} "
                f"{expected.value}, got {digest}"
            )
        return Outcome(
            "success", time.monotonic() - started, checksums.Checksum(expected.algorithm, digest)
        )

    @staticmethod
    def digest_for(
        staged: staging.StagedFile, expected: checksums.Checksum | None
    ) -> digests.InlineDigest | None:
        """The inline digest the engine feeds while it writes ``staged`` (None: no digest)."""
        if expected is None:
            return None
        return digests.InlineDigest(
            expected.hasher(staged.size), path=staged.temp_path, size=staged.size
        )

    async def follow(
        self, staged: staging.StagedFile, digest: digests.InlineDigest | None
    ) -> str | None:
        """Complete ``digest`` as ``staged`` is written: reads back, in a thread, only the
        written bytes the transfer threads could not hash inline; returns the hex digest once
        every byte is hashed (None when no digest is expected). Only bytes already marked
        written are read, so a retried part can never change what was hashed."""
        if digest is None:
            return None
        buffer: bytearray | None = None
        async with self._slots:
            while digest.position < staged.size:
                staged.changed.clear()
                frontier = staged.frontier
                waiting = frontier - digest.position
                if waiting <= 0 or (waiting < _BATCH_SIZE and frontier < staged.size):
                    await staged.changed.wait()
                    continue
                if buffer is None:
                    buffer = bytearray(_READ_SIZE)
                end = min(frontier, digest.position + _STEP_SIZE)
                self.bytes_read_back += await blocking.to_end(digest.read_back, end, buffer)
        self.bytes_hashed += staged.size
        return digest.hexdigest()

    def check(self, digest: str | None, *, name: str, expected: checksums.Checksum | None) -> None:
        """``ChecksumMismatchError`` unless ``digest`` (from ``follow``) is ``expected``."""
        if expected is not None and digest != expected.value:
            raise errors.ChecksumMismatchError(
                f"verification failed for {name}: expected {expected.algorithm} "
                f"{expected.value}, got {digest}"
            )
