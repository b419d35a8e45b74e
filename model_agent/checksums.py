"""Checksums the storage backends promise, and the hashers that check them.

Owns: the ``Checksum`` value (algorithm + lower-case hex digest), the order of strength used to
pick one per file, the git blob framing (``blob <size>\\0``) of Hugging Face small files, and
conversions of the wire forms (OCI's base64 ``content-md5``, multipart md5 ``<b64>-<parts>``).

Pure: stdlib and the ``crc32c`` extension only, no I/O. Reading files and running hashers in
threads is ``verify``'s job.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
import zlib
from collections.abc import Iterable
from typing import Protocol

import crc32c

__all__ = [
    "ALGORITHMS",
    "Checksum",
    "Hasher",
    "md5_from_base64",
    "multipart_md5",
    "new_hasher",
    "strongest",
]

#: Known algorithms, strongest first. ``git-sha1`` is SHA-1 over ``blob <size>\0`` + content.
#: ``crc32c``/``crc32``: S3's additional checksums (big-endian, as hex). ``<x>-parts`` is a
#: multipart upload's digest of the part digests: not a content hash; only a subclass that
#: knows the part sizes can build its hasher (``checksum_parts``).
ALGORITHMS = (
    "sha256",
    "sha256-parts",
    "sha1",
    "sha1-parts",
    "git-sha1",
    "md5",
    "md5-parts",
    "crc32c",
    "crc32",
    "crc32c-parts",
    "crc32-parts",
)
_HEX_LENGTH = {
    "sha256": 64,
    "sha256-parts": 64,
    "sha1": 40,
    "sha1-parts": 40,
    "git-sha1": 40,
    "md5": 32,
    "md5-parts": 32,
    "crc32c": 8,
    "crc32": 8,
    "crc32c-parts": 8,
    "crc32-parts": 8,
}
_HEX_RE = re.compile(r"^[0-9a-f]+$")


@dataclasses.dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algorithm`` is one of ``ALGORITHMS``, ``value`` lower-case hex."""

    algorithm: str
    value: str

    def __post_init__(self) -> None:
        if self.algorithm not in _HEX_LENGTH:
            raise ValueError(f"unknown checksum algorithm {self.algorithm!r}")
        value = self.value.strip().strip('"').lower()
        if len(value) != _HEX_LENGTH[self.algorithm] or not _HEX_RE.match(value):
            raise ValueError(f"{self.algorithm} digest {self.value!r} is not valid hex")
        object.__setattr__(self, "value", value)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"

    def hasher(self, size: int) -> Hasher:
        """A fresh hasher whose ``hexdigest()`` is compared with ``value``."""
        return new_hasher(self.algorithm, size)


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str, size: int) -> Hasher:
    """A fresh hasher for ``algorithm``; ``size`` is the file size (git framing needs it)."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "md5":
        return hashlib.md5(usedforsecurity=False)
    if algorithm == "sha1":
        return hashlib.sha1(usedforsecurity=False)
    if algorithm == "crc32c":
        return _Crc32c()
    if algorithm == "crc32":
        return _Crc32()
    if algorithm == "git-sha1":
        hasher = hashlib.sha1(usedforsecurity=False)
        hasher.update(b"blob %d\0" % size)
        return hasher
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


class _Crc32:
    """zlib's CRC-32 as a hasher; the digest is big-endian, as S3 reports it."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def hexdigest(self) -> str:
        return f"{self._value:08x}"


class _Crc32c:
    """CRC-32C (Castagnoli) through the ``crc32c`` extension (it releases the GIL)."""

    def __init__(self) -> None:
        self._hash = crc32c.CRC32CHash()

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return str(self._hash.hexdigest())


def strongest(checksums: Iterable[Checksum]) -> Checksum | None:
    """The strongest of ``checksums`` (``ALGORITHMS`` order), or None when there is none."""
    best: Checksum | None = None
    for checksum in checksums:
        if best is None or ALGORITHMS.index(checksum.algorithm) < ALGORITHMS.index(best.algorithm):
            best = checksum
    return best


def md5_from_base64(text: str) -> Checksum | None:
    """OCI's ``content-md5`` (base64 of the 16 digest bytes) as a Checksum; None if malformed.

    A multipart md5 (``<base64>-<parts>``) is not a content hash and gives None here.
    """
    if "-" in text:
        return None
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16:
        return None
    return Checksum("md5", raw.hex())


def multipart_md5(part_digests: Iterable[bytes]) -> str:
    """OCI/S3 multipart md5 from the raw md5 digests of each part: ``<base64>-<count>``."""
    digests = list(part_digests)
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).digest()
    return f"{base64.b64encode(combined).decode()}-{len(digests)}"
