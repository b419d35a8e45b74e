"""GitHub releases, as the agent reads them: URLs, which token may go where, asset digests.

``github://{owner}/{repository}[@{tag}]`` names one release: ``@{tag}``, or the latest release
when no tag is given (``latest``). Its assets are the model's files, each landing at
``<path>/<asset name>``.

Endpoint: ``https://api.github.com``, or the admin's ``GITHUB_API_URL`` (GitHub Enterprise
Server: ``https://{host}/api/v3``). The node's ``GITHUB_TOKEN`` goes to the admin's endpoint
only (or a host of ``--credential-hosts``: ``trust.egress``); a token from the model's own
Secret (``storage.key``) goes to the model's endpoint.

Asset digests: GitHub reports ``digest: "sha256:<hex>"`` for assets (uploaded since mid-2025);
older assets have none and are checked by size only.

Pure: stdlib, ``model_agent.checksums`` and ``trust.egress`` only, no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from model_agent import checksums, errors
from model_agent.trust import egress

__all__ = [
    "DEFAULT_API",
    "Endpoint",
    "asset_digest",
    "asset_url",
    "assets_url",
    "choose_endpoint",
    "next_link",
    "release_url",
]

DEFAULT_API = "https://api.github.com"
_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_SHA256_RE = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """``url``: the REST API root; ``trusted``: the admin's (the node's token may go there)."""

    url: str
    trusted: bool


def _normal(url: str, field: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.InvalidSpecError(f"{field} {url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def choose_endpoint(
    spec_endpoint: str | None, environ: Mapping[str, str], *, hosts: tuple[str, ...] = ()
) -> Endpoint:
    """The API endpoint and whether the node's token may go to it (``trust.egress``)."""
    admin_raw = environ.get("GITHUB_API_URL") or None
    admin = _normal(admin_raw, "GITHUB_API_URL") if admin_raw else DEFAULT_API
    if not spec_endpoint:
        return Endpoint(admin, True)
    chosen = _normal(spec_endpoint, "parameters.endpoint")
    rule = egress.Policy(endpoints=(admin,), hosts=hosts, oci_services=False)
    return Endpoint(chosen, egress.allowed(chosen, rule))


def _repo(owner: str, repository: str) -> str:
    return f"repos/{quote(owner, safe='')}/{quote(repository, safe='')}"


def release_url(api: str, owner: str, repository: str, tag: str) -> str:
    """The release ``tag`` (``latest``: the latest release)."""
    if tag == "latest":
        return f"{api}/{_repo(owner, repository)}/releases/latest"
    return f"{api}/{_repo(owner, repository)}/releases/tags/{quote(tag, safe='')}"


def assets_url(api: str, owner: str, repository: str, release_id: int, *, per_page: int) -> str:
    return f"{api}/{_repo(owner, repository)}/releases/{release_id}/assets?per_page={per_page}"


def asset_url(api: str, owner: str, repository: str, asset_id: int) -> str:
    """The asset's API URL; with ``Accept: application/octet-stream`` it redirects to bytes."""
    return f"{api}/{_repo(owner, repository)}/releases/assets/{asset_id}"


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header, or None on the last page."""
    if not header:
        return None
    for part in header.split(","):
        match = _LINK_RE.search(part)
        if match:
            return match.group(1)
    return None


def asset_digest(asset: Mapping[str, Any]) -> checksums.Checksum | None:
    """The asset's ``sha256:<hex>`` digest, or None when GitHub gave none."""
    match = _SHA256_RE.match(str(asset.get("digest") or ""))
    return checksums.Checksum("sha256", match.group(1)) if match else None
