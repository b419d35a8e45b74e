"""Where a GCS object lives: the folder a URI names, the endpoint, the listing and media URLs.

``gs://{bucket}/{prefix}``: the prefix is a folder (``models/llama`` lists ``models/llama/``,
never ``models/llama-v2/``); an empty prefix is the whole bucket.

Endpoint: ``https://storage.googleapis.com``, or the admin's ``STORAGE_EMULATOR_HOST`` (the
variable Google's client libraries read; ``host:port`` or a URL), trusted with the node's
credentials. An endpoint a model's spec names (``parameters.endpoint``) gets no token unless
``trust.egress`` allows it (the admin's endpoint, or a host of ``--credential-hosts``).

Pure: stdlib and ``trust.egress`` only, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit

from model_agent import errors
from model_agent.trust import egress

__all__ = [
    "DEFAULT_ENDPOINT",
    "Endpoint",
    "choose_endpoint",
    "folder",
    "list_url",
    "media_url",
    "object_url",
]

DEFAULT_ENDPOINT = "https://storage.googleapis.com"


def folder(prefix: str) -> str:
    """The listing prefix for a URI's prefix: ``a/b`` → ``a/b/``; empty stays empty."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """``url``: the JSON API's root; ``trusted``: may receive the node's token."""

    url: str
    trusted: bool


def _normal(url: str, field: str) -> str:
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"  # STORAGE_EMULATOR_HOST is often host:port
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.InvalidSpecError(f"{field} {url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def choose_endpoint(
    spec_endpoint: str | None, environ: Mapping[str, str], *, hosts: tuple[str, ...] = ()
) -> Endpoint:
    """The endpoint to use and whether the node's token may go to it (``trust.egress``: the
    admin's endpoint or a host of ``--credential-hosts``)."""
    admin_raw = environ.get("STORAGE_EMULATOR_HOST") or None
    admin = _normal(admin_raw, "STORAGE_EMULATOR_HOST") if admin_raw else DEFAULT_ENDPOINT
    if not spec_endpoint:
        return Endpoint(admin, True)
    chosen = _normal(spec_endpoint, "parameters.endpoint")
    rule = egress.Policy(endpoints=(admin,), hosts=hosts, oci_services=False)
    return Endpoint(chosen, egress.allowed(chosen, rule))


def list_url(endpoint: str, bucket: str, *, prefix: str, page_size: int, token: str | None) -> str:
    query = {
        "prefix": prefix,
        "maxResults": str(page_size),
        "fields": "nextPageToken,items(name,size,md5Hash,crc32c,generation,componentCount,etag)",
    }
    if token:
        query["pageToken"] = token
    return f"{endpoint}/storage/v1/b/{quote(bucket, safe='')}/o?{urlencode(query)}"


def object_url(endpoint: str, bucket: str, name: str) -> str:
    """The metadata URL of one object."""
    return f"{endpoint}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"


def media_url(endpoint: str, bucket: str, name: str, *, generation: str | None) -> str:
    """The media download URL of ``name``, pinned to ``generation`` when known."""
    url = (
        f"{endpoint}/download/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        "?alt=media"
    )
    return f"{url}&generation={quote(generation, safe='')}" if generation else url
