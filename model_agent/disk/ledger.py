"""The space ledger: bytes promised to running downloads, per filesystem, and the admission
decision (admit, wait or never) for a download that still needs some bytes.

A download is admitted when what it still needs fits in the filesystem's free space less the
bytes already promised to running downloads and less the reserve (``--min-free-space``). It
can never fit when it needs more than the filesystem's capacity (used + available) less the
reserve. A promise is held, whole, until the download ends: the bytes a running download has
already written are then counted twice (in the free space and in its promise), never zero
times, so two downloads are never admitted into the same free space.

Pure: no I/O, no clock; the edge (``admission``) reads ``statvfs`` and waits.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Hashable, Iterable, Mapping

__all__ = [
    "ADMIT",
    "NEVER",
    "WAIT",
    "Decision",
    "Ledger",
    "Need",
    "Space",
    "footprint",
    "verdict_of",
]

ADMIT, WAIT, NEVER = "admit", "wait", "never"


@dataclasses.dataclass(frozen=True)
class Space:
    """One filesystem as ``statvfs`` saw it: bytes available to the agent, capacity (used +
    available) and the block size."""

    free: int
    capacity: int
    block: int = 4096


@dataclasses.dataclass(frozen=True)
class Need:
    """``nbytes`` still needed on the filesystem ``key`` (``directory`` names it in messages)."""

    key: Hashable
    directory: str
    nbytes: int


@dataclasses.dataclass(frozen=True)
class Decision:
    """The verdict for one filesystem (the worst of several is the verdict of a download)."""

    verdict: str
    directory: str
    needed: int
    free: int
    promised: int
    reserve: int
    capacity: int
    running: int  # downloads holding a promise on this filesystem

    @property
    def available(self) -> int:
        """Bytes a new download may take now: free less promised less the reserve."""
        return max(0, self.free - self.promised - self.reserve)

    @property
    def message(self) -> str:
        if self.verdict == NEVER:
            return (
                f"the model can never fit on the filesystem of {self.directory}: "
                f"{self.needed} bytes needed, {max(0, self.capacity - self.reserve)} available "
                f"at most (capacity {self.capacity} less the reserve {self.reserve})"
            )
        return (
            f"waiting for disk space on the filesystem of {self.directory}: {self.needed} bytes "
            f"needed, {self.available} available ({self.free} free, {self.promised} promised to "
            f"{self.running} running download(s), reserve {self.reserve})"
        )


def footprint(nbytes: int, files: int, block: int) -> int:
    """Bytes that ``files`` files of ``nbytes`` in all take on a filesystem of ``block``-sized
    blocks, at most: each file's last block rounded up, plus one block for its resume
    sidecar."""
    if nbytes <= 0:
        return 0
    return nbytes + 2 * max(1, block) * max(1, files)


class Ledger:
    """Promises of running downloads, by filesystem key. ``version`` changes with every
    promise made or released, so a caller that read the free space before a change knows to
    read it again."""

    def __init__(self) -> None:
        self._promises: dict[Hashable, dict[int, int]] = {}
        self._tokens = itertools.count(1)
        self.version = 0

    def promised(self, key: Hashable) -> int:
        return sum(self._promises.get(key, {}).values())

    def running(self, key: Hashable) -> int:
        return len(self._promises.get(key, {}))

    def total(self) -> int:
        """Bytes promised on every filesystem."""
        return sum(sum(p.values()) for p in self._promises.values())

    def decide(self, need: Need, space: Space, *, reserve: int) -> Decision:
        promised = self.promised(need.key)
        if need.nbytes > space.capacity - reserve:
            verdict = NEVER
        elif need.nbytes <= space.free - promised - reserve:
            verdict = ADMIT
        else:
            verdict = WAIT
        return Decision(
            verdict=verdict,
            directory=need.directory,
            needed=need.nbytes,
            free=space.free,
            promised=promised,
            reserve=reserve,
            capacity=space.capacity,
            running=self.running(need.key),
        )

    def decide_all(
        self,
        needs: Iterable[Need],
        spaces: Mapping[Hashable, Space],
        reserves: Mapping[Hashable, int],
    ) -> list[Decision]:
        """One decision per need (needs on the same filesystem are summed first)."""
        merged: dict[Hashable, Need] = {}
        for need in needs:
            seen = merged.get(need.key)
            nbytes = need.nbytes + (seen.nbytes if seen else 0)
            merged[need.key] = Need(need.key, seen.directory if seen else need.directory, nbytes)
        return [
            self.decide(need, spaces[key], reserve=reserves[key]) for key, need in merged.items()
        ]

    def promise(self, needs: Iterable[Need]) -> int:
        """Record the promises of one admitted download; returns its token."""
        token = next(self._tokens)
        for need in needs:
            if need.nbytes > 0:
                held = self._promises.setdefault(need.key, {})
                held[token] = held.get(token, 0) + need.nbytes
        self.version += 1
        return token

    def release(self, token: int) -> None:
        for key in list(self._promises):
            self._promises[key].pop(token, None)
            if not self._promises[key]:
                del self._promises[key]
        self.version += 1


def verdict_of(decisions: Iterable[Decision]) -> Decision | None:
    """The decision that rules: any ``never``, else any ``wait``, else None (admit)."""
    found = list(decisions)
    for verdict in (NEVER, WAIT):
        for decision in found:
            if decision.verdict == verdict:
                return decision
    return None
