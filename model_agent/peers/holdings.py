"""What this node can serve to its peers: the pulls in progress and the models placed here.

A pull registers a ``Live`` record when it starts (state ``starting``), fills in its revision
and file identities once admitted, and leaves when its manifest is written. A placed model is
found through ``placed`` (the agent's lookup of a Ready model's destination) and its
completion manifest (parsed again only when the manifest file changed). ``Registry.locate``
answers one file request: the path on disk and the ranges that may be read, only for a file
named in the model's own plan or manifest, with the same revision and identity; the
request's path is only ever compared, never joined.

Owns the serving-side view; reads manifests and stats files, writes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
from collections.abc import Callable, Collection, Mapping
from typing import Literal

import aiofiles.os

from model_agent import errors, manifest, planning
from model_agent.download import staging
from model_agent.peers import protocol

__all__ = ["Found", "Live", "Refusal", "Registry"]

#: Looks up the destination of a model that is Ready on this node, by ConfigMap key.
Placed = Callable[[str], pathlib.Path | None]


@dataclasses.dataclass
class Live:
    """A pull in progress: what it planned, what it is writing and what it placed."""

    destination: pathlib.Path
    revision: str = ""
    #: Planned files that can be served: path -> (identity, size).
    identities: Mapping[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    #: Files being written now (the download's staged files), by path.
    active: Mapping[str, staging.StagedFile] = dataclasses.field(default_factory=dict)
    #: Paths verified and placed at ``destination / path`` so far.
    placed: Callable[[], Collection[str]] = frozenset
    #: Bytes held so far (grows while the pull progresses).
    received: Callable[[], int] = lambda: 0

    @property
    def state(self) -> Literal["starting", "downloading"]:
        return "downloading" if self.revision else "starting"


@dataclasses.dataclass(frozen=True)
class Found:
    """A servable file: where it is and which ranges of it may be read."""

    path: pathlib.Path
    size: int
    identity: str
    ranges: tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a request is not served: the HTTP status and a short reason."""

    status: int
    reason: str


class Registry:
    """The models this node may serve, by ConfigMap key."""

    def __init__(self, *, state_dir: pathlib.Path, placed: Placed) -> None:
        self.state_dir = state_dir
        self._placed = placed
        self.live: dict[str, Live] = {}
        #: Parsed manifests by key, with the (path, mtime, size) of the file they came from:
        #: peers ask often, a manifest changes rarely.
        self._manifests: dict[str, tuple[tuple[str, int, int], manifest.Manifest]] = {}

    def start(self, key: str, destination: pathlib.Path) -> Live:
        record = Live(destination=destination)
        self.live[key] = record
        return record

    def finish(self, key: str, record: Live) -> None:
        if self.live.get(key) is record:
            del self.live[key]

    async def holding(self, key: str) -> protocol.Holding | None:
        """What this node holds of model ``key``, or None when it holds nothing of it."""
        record = self.live.get(key)
        if record is not None:
            return _live_holding(record)
        stored = await self._manifest(key)
        if stored is None:
            return None
        files = {
            e.path: protocol.FileHolding(identity, e.size, ((0, e.size),) if e.size else ())
            for e in stored.files
            if (identity := protocol.file_identity(e.size, e.checksum)) is not None
        }
        total = sum(e.size for e in stored.files)
        return protocol.Holding(stored.revision, "ready", total, files)

    async def locate(self, key: str, path: str, *, revision: str, identity: str) -> Found | Refusal:
        """The file ``path`` of model ``key`` if it is the same revision and identity."""
        record = self.live.get(key)
        if record is not None:
            return _live_file(record, path, revision, identity)
        stored = await self._manifest(key)
        if stored is None:
            return Refusal(404, "model not held here")
        if stored.revision != revision:
            return Refusal(409, "another revision")
        entry = next((e for e in stored.files if e.path == path), None)
        if entry is None:
            return Refusal(404, "file not in the model")
        if protocol.file_identity(entry.size, entry.checksum) != identity:
            return Refusal(409, "another file identity")
        final = _final(pathlib.Path(stored.destination), entry.path)
        if final is None or not await asyncio.to_thread(manifest.on_disk, final, entry):
            return Refusal(404, "file changed on disk since it was placed")
        return Found(final, entry.size, identity, ((0, entry.size),))

    async def _manifest(self, key: str) -> manifest.Manifest | None:
        destination = self._placed(key)
        if destination is None:
            self._manifests.pop(key, None)
            return None
        path = manifest.manifest_path(destination, state_dir=self.state_dir)
        try:
            found = await aiofiles.os.stat(path)
        except OSError:
            return None
        signature = (str(path), found.st_mtime_ns, found.st_size)
        cached = self._manifests.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        stored = await manifest.read(destination, state_dir=self.state_dir)
        if stored is None or stored.owner != key:
            return None
        self._manifests[key] = (signature, stored)
        return stored


def _live_holding(record: Live) -> protocol.Holding:
    placed = record.placed()
    files: dict[str, protocol.FileHolding] = {}
    for path, (identity, size) in record.identities.items():
        if path in placed:
            files[path] = protocol.FileHolding(identity, size, ((0, size),) if size else ())
        elif (staged := record.active.get(path)) is not None and staged.completed:
            files[path] = protocol.FileHolding(identity, size, tuple(staged.completed))
    return protocol.Holding(record.revision, record.state, record.received(), files)


def _live_file(record: Live, path: str, revision: str, identity: str) -> Found | Refusal:
    if not record.revision:
        return Refusal(404, "not pinned yet")
    if record.revision != revision:
        return Refusal(409, "another revision")
    planned = record.identities.get(path)
    if planned is None:
        return Refusal(404, "file not in the model")
    if planned[0] != identity:
        return Refusal(409, "another file identity")
    size = planned[1]
    if path in record.placed():
        final = _final(record.destination, path)
        if final is None:
            return Refusal(404, "file not servable")
        return Found(final, size, identity, ((0, size),))
    staged = record.active.get(path)
    if staged is None:
        return Refusal(416, "no bytes of this file yet")
    return Found(staged.temp_path, size, identity, tuple(staged.completed))


def _final(destination: pathlib.Path, name: str) -> pathlib.Path | None:
    try:
        return destination / planning.safe_relative_path(name)
    except errors.UnsafePathError:
        return None
