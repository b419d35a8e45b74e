"""Which checksum a GCS object promises: ``md5Hash``, else ``crc32c``.

GCS reports both as base64 in the object resource. Composite objects (``componentCount``
set, made by ``compose`` or parallel composite uploads) have no ``md5Hash``; their ``crc32c``
covers the whole content, so it is a content hash there too. An MD5 (128 bits) is ranked above
a CRC-32C (32 bits). Nothing usable: size only, with a note.

Pure: stdlib and ``model_agent.checksums`` only, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

from model_agent import checksums

__all__ = ["Promise", "promise"]


@dataclasses.dataclass(frozen=True)
class Promise:
    """``digests`` (empty: size only), ``source`` (``md5Hash``, ``crc32c`` or ``size-only``)."""

    digests: tuple[checksums.Checksum, ...]
    source: str
    note: str = ""


def _raw(text: Any, want: int) -> bytes | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == want else None


def promise(item: Mapping[str, Any]) -> Promise:
    """Apply the policy to one object resource (a listing item)."""
    if (md5 := _raw(item.get("md5Hash"), 16)) is not None:
        return Promise((checksums.Checksum("md5", md5.hex()),), "md5Hash")
    if (crc := _raw(item.get("crc32c"), 4)) is not None:
        return Promise((checksums.Checksum("crc32c", crc.hex()),), "crc32c")
    return Promise((), "size-only", "GCS reported neither md5Hash nor crc32c")
