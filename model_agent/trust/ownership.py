"""Which model holds which directory on this node: the path-ownership record.

One JSON file per held directory at ``<state_dir>/owners/<digest of the resolved path>.json``:
``{"version": 1, "path": <resolved absolute path>, "owner": <ConfigMap key>, "uid": <uid>}``.
A model claims its directory before the agent creates or writes anything there, keeps it while
it is placing or Ready, and releases it once its files are removed. A claim is refused with
``PathConflictError`` naming the holder when another owner holds the same directory, one inside
it or one around it (``paths.overlaps``): the holder keeps it, the newcomer fails. The records
survive restarts, so the same models on the same disk always get the same verdict.

Small API (the OME adoption and the disk clean-up write and read the same records):
``Registry(state_dir)`` then ``load()``, ``claim(path, owner=, uid=)``, ``release(owner)``,
``holder(path)``, ``held_by(owner)``. ``path`` must already be resolved
(``confine.resolve``). Blocking file I/O: call from a thread; one lock serialises claims.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import secrets
import threading
from typing import Any

from model_agent import errors
from model_agent.trust import paths

__all__ = ["Claim", "Registry"]

log = logging.getLogger("model_agent.ownership")

_FOLDER = "owners"
_VERSION = 1
_MAX_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Claim:
    path: str
    owner: str
    uid: str = ""


class Registry:
    """The claims of one state directory, cached in memory, written through to disk."""

    def __init__(self, state_dir: pathlib.Path) -> None:
        self.folder = state_dir / _FOLDER
        self._claims: dict[str, Claim] = {}
        self._lock = threading.RLock()
        self._loaded = False

    def _file(self, path: str) -> pathlib.Path:
        return self.folder / f"{hashlib.sha256(path.encode()).hexdigest()[:32]}.json"

    def load(self) -> list[Claim]:
        """Read every claim on disk (unreadable files are skipped and logged)."""
        with self._lock:
            self._claims = {}
            if self.folder.is_dir():
                for file in sorted(self.folder.glob("*.json")):
                    claim = _read(file)
                    if claim is None:
                        log.warning("ignored an unreadable ownership record %s", file)
                    else:
                        self._claims[claim.path] = claim
            self._loaded = True
            return list(self._claims.values())

    def _ensure(self) -> None:
        if not self._loaded:
            self.load()

    def claims(self) -> list[Claim]:
        with self._lock:
            self._ensure()
            return sorted(self._claims.values(), key=lambda c: c.path)

    def holder(self, path: str, other_than: str | None = None) -> Claim | None:
        """The claim that overlaps ``path`` (the exact one first), or None; with
        ``other_than``, only a claim of another owner."""
        with self._lock:
            self._ensure()
            return self._overlapping(path, owner=other_than)

    def held_by(self, owner: str) -> list[Claim]:
        with self._lock:
            self._ensure()
            return [c for c in self._claims.values() if c.owner == owner]

    def _overlapping(self, path: str, *, owner: str | None) -> Claim | None:
        exact = self._claims.get(path)
        if exact is not None and exact.owner != owner:
            return exact
        for claim in sorted(self._claims.values(), key=lambda c: c.path):
            if claim.owner != owner and paths.overlaps(claim.path, path):
                return claim
        return None

    def claim(self, path: str, *, owner: str, uid: str = "") -> Claim:
        """Hold ``path`` for ``owner``; ``PathConflictError`` naming the holder when another
        owner holds an overlapping directory. Idempotent for the same owner."""
        with self._lock:
            self._ensure()
            other = self._overlapping(path, owner=owner)
            if other is not None:
                relation = "holds" if other.path == path else f"holds {other.path}, which overlaps"
                raise errors.PathConflictError(
                    f"model {other.owner} {relation} the directory {path} on this node; "
                    f"two models cannot share a directory (set a distinct spec.storage.path)"
                )
            claim = Claim(path=path, owner=owner, uid=uid)
            if self._claims.get(path) != claim:
                _write(self._file(path), claim)
                self._claims[path] = claim
            return claim

    def release(self, owner: str, path: str | None = None) -> list[Claim]:
        """Drop ``owner``'s claims (only the one on ``path`` when given); returns them."""
        with self._lock:
            self._ensure()
            dropped = [
                c
                for c in self._claims.values()
                if c.owner == owner and (path is None or c.path == path)
            ]
            for claim in dropped:
                with contextlib.suppress(FileNotFoundError):
                    self._file(claim.path).unlink()
                del self._claims[claim.path]
            return dropped


def _read(file: pathlib.Path) -> Claim | None:
    try:
        if file.stat().st_size > _MAX_BYTES:
            return None
        raw: Any = json.loads(file.read_text(encoding="utf-8"))
        if raw.get("version") != _VERSION:
            return None
        path, owner = raw["path"], raw["owner"]
        if not isinstance(path, str) or not isinstance(owner, str) or not path.startswith("/"):
            return None
        return Claim(path=path, owner=owner, uid=str(raw.get("uid") or ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write(file: pathlib.Path, claim: Claim) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.name}.{secrets.token_hex(4)}.tmp")
    body = {"version": _VERSION, **dataclasses.asdict(claim)}
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(body, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, file)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
