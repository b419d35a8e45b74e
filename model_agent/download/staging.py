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
import shutil
import time
from typing import Any

from model_agent import errors
from model_agent.download import ranges
from model_agent.trust import confine

__all__ = ["STAGING_NAME", "StagedFile", "Staging", "StagingBusyError"]

STAGING_NAME = ".model-agent-partial"
_SIDECAR_VERSION = 1
_SIDECAR_MAX_BYTES = 1024 * 1024
_CHECKPOINT_SECONDS = 0.5
_PLAN = "plan.json"
_KEEP = frozenset({".lock", _PLAN})


class StagingBusyError(errors.RetryableError):
    """Another pull holds the staging lock of the same destination."""

    reason = "Busy"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _atomic_write_json(path: pathlib.Path, value: Any) -> None:
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(value, separators=(",", ":")))
    os.replace(tmp, path)


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
        """Write the sidecar, at most twice a second unless ``force``. Losing the last half
        second only costs a re-fetch; a lying sidecar is caught by verification."""
        now = time.monotonic()
        if not force and now - self._saved_at < _CHECKPOINT_SECONDS:
            return
        async with self._lock:
            self._saved_at = now
            await asyncio.to_thread(_atomic_write_json, self.sidecar_path, self._record())

    def reset(self) -> None:
        """Forget every written range and empty the temp file (after a checksum mismatch)."""
        self.completed = ()
        with open(self.temp_path, "wb") as handle:
            handle.truncate(self.size)
        _atomic_write_json(self.sidecar_path, self._record())

    def discard(self) -> None:
        for leftover in (self.temp_path, self.sidecar_path):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


class Staging:
    """The staging directory of one destination; use as a context manager (takes the lock)."""

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

    def __enter__(self) -> Staging:
        if self.base == self.destination:
            confine.make_dirs(self.base, self.root)
        else:
            self.base.mkdir(parents=True, exist_ok=True)
            confine.make_dirs(self.base, self.root)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StagingBusyError(
                f"another pull is writing to {self.destination} (lock {self.root}/.lock)"
            ) from None
        self._lock_fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def same_filesystem(self) -> bool:
        self.destination.mkdir(parents=True, exist_ok=True)
        return os.stat(self.root).st_dev == os.stat(self.destination).st_dev

    def stage(self, *, path: str, size: int, identity: str) -> StagedFile:
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
        previous = self._read_sidecar(staged.sidecar_path)
        if (
            previous is not None
            and previous.get("identity") == identity
            and previous.get("size") == size
            and previous.get("path") == path
            and staged.temp_path.is_file()
            and staged.temp_path.stat().st_size == size
        ):
            try:
                staged.completed = ranges.normalize(
                    (int(s), min(int(e), size)) for s, e in previous.get("ranges", [])
                )
                return staged
            except (TypeError, ValueError):
                pass
        staged.reset()
        return staged

    @staticmethod
    def _read_sidecar(path: pathlib.Path) -> dict[str, Any] | None:
        try:
            if path.stat().st_size > _SIDECAR_MAX_BYTES:
                return None
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(value, dict) or value.get("version") != _SIDECAR_VERSION:
            return None
        return value

    def resumable_bytes(self, *, path: str, size: int, identity: str) -> int:
        """Bytes a rerun would keep for ``path`` (for the disk-space check); no side effects."""
        previous = self._read_sidecar(self.root / f"{_digest(path)}.json")
        if previous is None or previous.get("identity") != identity or previous.get("size") != size:
            return 0
        try:
            return ranges.covered(
                (int(s), min(int(e), size)) for s, e in previous.get("ranges", [])
            )
        except (TypeError, ValueError):
            return 0

    def remove_stale(self, keep: set[str]) -> None:
        """Delete partial files whose path is not in ``keep`` (another revision's leftovers)."""
        wanted = {_digest(p) for p in keep}
        for entry in self.root.iterdir():
            if entry.name in _KEEP:
                continue
            if entry.name.split(".", 1)[0] not in wanted:
                with contextlib.suppress(OSError):
                    entry.unlink()

    def remove(self) -> None:
        """Delete the whole staging directory (after success, or ``--cleanup-temp``)."""
        confine.remove_tree_inside(self.root, root=self.base)

    def planned(self) -> list[str]:
        """Every name a pull of this destination planned (``plan.json``; [] when absent)."""
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
        """Add ``names`` to ``plan.json`` before any of them is placed."""
        union = sorted(set(self.planned()) | names)
        _atomic_write_json(self.root / _PLAN, {"version": 1, "paths": union})


def check_space(directory: pathlib.Path, needed: int, *, what: str) -> None:
    """``NoSpaceError`` when ``directory``'s filesystem has less than ``needed`` bytes free."""
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise errors.NoSpaceError(
            f"not enough disk space for {what}: {needed} bytes needed, {free} free in {directory}"
        )


def _fsync_directory(directory: pathlib.Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def place(
    staged: StagedFile, final: pathlib.Path, *, same_filesystem: bool, root: pathlib.Path
) -> None:
    """Move a verified temp file to ``final`` atomically (blocking: run it in a thread).
    ``final``'s directory is (re)checked to resolve inside ``root`` first."""
    confine.make_dirs(root, final.parent)
    try:
        fd = os.open(staged.temp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if same_filesystem:
            os.replace(staged.temp_path, final)
        else:
            beside = final.with_name(f".{final.name}.{secrets.token_hex(4)}.incomplete")
            try:
                with open(staged.temp_path, "rb") as src, open(beside, "wb") as dst:
                    shutil.copyfileobj(src, dst, 8 * 1024**2)
                    dst.flush()
                    os.fsync(dst.fileno())
                os.replace(beside, final)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    beside.unlink()
            staged.temp_path.unlink()
        _fsync_directory(final.parent)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise errors.NoSpaceError(f"no space left on device placing {staged.path}") from None
        raise
    with contextlib.suppress(FileNotFoundError):
        staged.sidecar_path.unlink()
