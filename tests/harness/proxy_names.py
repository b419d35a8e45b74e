"""A proxy.py plugin that resolves the test's host names (``NAMES``) for the proxy only.

An origin reached by one of these names can be reached through the proxy and nowhere else: the
client cannot resolve the name, so a request that went around the proxy would fail. That is
how the egress tests prove that every request went through the proxy.
"""

from __future__ import annotations

from proxy.http.proxy import HttpProxyBasePlugin

#: Names only the test proxy resolves, and their addresses (the local hub and its CDN).
NAMES = {"hub.egress.test": "127.0.0.1", "cdn.egress.test": "127.0.0.2"}


class ResolveTestNames(HttpProxyBasePlugin):  # type: ignore[misc]
    def resolve_dns(self, host: str, port: int) -> tuple[str | None, None]:
        return NAMES.get(host.lower()), None
