"""The storage backend protocol: pin a source into a plan of files, then sign ranged reads.

A backend does two things. ``pin()`` lists the source once and returns a ``Plan``: the pinned
revision (a commit sha, or a listing digest for object stores) and every file with its size,
its source identity (content hash, etag) and the checksums the source promises. ``request()``
turns one byte range of one planned file into an HTTP request (URL and headers, signed when the
source signs each request, as OCI does) that the download engine sends itself.

Only ``pin`` may call a synchronous SDK (in a thread); ``request`` is cheap and async so that a
signer may refresh credentials. Backends never read or write local files.
"""

from __future__ import annotations

import dataclasses
import email.utils
import time
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from model_agent import checksums

__all__ = [
    "Backend",
    "HTTPRequest",
    "Plan",
    "RemoteFile",
    "range_header",
    "retry_after_seconds",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RemoteFile:
    """One file of a pinned source.

    ``path``: where it lands, relative to the destination, as the source names it (the
    pipeline rejects unsafe names with ``planning.safe_relative_path`` before any use).
    ``identity``: a string that changes whenever the content
    may have changed (LFS sha256, git blob sha1, etag); resume is only allowed while it is equal.
    ``digests``: every digest the source promises; verification uses the strongest.
    ``key``: the backend's own name for the object (repo path, object name).
    """

    path: str
    size: int
    identity: str
    key: str
    digests: tuple[checksums.Checksum, ...] = ()

    @property
    def checksum(self) -> checksums.Checksum | None:
        return checksums.strongest(self.digests)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """The pinned listing of a source: ``revision`` names exactly what ``files`` hold."""

    uri: str
    revision: str
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HTTPRequest:
    """A GET the engine sends. ``auth_hosts``: hosts (``host:port``) that may receive the
    ``headers`` marked secret (Authorization); the engine drops them on redirects elsewhere."""

    url: str
    headers: Mapping[str, str]
    auth_hosts: frozenset[str] = frozenset()


def range_header(start: int, end: int) -> str:
    """The ``Range`` header value for the half-open byte range ``[start, end)``."""
    if not 0 <= start < end:
        raise ValueError(f"empty or invalid byte range [{start}, {end})")
    return f"bytes={start}-{end - 1}"


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@runtime_checkable
class Backend(Protocol):
    """What the pipeline and the download engine need from a storage source."""

    async def pin(self) -> Plan:
        """List and pin the source. Raises ``errors.NotFoundError``/``AuthError``/... ."""
        ...

    async def request(self, file: RemoteFile, *, start: int, end: int) -> HTTPRequest:
        """A signed GET of bytes ``[start, end)`` of ``file``; its headers include the
        ``Range`` header (``range_header``) so that a signer can cover it."""
        ...

    def check_response(self, file: RemoteFile, headers: Mapping[str, str]) -> None:
        """Raise if response headers show the source moved away from the pinned plan
        (another commit, another etag). Called on each data response."""
        ...

    async def close(self) -> None: ...
