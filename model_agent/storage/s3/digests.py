"""Which checksum an S3 object promises, strongest first, from its HeadObject headers.

S3 offers, per object (HeadObject with ``x-amz-checksum-mode: ENABLED``):

- additional checksums ``x-amz-checksum-{sha256,sha1,crc32c,crc32}`` (base64, big-endian for
  CRCs). For a multipart upload they are ``COMPOSITE`` (a digest of the part digests,
  ``<base64>-<N>``; MinIO and moto omit the ``-N``, so the ETag's part count is used) unless
  ``x-amz-checksum-type: FULL_OBJECT`` says they cover the whole content;
- the ETag: the content MD5 for a single-part upload (not under SSE-KMS or SSE-C, where it is
  opaque), and ``<md5 of the part md5s>-<N>`` for a multipart one.

Policy, strongest first: sha256, sha256 parts, sha1, sha1 parts, the ETag MD5, the multipart
ETag MD5, crc32c, crc32, crc32c parts, crc32 parts, else the size only (``source`` says so).
A 128-bit MD5 is ranked above a 32-bit CRC: it catches more corruption. A parts digest is only
used when one of ``checksum_parts.KNOWN_PART_SIZES`` cuts the object into exactly N parts.
CRC64NVME is not computed here; such an object falls through to its ETag.

Pure: stdlib and ``model_agent.checksums``/``checksum_parts`` only, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping, Sequence

from model_agent import checksum_parts, checksums

__all__ = ["Promise", "multipart_count", "promise"]

_ADDITIONAL = (("sha256", 32), ("sha1", 20), ("crc32c", 4), ("crc32", 4))
_MD5_HEX_RE = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG_RE = re.compile(r"^([0-9a-f]{32})-(\d{1,5})$")


@dataclasses.dataclass(frozen=True)
class Promise:
    """What an object is verified with: ``digests`` (empty: size only) and ``source``, the
    header it came from (``x-amz-checksum-sha256``, ``etag-md5``, ``etag-multipart-md5``, ...,
    or ``size-only``); ``note`` says why nothing stronger was used."""

    digests: tuple[checksums.Checksum, ...]
    source: str
    note: str = ""


def _etag(headers: Mapping[str, str]) -> str:
    return headers.get("etag", "").strip().removeprefix("W/").strip('"').lower()


def multipart_count(etag: str) -> int | None:
    """N of a multipart ETag (``<hex>-<N>``, quotes allowed); None for a single-part one."""
    match = _MULTIPART_ETAG_RE.match(etag.strip().strip('"').lower())
    return int(match.group(2)) if match else None


def _decode(text: str, want: int) -> tuple[bytes, int | None] | None:
    """A checksum header as (raw digest, parts or None); None when malformed."""
    value, _, parts = text.strip().partition("-")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != want or (parts and not parts.isdigit()):
        return None
    return raw, int(parts) if parts else None


def _candidates(
    headers: Mapping[str, str], size: int, known: Sequence[int]
) -> list[tuple[str, Promise | None]]:
    """Every digest the headers promise, in policy order (None where the part sizes fit none)."""
    etag = _etag(headers)
    etag_parts = multipart_count(etag)
    full_object = headers.get("x-amz-checksum-type", "").upper() == "FULL_OBJECT"
    found: list[tuple[str, Promise | None]] = []
    for algorithm, want in _ADDITIONAL:
        text = headers.get(f"x-amz-checksum-{algorithm}")
        decoded = _decode(text, want) if text else None
        if decoded is None:
            continue
        raw, parts = decoded
        source = f"x-amz-checksum-{algorithm}"
        composite = parts is not None or (etag_parts is not None and not full_object)
        if not composite:
            found.append((algorithm, Promise((checksums.Checksum(algorithm, raw.hex()),), source)))
            continue
        count = parts or etag_parts or 1
        sizes = checksum_parts.candidate_part_sizes(size, count, known)
        digest = checksum_parts.PartsChecksum(
            f"{algorithm}-parts", raw.hex(), parts=count, part_sizes=sizes
        )
        found.append((f"{algorithm}-parts", Promise((digest,), source) if sizes else None))
    encrypted = headers.get("x-amz-server-side-encryption", "").lower().startswith("aws:kms") or (
        "x-amz-server-side-encryption-customer-algorithm" in headers
    )
    if not encrypted and _MD5_HEX_RE.match(etag):
        found.append(("md5", Promise((checksums.Checksum("md5", etag),), "etag-md5")))
    elif not encrypted and etag_parts is not None:
        hexdigest = etag.partition("-")[0]
        sizes = checksum_parts.candidate_part_sizes(size, etag_parts, known)
        digest = checksum_parts.PartsChecksum(
            "md5-parts", hexdigest, parts=etag_parts, part_sizes=sizes
        )
        found.append(("md5-parts", Promise((digest,), "etag-multipart-md5") if sizes else None))
    return found


def promise(
    size: int,
    headers: Mapping[str, str],
    *,
    known: Sequence[int] = checksum_parts.KNOWN_PART_SIZES,
) -> Promise:
    """Apply the module's policy to one object's HeadObject ``headers`` (any case)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    found = _candidates(lowered, size, known)
    usable = [(name, p) for name, p in found if p is not None]
    if usable:
        order = checksums.ALGORITHMS
        return min(usable, key=lambda item: order.index(item[0]))[1]
    if found:
        names = ", ".join(name for name, _ in found)
        return Promise((), "size-only", f"the {names} digest fits none of the known part sizes")
    encrypted = (
        "the ETag is not an MD5 under SSE-KMS/SSE-C and "
        if lowered.get("x-amz-server-side-encryption", "").startswith("aws:kms")
        else ""
    )
    return Promise((), "size-only", f"{encrypted}S3 reported no checksum it can be verified with")
