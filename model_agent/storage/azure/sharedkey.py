"""Shared Key signing of Blob service requests (``Authorization: SharedKey account:sig``).

The string to sign is the verb, eleven standard header slots (only ``Range`` is ever set for a
GET), the ``x-ms-*`` headers (lower-case, sorted, ``name:value``), and the canonical resource:
``/{account}{url path}`` plus each query parameter (lower-case name, sorted) as
``\\n{name}:{value}``. HMAC-SHA256 with the base64-decoded account key.

Pure: stdlib only, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from model_agent import errors

__all__ = ["authorization"]

_SLOTS = (
    "content-encoding", "content-language", "content-length", "content-md5", "content-type",
    "date", "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range",
)  # fmt: skip


def authorization(
    method: str, url: str, headers: Mapping[str, str], *, account: str, key: str
) -> str:
    """The ``Authorization`` header value for a request with these headers."""
    lowered = {k.lower(): v.strip() for k, v in headers.items()}
    lines = [method.upper()]
    for slot in _SLOTS:
        value = lowered.get(slot, "")
        lines.append("" if slot == "content-length" and value == "0" else value)
    lines.extend(f"{name}:{lowered[name]}" for name in sorted(lowered) if name.startswith("x-ms-"))
    parts = urlsplit(url)
    resource = f"/{account}{parts.path or '/'}"
    query: dict[str, list[str]] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name.lower(), []).append(unquote(value))
    for name in sorted(query):
        resource += f"\n{name}:{','.join(sorted(query[name]))}"
    lines.append(resource)
    try:
        secret = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise errors.ConfigError("the Azure storage account key is not base64") from None
    signature = hmac.new(secret, "\n".join(lines).encode(), hashlib.sha256).digest()
    return f"SharedKey {account}:{base64.b64encode(signature).decode()}"
