"""Azure Blob Storage as the agent reads it: endpoints, credentials' reach, the listing XML.

``az://{account}[.blob.core.windows.net]/{container}/{prefix}``: the prefix is a folder
(``models/llama`` lists ``models/llama/``, never ``models/llama-v2/``); empty: the container.

Where credentials come from (the admin's, on the DaemonSet) and where they may go:

- ``AZURE_STORAGE_CONNECTION_STRING`` (``AccountName``, ``AccountKey`` or
  ``SharedAccessSignature``, ``BlobEndpoint`` or ``DefaultEndpointsProtocol``/``EndpointSuffix``);
- ``AZURE_STORAGE_ACCOUNT`` with ``AZURE_STORAGE_KEY`` or ``AZURE_STORAGE_SAS_TOKEN``;
- workload identity (``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``, ``AZURE_FEDERATED_TOKEN_FILE``):
  a bearer token for ``https://storage.azure.com``, good for any account the identity may read.

A key or SAS is used only for the account it names. A model's ``parameters.endpoint`` gets no
credential unless ``trust.egress`` allows it (the configured endpoint, or a host of
``--credential-hosts``).

Pure: stdlib, ``model_agent.checksums`` and ``trust.egress`` only, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit

from model_agent import checksums, errors
from model_agent.trust import egress

__all__ = [
    "Account",
    "Listed",
    "Page",
    "content_md5",
    "folder",
    "list_url",
    "parse_connection_string",
    "parse_listing",
    "resolve_account",
]


def folder(prefix: str) -> str:
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


@dataclasses.dataclass(frozen=True)
class Account:
    """The account to read: ``endpoint`` (its blob endpoint), and the configured credential
    for it (``key`` base64, or ``sas`` query string), none when not configured or not for it;
    ``trusted``: the endpoint is the configured one (workload identity tokens may go there)."""

    name: str
    endpoint: str
    key: str | None = dataclasses.field(default=None, repr=False)
    sas: str | None = dataclasses.field(default=None, repr=False)
    trusted: bool = True


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` (values may contain ``=``) as a dict; bad pieces are a ConfigError."""
    fields: dict[str, str] = {}
    for piece in text.strip().strip(";").split(";"):
        if not piece.strip():
            continue
        name, sep, value = piece.partition("=")
        if not sep or not name.strip():
            raise errors.ConfigError(
                "AZURE_STORAGE_CONNECTION_STRING is not a list of Key=Value pairs"
            )
        fields[name.strip()] = value.strip()
    return fields


def _normal(url: str, field: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.InvalidSpecError(f"{field} {url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def resolve_account(
    account: str,
    spec_endpoint: str | None,
    environ: Mapping[str, str],
    *,
    hosts: tuple[str, ...] = (),
) -> Account:
    """The endpoint and credential for ``account`` (see the module docstring)."""
    key = sas = None
    endpoint = f"https://{account}.blob.core.windows.net"
    raw = environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if raw:
        fields = parse_connection_string(raw)
        if fields.get("AccountName") == account or (
            "AccountName" not in fields and fields.get("BlobEndpoint")
        ):
            protocol = fields.get("DefaultEndpointsProtocol", "https")
            suffix = fields.get("EndpointSuffix", "core.windows.net")
            endpoint = fields.get("BlobEndpoint") or f"{protocol}://{account}.blob.{suffix}"
            key = fields.get("AccountKey") or None
            sas = fields.get("SharedAccessSignature") or None
    elif environ.get("AZURE_STORAGE_ACCOUNT") == account:
        key = environ.get("AZURE_STORAGE_KEY") or None
        sas = environ.get("AZURE_STORAGE_SAS_TOKEN") or None
    endpoint = _normal(endpoint, "the blob endpoint")
    if sas:
        sas = sas.lstrip("?")
    if spec_endpoint:
        chosen = _normal(spec_endpoint, "parameters.endpoint")
        rule = egress.Policy(endpoints=(endpoint,), hosts=hosts, oci_services=False)
        if not egress.allowed(chosen, rule):
            return Account(account, chosen, trusted=False)
        return Account(account, chosen, key, sas)
    return Account(account, endpoint, key, sas)


def list_url(endpoint: str, container: str, *, prefix: str, marker: str | None, size: int) -> str:
    query = {"restype": "container", "comp": "list", "prefix": prefix, "maxresults": str(size)}
    if marker:
        query["marker"] = marker
    return f"{endpoint}/{quote(container, safe='')}?{urlencode(query)}"


def blob_url(endpoint: str, container: str, name: str) -> str:
    return f"{endpoint}/{quote(container, safe='')}/{quote(name, safe='/~')}"


@dataclasses.dataclass(frozen=True)
class Listed:
    name: str
    size: int
    etag: str
    content_md5: str | None


@dataclasses.dataclass(frozen=True)
class Page:
    blobs: tuple[Listed, ...]
    next_marker: str | None


def parse_listing(body: bytes) -> Page:
    """One page of ``List Blobs`` (``EnumerationResults``); ServerError-worthy bodies raise
    ValueError."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"the listing is not XML ({exc})") from None
    found = []
    for blob in root.iter("Blob"):
        properties = blob.find("Properties")
        name = blob.findtext("Name") or ""
        if properties is None or not name:
            continue
        found.append(
            Listed(
                name=name,
                size=int(properties.findtext("Content-Length") or 0),
                etag=(properties.findtext("Etag") or "").strip('"'),
                content_md5=properties.findtext("Content-MD5") or None,
            )
        )
    return Page(tuple(found), root.findtext("NextMarker") or None)


def content_md5(text: str | None) -> checksums.Checksum | None:
    """A ``Content-MD5`` property (base64 of 16 bytes) as an md5 Checksum; None when unset."""
    if not text:
        return None
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return checksums.Checksum("md5", raw.hex()) if len(raw) == 16 else None
