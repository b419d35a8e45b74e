"""Checksums of multipart uploads: a digest of the concatenated part digests, and its hasher.

OCI's ``opc-multipart-md5``, S3's multipart ETag (``<md5 of part md5s>-<N>``) and S3's
``COMPOSITE`` additional checksums (sha256/sha1/crc32c/crc32 of the part checksums) all have
one shape: hash each part, hash the concatenated binary part digests. None of the stores says
how large the parts were, so the hasher recomputes the value for each candidate part size
that cuts the object into exactly N parts (the common tools' defaults first), in one pass.

Pure: stdlib and ``model_agent.checksums`` only, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Sequence

from model_agent import checksums

__all__ = [
    "KNOWN_PART_SIZES",
    "MAX_CANDIDATES",
    "PartsChecksum",
    "PartsHasher",
    "candidate_part_sizes",
    "parse_parts_digest",
]

_MIB = 1024 * 1024
#: Part sizes tried, in order: the oci CLI/SDK default (128 MiB), the OCI SDK's streaming
#: default (10 MiB), the S3 tools' defaults (8 MiB aws/boto3, 5 MiB rclone and the S3
#: minimum), then the round sizes people pass to ``--part-size``.
KNOWN_PART_SIZES: tuple[int, ...] = tuple(
    m * _MIB for m in (128, 10, 8, 5, 16, 32, 64, 100, 256, 512, 1000, 1024, 50, 20, 25, 200, 500)
)
#: Each candidate costs one more hashing pass over the file: bound the cost.
MAX_CANDIDATES = 3
_PARTS_RE = re.compile(r"^\s*([A-Za-z0-9+/]+={0,2})-(\d{1,5})\s*$")


def parse_parts_digest(text: str | None, *, digest_bytes: int = 16) -> tuple[bytes, int] | None:
    """``<base64 digest>-<N>`` as (raw digest, N); None unless ``text`` is that form with a
    digest of ``digest_bytes`` bytes."""
    if not text:
        return None
    match = _PARTS_RE.match(text)
    if match is None or int(match.group(2)) < 1:
        return None
    try:
        raw = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        return None
    return (raw, int(match.group(2))) if len(raw) == digest_bytes else None


def candidate_part_sizes(
    size: int, parts: int, known: Sequence[int] = KNOWN_PART_SIZES, *, limit: int = MAX_CANDIDATES
) -> tuple[int, ...]:
    """Part sizes from ``known`` that cut ``size`` bytes into exactly ``parts`` parts, in the
    order given, at most ``limit``. One part: any size works alike, so the object size."""
    if parts < 1 or size < 0:
        return ()
    if parts == 1:
        return (max(size, 1),)
    fitting = [p for p in known if p > 0 and -(-size // p) == parts]
    return tuple(dict.fromkeys(fitting))[:limit]


@dataclasses.dataclass(frozen=True)
class PartsChecksum(checksums.Checksum):
    """An expected parts digest: ``algorithm`` is ``<base>-parts`` (``md5-parts``,
    ``sha256-parts``, ...), ``value`` the hex digest of the concatenated part digests,
    ``parts`` their count and ``part_sizes`` the candidate part sizes to recompute it with."""

    parts: int = 1
    part_sizes: tuple[int, ...] = ()

    def hasher(self, size: int) -> checksums.Hasher:
        return PartsHasher(
            self.part_sizes, expected=self.value, algorithm=self.algorithm.removesuffix("-parts")
        )

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}-{self.parts}"


class _Track:
    """The parts digest of a stream for one part size."""

    __slots__ = ("algorithm", "digests", "filled", "part", "part_size")

    def __init__(self, part_size: int, algorithm: str) -> None:
        self.part_size, self.algorithm = part_size, algorithm
        self.part = checksums.new_hasher(algorithm, 0)
        self.filled = 0
        self.digests: list[bytes] = []

    def update(self, view: memoryview) -> None:
        while view:
            take = min(len(view), self.part_size - self.filled)
            self.part.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == self.part_size:
                self.digests.append(bytes.fromhex(self.part.hexdigest()))
                self.part, self.filled = checksums.new_hasher(self.algorithm, 0), 0

    def hexdigest(self) -> str:
        digests = list(self.digests)
        if self.filled or not digests:
            digests.append(bytes.fromhex(self.part.hexdigest()))
        combined = checksums.new_hasher(self.algorithm, 0)
        combined.update(b"".join(digests))
        return combined.hexdigest()


class PartsHasher:
    """Recomputes the parts digest for every candidate part size in one pass.

    ``hexdigest()`` is ``expected`` when one candidate reproduces it, else the first
    candidate's result (what a mismatch message shows)."""

    def __init__(self, part_sizes: Sequence[int], *, expected: str, algorithm: str = "md5") -> None:
        if not part_sizes:
            raise ValueError("a parts digest needs at least one candidate part size")
        self._tracks = [_Track(p, algorithm) for p in part_sizes]
        self._expected = expected

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        view = memoryview(data).cast("B")
        for track in self._tracks:
            track.update(view)

    def hexdigest(self) -> str:
        results = [t.hexdigest() for t in self._tracks]
        return self._expected if self._expected in results else results[0]

    def matched_part_size(self) -> int | None:
        """The candidate part size that reproduced the expected digest (after all updates)."""
        for track in self._tracks:
            if track.hexdigest() == self._expected:
                return track.part_size
        return None
