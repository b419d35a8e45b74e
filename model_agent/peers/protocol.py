"""The peer protocol, pure: paths, headers, the token check, ranges and the holdings document.

A peer serves ``GET /peer/v1/models/<key>`` (what it holds of a model: its pinned revision,
and per file the identity and the byte ranges it has) and
``GET /peer/v1/models/<key>/files/<path>`` (one byte range, with ``Range``). Every request
carries ``Authorization: Bearer <token>``; a file request also names the revision and the file
identity (``size:checksum`` as the origin listed them), and a peer answers only when both are
its own. The key is the model's ConfigMap key; the address a peer advertises is an annotation
on its node ConfigMap.

Owns the wire format; no I/O.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote, urlsplit

__all__ = [
    "ANNOTATION",
    "IDENTITY_HEADER",
    "PREFIX",
    "REVISION_HEADER",
    "FileHolding",
    "Holding",
    "address_url",
    "authorized",
    "file_identity",
    "file_url",
    "model_url",
    "parse_address",
    "parse_holding",
    "parse_range",
]

#: The node ConfigMap annotation that holds the agent's peer URL (``http://10.0.0.5:8090``).
ANNOTATION = "models.ome.io/peer-address"
PREFIX = "/peer/v1/models/"
REVISION_HEADER = "X-Model-Agent-Revision"
IDENTITY_HEADER = "X-Model-Agent-Identity"
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d+)$")
_MAX_RANGES = 100_000


@dataclasses.dataclass(frozen=True)
class FileHolding:
    """What a peer holds of one file: its identity and the byte ranges written so far."""

    identity: str
    size: int
    ranges: tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Holding:
    """What a peer holds of one model. ``state``: ``starting`` (pinning, nothing yet),
    ``downloading`` or ``ready``; ``received`` grows while the download progresses."""

    revision: str
    state: Literal["starting", "downloading", "ready"]
    received: int
    files: Mapping[str, FileHolding]

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "state": self.state,
            "received": self.received,
            "files": {
                path: {
                    "identity": f.identity,
                    "size": f.size,
                    "ranges": [list(r) for r in f.ranges],
                }
                for path, f in self.files.items()
            },
        }


def file_identity(size: int, checksum: str | None) -> str | None:
    """What names a file's content across nodes: its size and the origin's digest. None when
    the origin promised no digest: such a file is never taken from a peer (nothing could
    prove a peer's bytes right)."""
    return f"{size}:{checksum}" if checksum else None


def authorized(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (constant-time compare)."""
    if not header or not token:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def model_url(base: str, key: str) -> str:
    return f"{base.rstrip('/')}{PREFIX}{quote(key, safe='')}"


def file_url(base: str, key: str, path: str) -> str:
    return f"{model_url(base, key)}/files/{quote(path, safe='/')}"


def address_url(address: str, port: int, *, tls: bool) -> str:
    """The URL an agent advertises for its peer server (IPv6 addresses in brackets)."""
    host = address
    try:
        if ipaddress.ip_address(address).version == 6:
            host = f"[{address}]"
    except ValueError:
        pass
    return f"{'https' if tls else 'http'}://{host}:{port}"


def parse_address(value: str | None) -> str | None:
    """An advertised peer URL, or None when it is not ``http(s)://host:port`` (another node
    wrote it: never trusted to be well-formed)."""
    if not value or len(value) > 300:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["invalid"]:
    """The half-open range of a single ``bytes=a-b`` header within ``size``; peers only ask
    for closed single ranges, so anything else is ``invalid``."""
    match = _RANGE_RE.match((header or "").strip())
    if match is None:
        return "invalid"
    start, last = int(match.group(1)), int(match.group(2))
    if start > last or last >= size:
        return "invalid"
    return start, last + 1


def _ranges(value: object, size: int) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or len(value) > _MAX_RANGES:
        raise ValueError("ranges must be a list")
    found = []
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
            or not 0 <= item[0] < item[1] <= size
        ):
            raise ValueError(f"bad range {item!r}")
        found.append((item[0], item[1]))
    return tuple(sorted(found))


def parse_holding(value: object) -> Holding:
    """A peer's holdings document; ``ValueError`` when it is malformed (a peer is another
    node, not this process: its answers are checked like any input)."""
    if not isinstance(value, dict):
        raise ValueError("holding must be an object")
    revision, state, received = value.get("revision"), value.get("state"), value.get("received")
    if not isinstance(revision, str) or state not in ("starting", "downloading", "ready"):
        raise ValueError("holding needs revision and state")
    if not isinstance(received, int) or isinstance(received, bool) or received < 0:
        raise ValueError("holding needs received bytes")
    files_value = value.get("files")
    if not isinstance(files_value, dict):
        raise ValueError("holding needs files")
    files: dict[str, FileHolding] = {}
    for path, entry in files_value.items():
        if not isinstance(entry, dict):
            raise ValueError(f"bad file {path!r}")
        identity, size = entry.get("identity"), entry.get("size")
        if not isinstance(identity, str) or not isinstance(size, int) or size < 0:
            raise ValueError(f"bad file {path!r}")
        files[str(path)] = FileHolding(identity, size, _ranges(entry.get("ranges"), size))
    return Holding(revision, state, received, files)
