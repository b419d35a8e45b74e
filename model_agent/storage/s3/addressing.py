"""Where an S3 object lives: the folder a URI names, the endpoint to use, the object's URL.

``s3://{bucket}[@{region}]/{prefix}``: the prefix is a folder (``models/llama`` lists
``models/llama/``, never ``models/llama-v2/``); an empty prefix is the whole bucket.

Endpoints: AWS (``https://s3.{region}.amazonaws.com``, virtual-hosted URLs
``https://{bucket}.s3.{region}.amazonaws.com/{key}`` for DNS-safe bucket names) or a custom one
(MinIO, Ceph, moto: path-style ``{endpoint}/{bucket}/{key}``). The admin's endpoint
(``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``) is trusted with the node's credentials; one a
model's spec names (``parameters.endpoint``) only when ``trust.egress`` allows it (the same
endpoint, or a host of ``--credential-hosts``); otherwise requests to it go unsigned.

Pure: stdlib and ``trust.egress`` only, no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from model_agent import errors
from model_agent.trust import egress

__all__ = ["Endpoint", "choose_endpoint", "folder", "object_url", "virtual_hosted"]

_DNS_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def folder(prefix: str) -> str:
    """The listing prefix for a URI's prefix: ``a/b`` → ``a/b/``; empty stays empty."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """``url``: a custom endpoint (None: AWS's own); ``trusted``: may receive credentials."""

    url: str | None
    trusted: bool


def _normal(url: str, field: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.InvalidSpecError(f"{field} {url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def choose_endpoint(
    spec_endpoint: str | None, environ: Mapping[str, str], *, hosts: tuple[str, ...] = ()
) -> Endpoint:
    """The endpoint to use and whether credentials may go to it: the admin's endpoint, or
    one ``trust.egress`` allows (the admin's endpoint, ``--credential-hosts``)."""
    admin_raw = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None
    admin = _normal(admin_raw, "AWS_ENDPOINT_URL_S3") if admin_raw else None
    if not spec_endpoint:
        return Endpoint(admin, True)
    chosen = _normal(spec_endpoint, "parameters.endpoint")
    rule = egress.Policy(endpoints=(admin,) if admin else (), hosts=hosts, oci_services=False)
    return Endpoint(chosen, egress.allowed(chosen, rule))


def virtual_hosted(endpoint: str, bucket: str) -> bool:
    """Whether to address ``bucket`` as a host name: only on AWS, only for DNS-safe names."""
    host = urlsplit(endpoint).hostname or ""
    return host.endswith(".amazonaws.com") and bool(_DNS_BUCKET_RE.match(bucket))


def object_url(endpoint: str, bucket: str, key: str, *, version_id: str | None = None) -> str:
    """The GET URL of ``key`` (percent-encoded as SigV4 signs it: ``/`` and ``~`` kept)."""
    parts = urlsplit(endpoint)
    path = quote(key, safe="/~")
    if virtual_hosted(endpoint, bucket):
        url = f"{parts.scheme}://{bucket}.{parts.netloc}/{path}"
    else:
        url = f"{endpoint.rstrip('/')}/{quote(bucket, safe='')}/{path}"
    if version_id:
        url += f"?versionId={quote(version_id, safe='')}"
    return url
