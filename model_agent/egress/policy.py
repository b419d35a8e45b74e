"""The agent's one egress policy: proxies for metadata and data requests, and the trust store.

Built once from settings (``from_settings``) and handed to every client: the data path's
aiohttp session, huggingface_hub's client and the oci SDK session. The data path may have its
own proxy (``--data-proxy``, ``direct`` for none) and its own exceptions (``--data-no-proxy``);
metadata always follows the environment.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from model_agent.egress import proxies, trust

__all__ = ["DIRECT", "Egress", "build", "describe"]

#: ``--data-proxy`` value that sends data requests directly, whatever the environment says.
DIRECT = "direct"


@dataclasses.dataclass(frozen=True)
class Egress:
    """Proxies for metadata (``metadata``) and for the data path (``data``); the CAs (``ca``)."""

    metadata: proxies.ProxyConfig = dataclasses.field(default_factory=proxies.ProxyConfig)
    data: proxies.ProxyConfig = dataclasses.field(default_factory=proxies.ProxyConfig)
    ca: trust.Trust = dataclasses.field(default_factory=trust.Trust)

    def metadata_proxy(self, url: str) -> str | None:
        return proxies.proxy_for(url, self.metadata)

    def data_proxy(self, url: str) -> str | None:
        return proxies.proxy_for(url, self.data)


def build(
    environ: Mapping[str, str],
    *,
    data_proxy: str | None = None,
    data_no_proxy: str | None = None,
    ca_bundle: str | None = None,
) -> Egress:
    """The policy of an environment plus the flags. Raises ``ConfigError`` naming the variable
    or flag of a bad proxy URL."""
    metadata = proxies.from_environ(environ)
    data = metadata
    if data_proxy is not None and data_proxy.strip():
        value = data_proxy.strip()
        if value.lower() == DIRECT:
            data = dataclasses.replace(data, http=None, https=None)
        else:
            url = proxies.parse_proxy_url(value, source="--data-proxy")
            data = dataclasses.replace(data, http=url, https=url)
    if data_no_proxy is not None:
        rules, bypass_all = proxies.parse_no_proxy(data_no_proxy)
        data = dataclasses.replace(data, no_proxy=rules, bypass_all=bypass_all)
    return Egress(metadata=metadata, data=data, ca=trust.resolve(ca_bundle, environ))


def _proxies(config: proxies.ProxyConfig) -> str:
    if config.bypass_all or not config.enabled:
        return "direct"
    parts = [
        f"{scheme} via {proxies.redact(url)}"
        for scheme, url in (("https", config.https), ("http", config.http))
        if url
    ]
    if config.no_proxy:
        parts.append(f"{len(config.no_proxy)} NO_PROXY entries")
    return ", ".join(parts)


def describe(egress: Egress) -> str:
    """One log line for the policy: proxies (credentials redacted) and the CA bundle's source."""
    text = f"egress: metadata {_proxies(egress.metadata)}"
    if egress.data != egress.metadata:
        text += f"; data {_proxies(egress.data)}"
    if egress.ca.configured:
        text += f"; CA bundle {egress.ca.cafile or egress.ca.capath} (from {egress.ca.source})"
    return text
