"""Byte-range sets: which parts of a file are complete, which are missing, how to split them.

Pure: stdlib only, no I/O. A range is a half-open ``(start, end)`` pair of ints; a range set is
a sorted tuple of disjoint, non-adjacent ranges (``normalize`` makes one from anything).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Range", "add", "covered", "missing", "normalize", "split"]

Range = tuple[int, int]


def normalize(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sort, drop empty ranges and merge overlapping or touching ones."""
    merged: list[list[int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges):
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range ({start}, {end})")
        if start == end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((s, e) for s, e in merged)


def add(ranges: Iterable[Range], new: Range) -> tuple[Range, ...]:
    """``ranges`` with ``new`` added."""
    return normalize([*ranges, new])


def covered(ranges: Iterable[Range]) -> int:
    """Number of bytes the (normalized) set covers."""
    return sum(end - start for start, end in normalize(ranges))


def missing(ranges: Iterable[Range], size: int) -> tuple[Range, ...]:
    """The parts of ``[0, size)`` that ``ranges`` does not cover."""
    gaps: list[Range] = []
    position = 0
    for start, end in normalize(ranges):
        if start >= size:
            break
        if start > position:
            gaps.append((position, start))
        position = max(position, end)
    if position < size:
        gaps.append((position, size))
    return tuple(gaps)


def split(gaps: Iterable[Range], *, part_size: int) -> list[Range]:
    """Cut each range into pieces of at most ``part_size`` bytes, in order."""
    if part_size < 1:
        raise ValueError("part_size must be positive")
    parts: list[Range] = []
    for start, end in gaps:
        position = start
        while position < end:
            parts.append((position, min(end, position + part_size)))
            position += part_size
    return parts
