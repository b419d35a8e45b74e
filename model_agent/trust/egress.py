"""May a credential go to this URL? The one rule every storage backend asks.

Pure. A credential (a hub token from any source, an OCI request signature, a workload-identity
token) goes only to a host the cluster admin chose: the agent's configured endpoints
(``HF_ENDPOINT``, ``OCI_OBJECT_STORAGE_ENDPOINT``), the OCI region services
(``objectstorage.<region>.oraclecloud.com``, ``*.objectstorage.<region>.oci.customer-oci.com``)
and the hosts of ``--credential-hosts``. A model author (anyone who may create a BaseModel)
chooses ``spec.storage.parameters.endpoint``; an endpoint outside the list fails the model
before any request. The s3, gs, az and github backends call ``allowed`` again with their own
configured endpoint in ``Policy.endpoints``, and send no node credential where it says no.

Host entries: ``host`` (any port), ``host:port`` (that port only) or ``*.domain`` (any
subdomain, any port). Configured endpoints match on host and port. Names compare
case-insensitively; a trailing dot is ignored.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from model_agent import errors

__all__ = ["FLAG", "Policy", "allowed", "check_endpoint", "parse_hosts"]

#: The flag that extends the list (named in every refusal).
FLAG = "--credential-hosts"

_HOST_RE = re.compile(
    r"^(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$"
)
#: OCI's own Object Storage service hosts (what the SDK picks for a region).
_OCI_SERVICE_RE = re.compile(
    r"^(objectstorage\.[a-z0-9-]+\.(oraclecloud|oraclegovcloud|oraclecloud\d+)\.com"
    r"|[a-z0-9-]+\.objectstorage\.[a-z0-9-]+\.oci\.customer-oci\.com)$"
)


def _normal(host: str) -> str:
    return host.strip().lower().rstrip(".")


def parse_hosts(text: str) -> tuple[str, ...]:
    """The ``--credential-hosts`` value (comma-separated) as normalised entries; a
    ``ValueError`` names the first entry that is not a host, ``host:port`` or ``*.domain``."""
    found = []
    for raw in text.split(","):
        entry = _normal(raw)
        if not entry:
            continue
        if "://" in entry or "/" in entry or not _HOST_RE.match(entry):
            raise ValueError(f"{raw.strip()!r} is not a host, host:port or *.domain")
        found.append(entry)
    return tuple(found)


def _netloc(url: str) -> tuple[str, str] | None:
    """(host, host:port with the scheme's default port filled in), or None when unusable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = _normal(parts.hostname)
    if ":" in host:
        host = f"[{host}]"
    port = port or (443 if parts.scheme == "https" else 80)
    return host, f"{host}:{port}"


@dataclasses.dataclass(frozen=True)
class Policy:
    """Where credentials may go: ``endpoints`` are URLs the agent was configured with (host
    and port must match), ``hosts`` the admin's extra entries (see the module docstring)."""

    endpoints: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    oci_services: bool = True


def allowed(url: str, policy: Policy) -> bool:
    """Whether a request to ``url`` may carry a credential under ``policy``."""
    target = _netloc(url)
    if target is None:
        return False
    host, hostport = target
    for endpoint in policy.endpoints:
        configured = _netloc(endpoint)
        if configured is not None and configured[1] == hostport:
            return True
    if policy.oci_services and _OCI_SERVICE_RE.match(host):
        return True
    for entry in policy.hosts:
        name, port = _split(entry)
        if port is not None and hostport != f"{host}:{port}":
            continue
        if host == name or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


def _split(entry: str) -> tuple[str, str | None]:
    """``host[:port]`` (``[v6]:port`` too) as (host, port or None)."""
    head, sep, tail = entry.rpartition(":")
    if sep and tail.isdigit() and (not head.startswith("[") or head.endswith("]")):
        if "[" in head or ":" not in head:
            return head, tail
    return entry, None


def check_endpoint(
    url: str, policy: Policy, *, field: str = "spec.storage.parameters.endpoint"
) -> None:
    """``EndpointNotAllowedError`` naming ``field`` and the flag unless ``allowed``."""
    if not allowed(url, policy):
        raise errors.EndpointNotAllowedError(
            f"{field} {url!r} is not an endpoint the agent may send credentials to: it is "
            f"neither a configured endpoint (HF_ENDPOINT, OCI_OBJECT_STORAGE_ENDPOINT, the OCI "
            f"region service) nor on the admin's list {FLAG} (MODEL_AGENT_CREDENTIAL_HOSTS)"
        )


def hosts_of(urls: Iterable[str]) -> tuple[str, ...]:
    """The ``host:port`` of each usable URL (for logs and docs)."""
    return tuple(n[1] for n in map(_netloc, urls) if n is not None)
