"""The digest of a file whose bytes arrive in ranges, from several threads, in any order.

sha256 is sequential, so a file has one running hasher and one hashed prefix ``[0, position)``.
A transfer thread that has just written a batch at exactly ``position`` feeds those buffers
to the hasher then and there (``offer``: the bytes are hashed from memory, never read again).
Bytes written ahead of ``position`` (the later ranges of a file fetched in parallel parts, the
prefix a resumed download kept) are read back from the page cache once everything before them
is hashed (``read_back``, run by the file's follower, ``verify.Verifier.follow``). One thread
hashes at a time (``_busy``); an offer that finds the hasher busy is left to the read-back, so
every byte is hashed exactly once, in order, and only after it was written.

Owns that bookkeeping; must not download or decide what to trust.
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Sequence

from model_agent import checksums

__all__ = ["InlineDigest"]


class InlineDigest:
    """The running digest of ``path`` (``size`` bytes); ``position``: bytes hashed so far."""

    def __init__(self, hasher: checksums.Hasher, *, path: pathlib.Path, size: int) -> None:
        self._hasher = hasher
        self.path = path
        self.size = size
        self.position = 0
        self.inline_bytes = 0
        self.read_back_bytes = 0
        self._busy = False
        self._idle = threading.Condition()

    def offer(self, offset: int, chunks: Sequence[bytes], size: int) -> bool:
        """Hash ``chunks`` (just written at ``offset``) when they continue the hashed prefix
        and no other thread is hashing; else leave them to ``read_back``. Never waits."""
        with self._idle:
            if self._busy or offset != self.position:
                return False
            self._busy = True
        try:
            for chunk in chunks:
                self._hasher.update(chunk)
        finally:
            with self._idle:
                self.position += size
                self.inline_bytes += size
                self._busy = False
                self._idle.notify_all()
        return True

    def read_back(self, end: int, buffer: bytearray) -> int:
        """Hash ``[position, end)`` from the file (every byte of it already written;
        blocking: run it in a thread). Returns the bytes hashed (0 when none were left)."""
        with self._idle:
            while self._busy:
                self._idle.wait()
            start = self.position
            if end <= start:
                return 0
            self._busy = True
        done = False
        try:
            _hash_range(self._hasher, self.path, start, end, buffer)
            done = True
        finally:
            with self._idle:
                if done:
                    self.position = end
                    self.read_back_bytes += end - start
                self._busy = False
                self._idle.notify_all()
        return end - start

    def hexdigest(self) -> str:
        if self.position != self.size:
            raise RuntimeError(f"digest of {self.path} taken at {self.position}/{self.size}")
        return self._hasher.hexdigest()


def _hash_range(
    hasher: checksums.Hasher, path: pathlib.Path, start: int, end: int, buffer: bytearray
) -> None:
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            count = handle.readinto(view[: min(len(view), remaining)])
            if not count:
                raise OSError(f"{path} ended at byte {end - remaining}, expected {end}")
            hasher.update(view[:count])
            remaining -= count
