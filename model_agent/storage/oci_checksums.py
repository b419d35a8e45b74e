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
import re
from collections.abc import Mapping, Sequence

from model_agent import checksum_parts, checksums

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

#: The oci CLI's and the Python/Go/Java SDK upload managers' default part size.
DEFAULT_PART_SIZE = checksum_parts.KNOWN_PART_SIZES[0]
KNOWN_PART_SIZES = checksum_parts.KNOWN_PART_SIZES
MAX_CANDIDATES = checksum_parts.MAX_CANDIDATES
candidate_part_sizes = checksum_parts.candidate_part_sizes
#: A multipart md5 is a ``checksum_parts`` digest over md5 (shared with the S3 backend).
MultipartMd5 = checksum_parts.PartsChecksum
MultipartHasher = checksum_parts.PartsHasher
MULTIPART_ALGORITHM = "md5-parts"
#: User-metadata keys (after ``opc-meta-``) that carry a full-content digest, strongest first.
_METADATA_KEYS = (("sha256", "sha256"), ("content-sha256", "sha256"),
                  ("md5", "md5"), ("content-md5", "md5"))  # fmt: skip
_DIGEST_BYTES = {"sha256": 32, "md5": 16}


def parse_multipart_md5(text: str | None) -> tuple[bytes, int] | None:
    """``<base64 md5>-<N>`` as (16 digest bytes, N); None when ``text`` is not that form."""
    return checksum_parts.parse_parts_digest(text, digest_bytes=16)


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
