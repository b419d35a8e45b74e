"""Where each byte of a file comes from, pure: a peer that holds it, the origin, or a wait.

Files are cut on a fixed grid of ``CHUNK`` bytes, the same on every node, so nodes that start
together agree on what a chunk is. A chunk no peer holds yet is fetched from the origin by one
node only, its *owner*: the participant (a node downloading the same revision, this one
included) that ranks first by rendezvous hashing of the chunk. The others wait for the owner
(or any node that copied it since) to hold the bytes and fetch them from there. A participant
that stops progressing is left out by the caller, so its chunks move to the others. Among
several holders a fetcher picks by rendezvous hashing of itself and the chunk, which spreads
the fetchers of one chunk over its holders.

Owns the decision; no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

__all__ = ["CHUNK", "Decision", "decide", "grid_split", "owner", "run_end"]

#: The grid every node cuts files on (and the largest piece fetched from the origin at once
#: while peering).
CHUNK = 16 * 1024**2

Range = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Decision:
    """``peer``: fetch ``[position, stop)`` from ``source``; ``origin``: fetch it from the
    origin; ``wait``: another node fetches this chunk from the origin, ask again later."""

    kind: Literal["peer", "origin", "wait"]
    stop: int
    source: str | None = None


def grid_split(gaps: Iterable[Range], chunk: int = CHUNK) -> list[Range]:
    """``gaps`` cut at every multiple of ``chunk`` (absolute offsets, so every node cuts alike)."""
    parts: list[Range] = []
    for start, end in gaps:
        position = start
        while position < end:
            stop = min(end, (position // chunk + 1) * chunk)
            parts.append((position, stop))
            position = stop
    return parts


def _rank(node: str, key: str) -> bytes:
    return hashlib.sha256(f"{node}\0{key}".encode()).digest()


def owner(key: str, participants: Iterable[str]) -> str | None:
    """The participant that fetches chunk ``key`` from the origin (rendezvous hashing: every
    node computes the same answer from the same set, and a departure moves only its chunks)."""
    return max(participants, key=lambda node: _rank(node, key), default=None)


def run_end(ranges: Sequence[Range], position: int) -> int | None:
    """The end of the held run that contains ``position``, or None when it is not held."""
    for start, end in ranges:
        if start <= position < end:
            return end
    return None


def decide(
    *,
    me: str,
    chunk_key: str,
    position: int,
    end: int,
    holders: Mapping[str, Sequence[Range]],
    participants: Iterable[str],
) -> Decision:
    """What to do for bytes ``[position, end)`` of one chunk. ``holders``: the usable peers
    and the ranges each holds of this file; ``participants``: the nodes (``me`` included) that
    download the same revision and still make progress."""
    holding = {
        name: stop
        for name, held in holders.items()
        if name != me and (stop := run_end(held, position)) is not None
    }
    if holding:
        source = max(holding, key=lambda name: _rank(name, f"{me}\0{chunk_key}"))
        return Decision("peer", min(end, holding[source]), source)
    if owner(chunk_key, {me, *participants}) == me:
        return Decision("origin", end)
    return Decision("wait", end)
