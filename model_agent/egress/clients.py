"""The egress policy applied to the clients' own objects: SSL contexts, per-URL proxies for the
data path, the oci SDK's requests session, and the errors a proxy or a certificate raises.

``data_route(egress, url)`` is the one function a data path asks before each request (the
proxy to use, redirects included: a CDN host may be in ``NO_PROXY`` when the hub is not).
``ssl_context(ca)`` is cached per trust store. HTTPS through a proxy is a CONNECT tunnel: the
proxy sees the host and port, never ``Authorization``; proxy credentials travel only in
``Proxy-Authorization`` to the proxy and are never logged (``proxies.redact``).

Must not decide policy (``egress.policy``) or follow redirects (the engine does).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import ssl
from typing import Any

from model_agent import errors
from model_agent.egress import policy, proxies, trust

__all__ = [
    "CertificateError",
    "DataRoute",
    "configure_requests_session",
    "data_route",
    "proxy_error",
    "ssl_context",
    "transport_error",
]


class CertificateError(errors.PermanentError):
    """A TLS peer's certificate did not verify against the configured trust store."""

    reason = "CertificateError"


@dataclasses.dataclass(frozen=True)
class DataRoute:
    """How one data request leaves: through ``proxy`` (None: directly), verified by ``ssl``."""

    proxy: str | None
    ssl: ssl.SSLContext | bool


@functools.lru_cache(maxsize=8)
def _context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile, capath=capath)


def ssl_context(ca: trust.Trust) -> ssl.SSLContext | bool:
    """An SSL context that trusts ``ca`` (True: the client's default store). Raises
    ``ConfigError`` naming the setting when the bundle cannot be read."""
    if not ca.configured:
        return True
    try:
        return _context(ca.cafile, ca.capath)
    except (OSError, ssl.SSLError) as exc:
        raise errors.ConfigError(
            f"{ca.source}: cannot load the CA bundle {ca.cafile or ca.capath!r}: {exc}"
        ) from None


def data_route(egress: policy.Egress, url: str) -> DataRoute:
    """The proxy and SSL settings of one data-path request to ``url``."""
    return DataRoute(proxy=egress.data_proxy(url), ssl=ssl_context(egress.ca))


def proxy_error(status: int, proxy: str | None, host: str) -> errors.AgentError:
    """The error of a proxy that refused to connect to ``host`` (no credentials in it)."""
    where = proxies.redact(proxy)
    if status == 407:
        return errors.AuthError(
            f"the proxy {where} refused the request to {host} (407 Proxy Authentication "
            "Required): check the user and password in the proxy URL"
        )
    if status in (401, 403):
        return errors.AuthError(f"the proxy {where} does not allow {host} ({status})")
    return errors.NetworkError(f"the proxy {where} failed to reach {host} ({status})")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it wraps (cause, context, ``reason``, exception args)."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending and len(seen) < 32:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [a for a in current.args if isinstance(a, BaseException)]
        pending += [e for e in linked if isinstance(e, BaseException)]
    return seen


_STATUS_RE = re.compile(r"\b([1-5]\d\d)\b")


def transport_error(
    exc: BaseException, *, host: str, proxy: str | None, ca: trust.Trust
) -> errors.AgentError | None:
    """The agent error for a failure of an SDK's HTTP stack that egress explains: a certificate
    that did not verify, or a proxy that refused the request. None for anything else."""
    chain = _chain(exc)
    for error in chain:
        if isinstance(error, ssl.SSLCertVerificationError):
            detail = error.verify_message or str(error)
            return CertificateError(trust.certificate_message(host, detail, ca))
    for error in chain:
        if "proxy" in type(error).__name__.lower():
            match = _STATUS_RE.search(str(error))
            return proxy_error(int(match.group(1)) if match else 0, proxy, host)
    return None


def configure_requests_session(session: Any, egress: policy.Egress, endpoint: str) -> None:
    """Apply the metadata policy to a requests ``Session`` that talks to ``endpoint`` only
    (the oci SDK's client session): its proxy, no environment guessing, the CA bundle."""
    ssl_context(egress.ca)  # a bundle that cannot be read fails here, naming the setting
    proxy = egress.metadata_proxy(endpoint)
    session.trust_env = False
    session.proxies = {"http": proxy, "https": proxy} if proxy else {}
    ca = egress.ca
    if ca.configured:
        session.verify = ca.cafile or ca.capath
