"""Completion manifests: the record that a destination holds a verified model.

One JSON file per destination, at ``<state_dir>/manifests/<digest of the destination>.json``,
outside the model directory: the request it answered (a digest of URI and filters, never the
token), the pinned revision, every file with size, mtime and digest, and the analysis
(``config``), and the owner (the ConfigMap key of the model the agent placed the files for;
a delete removes only the files of its own manifest). ``matches_disk`` checks sizes and mtimes
only (``lstat``: a symlink planted at a file's name does not match): a restart of a complete
model costs one ``stat`` per file, no download and no hashing.

``read``/``write`` are for the event loop (aiofiles); ``load``/``save`` for code that already
runs in a thread. ``matches_disk`` stats every file: run it in a thread.

Owns reading and writing manifests; must not download or hash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import secrets
import stat
from collections.abc import Mapping
from typing import Any

import aiofiles
import aiofiles.os

from model_agent import blocking

__all__ = [
    "Entry",
    "Manifest",
    "destinations",
    "forget",
    "load",
    "manifest_path",
    "matches_disk",
    "read",
    "save",
    "write",
]

_VERSION = 1
_MAX_BYTES = 64 * 1024**2


@dataclasses.dataclass(frozen=True)
class Entry:
    path: str
    size: int
    mtime_ns: int
    checksum: str | None  # "<algorithm>:<hex>" or None when only the size was checked


@dataclasses.dataclass(frozen=True, kw_only=True)
class Manifest:
    destination: str
    uri: str
    request_key: str
    revision: str
    files: tuple[Entry, ...]
    config: Mapping[str, Any] | None = None
    #: The ConfigMap key of the model the files were placed for (None: ``model-agent pull``).
    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "destination": self.destination,
            "uri": self.uri,
            "requestKey": self.request_key,
            "revision": self.revision,
            "files": [dataclasses.asdict(e) for e in self.files],
            "config": self.config,
            "owner": self.owner,
        }


def _key(destination: pathlib.Path) -> str:
    return os.path.abspath(destination)


def manifest_path(destination: pathlib.Path, *, state_dir: pathlib.Path) -> pathlib.Path:
    digest = hashlib.sha256(_key(destination).encode()).hexdigest()[:32]
    return state_dir / "manifests" / f"{digest}.json"


def _encode(manifest: Manifest) -> str:
    return json.dumps(manifest.to_json(), separators=(",", ":"))


def save(manifest: Manifest, *, state_dir: pathlib.Path) -> pathlib.Path:
    """Write atomically (temp name, fsync, rename; blocking); returns the manifest's path."""
    path = manifest_path(pathlib.Path(manifest.destination), state_dir=state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(_encode(manifest))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


async def write(manifest: Manifest, *, state_dir: pathlib.Path) -> pathlib.Path:
    """``save`` for the event loop: every file operation through aiofiles; once started it
    runs to its end (a cancellation waits for it)."""
    return await blocking.finish(_write(manifest, state_dir=state_dir))


async def _write(manifest: Manifest, *, state_dir: pathlib.Path) -> pathlib.Path:
    path = manifest_path(pathlib.Path(manifest.destination), state_dir=state_dir)
    await aiofiles.os.makedirs(path.parent, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        async with aiofiles.open(tmp, "w", encoding="utf-8") as handle:
            await handle.write(_encode(manifest))
            await handle.flush()
            await aiofiles.os.wrap(os.fsync)(handle.fileno())
        await aiofiles.os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(tmp)
    return path


def _decode(text: str, destination: pathlib.Path) -> Manifest | None:
    try:
        raw = json.loads(text)
        if raw.get("version") != _VERSION or raw.get("destination") != _key(destination):
            return None
        files = tuple(
            Entry(str(f["path"]), int(f["size"]), int(f["mtime_ns"]), f.get("checksum"))
            for f in raw["files"]
        )
        config = raw.get("config")
        return Manifest(
            destination=raw["destination"],
            uri=str(raw["uri"]),
            request_key=str(raw["requestKey"]),
            revision=str(raw["revision"]),
            files=files,
            config=config if isinstance(config, dict) else None,
            owner=raw.get("owner") if isinstance(raw.get("owner"), str) else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def load(destination: pathlib.Path, *, state_dir: pathlib.Path) -> Manifest | None:
    """The manifest of ``destination``, or None when absent, unreadable or for another path
    (blocking)."""
    path = manifest_path(destination, state_dir=state_dir)
    try:
        if path.stat().st_size > _MAX_BYTES:
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    return _decode(text, destination)


async def read(destination: pathlib.Path, *, state_dir: pathlib.Path) -> Manifest | None:
    """``load`` for the event loop: every file operation through aiofiles."""
    path = manifest_path(destination, state_dir=state_dir)
    try:
        if (await aiofiles.os.stat(path)).st_size > _MAX_BYTES:
            return None
        async with aiofiles.open(path, encoding="utf-8") as handle:
            text = await handle.read()
    except (OSError, ValueError):
        return None
    return _decode(text, destination)


def matches_disk(manifest: Manifest) -> bool:
    """Every file of the manifest exists with the recorded size and mtime (no hashing)."""
    root = pathlib.Path(manifest.destination)
    return all(on_disk(root / entry.path, entry) for entry in manifest.files)


def on_disk(path: pathlib.Path, entry: Entry) -> bool:
    """Whether ``path`` is still the regular file ``entry`` recorded: same size and mtime,
    and not a symlink planted at its name (blocking: one lstat)."""
    try:
        found = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISREG(found.st_mode)
        and found.st_size == entry.size
        and found.st_mtime_ns == entry.mtime_ns
    )


def forget(destination: pathlib.Path, *, state_dir: pathlib.Path) -> None:
    """Delete the manifest of ``destination`` (blocking)."""
    with contextlib.suppress(FileNotFoundError):
        manifest_path(destination, state_dir=state_dir).unlink()


def destinations(*, state_dir: pathlib.Path) -> list[str]:
    """The destination of every readable manifest (what completed models claim on disk)."""
    found: list[str] = []
    folder = state_dir / "manifests"
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return found
    for path in paths:
        try:
            if path.stat().st_size > _MAX_BYTES:
                continue
            raw = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(raw, dict) and isinstance(raw.get("destination"), str):
                found.append(raw["destination"])
        except (OSError, ValueError):
            continue
    return found
