"""Cleanup policies over what a disk scan found: which partial downloads and which orphan
directories are due for removal.

- A *partial download* (a staging area: a destination holding ``.model-agent-partial``, an
  update's ``.<name>.model-agent-next`` beside its destination, a ``--temp-dir`` staging
  directory) is *abandoned* when no existing, selected model wants its destination (and no
  reserved or ``local://`` model points there). An abandoned one that no pull holds locked is
  removed ``partial_ttl`` seconds after its last write.
- An *orphan* is a directory under the models root that no model points at (spec path, the
  agent's ownership record or completion manifest), that holds no model below it and that is
  no staging area. Orphans are reported; with ``orphan_grace`` set, one seen continuously for
  that long is removed.

Pure: no I/O, no clock (callers hand in ``now``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

__all__ = ["Area", "Claims", "Orphan", "Sightings", "due_orphans", "due_partials", "is_abandoned"]


@dataclasses.dataclass(frozen=True)
class Claims:
    """Paths models hold. ``pointed``: every path a known model, record or manifest points
    at (never an orphan). ``kept``: destinations whose partial downloads are wanted or must
    never be deleted (selected models, reserved and ``local://`` models, records)."""

    pointed: frozenset[str] = frozenset()
    kept: frozenset[str] = frozenset()

    def holds_below(self, directory: str) -> bool:
        """Whether a pointed-at path lies strictly below ``directory``."""
        prefix = directory.rstrip("/") + "/"
        return any(path.startswith(prefix) for path in self.pointed)


@dataclasses.dataclass(frozen=True)
class Area:
    """A staging area found on disk: ``path`` to remove, the ``destination`` it fills."""

    path: str
    destination: str
    nbytes: int
    last_write: float  # newest mtime inside (seconds since the epoch)
    locked: bool  # a running pull holds its lock


@dataclasses.dataclass(frozen=True)
class Orphan:
    path: str
    nbytes: int


def is_abandoned(area: Area, claims: Claims) -> bool:
    return area.destination not in claims.kept and area.path not in claims.kept


def due_partials(
    areas: Iterable[Area], claims: Claims, *, now: float, ttl: float | None
) -> list[Area]:
    """Abandoned, unlocked partial downloads untouched for ``ttl`` seconds (none when off)."""
    if ttl is None:
        return []
    return [
        area
        for area in areas
        if is_abandoned(area, claims) and not area.locked and now - area.last_write >= ttl
    ]


class Sightings:
    """When each orphan was first seen in the current unbroken run of scans."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}

    def update(self, paths: Iterable[str], *, now: float) -> list[str]:
        """Record a scan; returns the paths seen for the first time."""
        current = set(paths)
        new = sorted(current - set(self.first))
        self.first = {p: self.first.get(p, now) for p in current}
        return new


def due_orphans(
    orphans: Iterable[Orphan], first_seen: Mapping[str, float], *, now: float, grace: float | None
) -> list[Orphan]:
    """Orphans seen for ``grace`` seconds (none when removal is off)."""
    if grace is None:
        return []
    return [o for o in orphans if now - first_seen.get(o.path, now) >= grace]
