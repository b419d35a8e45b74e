"""Which digest an OCI object promises, and the hasher that checks a multipart md5.

OCI Object Storage reports a content md5 (``content-md5``, base64) only for objects uploaded in
one piece. A multipart upload gets ``opc-multipart-md5`` instead: ``<base64>-<N>``, the md5 of
the N concatenated binary part md5s. That is not a content hash, and the service does not say
how large the parts were. The policy, strongest first:

1. a full digest in user metadata (``opc-meta-sha256``, ``opc-meta-md5``; base64 or hex, as
   OME's replicator and common tools write them);
2. the plain ``content-md5``;
3. the multipart md5 recomputed for each known part size that gives exactly N parts for the
   object's size (the oci CLI's and SDK's 128 MiB default first; at most
   ``MAX_CANDIDATES`` sizes, all hashed in one pass);
4. nothing: the file is checked by size only, and the caller says so (``size_only``).

Pure: stdlib and ``model_agent.checksums`` only, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence

from model_agent import checksums

__all__ = [
    "DEFAULT_PART_SIZE",
    "KNOWN_PART_SIZES",
    "MAX_CANDIDATES",
    "MultipartHasher",
    "MultipartMd5",
    "Promise",
    "candidate_part_sizes",
    "metadata_digest",
    "needs_head",
    "parse_multipart_md5",
    "promise",
]

_MIB = 1024 * 1024
#: The oci CLI's and the Python/Go/Java SDK upload managers' default part size.
DEFAULT_PART_SIZE = 128 * _MIB
#: Part sizes tried, in order: the SDK/CLI default, the SDK's streaming default (10 MiB), the
#: S3-compatible tools' defaults (8 MiB aws/boto3, 5 MiB rclone and the S3 minimum), then the
#: round sizes people pass to ``--part-size``.
KNOWN_PART_SIZES: tuple[int, ...] = tuple(
    m * _MIB for m in (128, 10, 8, 5, 16, 32, 64, 100, 256, 512, 1000, 1024, 50, 20, 25, 200, 500)
)
#: Each candidate costs one more md5 pass over the file: bound the cost.
MAX_CANDIDATES = 3
MULTIPART_ALGORITHM = "md5-parts"
_MULTIPART_RE = re.compile(r"^\s*([A-Za-z0-9+/]{22}==)-(\d{1,5})\s*$")
#: User-metadata keys (after ``opc-meta-``) that carry a full-content digest, strongest first.
_METADATA_KEYS = (("sha256", "sha256"), ("content-sha256", "sha256"),
                  ("md5", "md5"), ("content-md5", "md5"))  # fmt: skip
_DIGEST_BYTES = {"sha256": 32, "md5": 16}


def parse_multipart_md5(text: str | None) -> tuple[bytes, int] | None:
    """``<base64 md5>-<N>`` as (16 digest bytes, N); None when ``text`` is not that form."""
    if not text:
        return None
    match = _MULTIPART_RE.match(text)
    if match is None or int(match.group(2)) < 1:
        return None
    try:
        raw = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        return None
    return (raw, int(match.group(2))) if len(raw) == 16 else None


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


def _decode_digest(text: str, algorithm: str) -> checksums.Checksum | None:
    """A metadata digest written as hex or base64; None when it is neither."""
    value = text.strip().strip('"')
    want = _DIGEST_BYTES[algorithm]
    if re.fullmatch(r"[0-9A-Fa-f]+", value) and len(value) == 2 * want:
        return checksums.Checksum(algorithm, value.lower())
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return checksums.Checksum(algorithm, raw.hex()) if len(raw) == want else None


def metadata_digest(headers: Mapping[str, str]) -> checksums.Checksum | None:
    """The strongest full-content digest in ``opc-meta-*`` headers (case-insensitive)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for key, algorithm in _METADATA_KEYS:
        text = lowered.get(f"opc-meta-{key}")
        if text and (digest := _decode_digest(text, algorithm)) is not None:
            return digest
    return None


@dataclasses.dataclass(frozen=True)
class MultipartMd5(checksums.Checksum):
    """An expected multipart md5: ``value`` is the hex md5 of the part md5s, ``parts`` their
    count and ``part_sizes`` the candidate part sizes to recompute it with."""

    parts: int = 1
    part_sizes: tuple[int, ...] = ()

    def hasher(self, size: int) -> checksums.Hasher:
        return MultipartHasher(self.part_sizes, expected=self.value)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}-{self.parts}"


class _Track:
    """The multipart md5 of a stream for one part size."""

    __slots__ = ("digests", "filled", "part", "part_size")

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self.part = hashlib.md5(usedforsecurity=False)
        self.filled = 0
        self.digests: list[bytes] = []

    def update(self, view: memoryview) -> None:
        while view:
            take = min(len(view), self.part_size - self.filled)
            self.part.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == self.part_size:
                self.digests.append(self.part.digest())
                self.part, self.filled = hashlib.md5(usedforsecurity=False), 0

    def hexdigest(self) -> str:
        digests = list(self.digests)
        if self.filled or not digests:
            digests.append(self.part.digest())
        return hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()


class MultipartHasher:
    """Recomputes the multipart md5 for every candidate part size in one pass.

    ``hexdigest()`` is ``expected`` when one candidate reproduces it, else the first
    candidate's result (what a mismatch message shows)."""

    def __init__(self, part_sizes: Sequence[int], *, expected: str) -> None:
        if not part_sizes:
            raise ValueError("a multipart md5 needs at least one candidate part size")
        self._tracks = [_Track(p) for p in part_sizes]
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


def needs_head(listed_md5: str | None) -> bool:
    """Whether the listing's ``md5`` is not enough to verify the object (multipart or none),
    so a HEAD must look for ``opc-meta-*`` digests and ``opc-multipart-md5``."""
    return listed_md5 is None or checksums.md5_from_base64(listed_md5) is None


@dataclasses.dataclass(frozen=True)
class Promise:
    """What an object will be verified with: ``digests`` (empty: size only) and ``source``,
    one of ``metadata``, ``content-md5``, ``multipart-md5`` or ``size-only``; ``note`` says
    why a weaker check was chosen."""

    digests: tuple[checksums.Checksum, ...]
    source: str
    note: str = ""


def promise(
    size: int,
    listed_md5: str | None,
    headers: Mapping[str, str] | None,
    *,
    known: Sequence[int] = KNOWN_PART_SIZES,
) -> Promise:
    """Apply the module's policy to one object: its listed ``md5`` and, when ``needs_head``
    said so, its HEAD ``headers`` (None when no HEAD was made); ``known``: part sizes to try."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    if (meta := metadata_digest(lowered)) is not None:
        return Promise((meta,), "metadata")
    for text in (listed_md5, lowered.get("content-md5")):
        if text and (plain := checksums.md5_from_base64(text)) is not None:
            return Promise((plain,), "content-md5")
    multipart = parse_multipart_md5(lowered.get("opc-multipart-md5")) or parse_multipart_md5(
        listed_md5
    )
    if multipart is None:
        return Promise((), "size-only", "the service reported no md5")
    raw, parts = multipart
    sizes = candidate_part_sizes(size, parts, known)
    if not sizes:
        return Promise(
            (),
            "size-only",
            f"multipart md5 of {parts} parts fits none of the known part sizes",
        )
    digest = MultipartMd5(MULTIPART_ALGORITHM, raw.hex(), parts=parts, part_sizes=sizes)
    return Promise((digest,), "multipart-md5")
