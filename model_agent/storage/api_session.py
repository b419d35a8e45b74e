"""The HTTP session the REST-API backends (GCS, Azure, GitHub) list and pin with: one place
for its timeouts and its user agent. It never reads proxy variables from the environment;
each request names its proxy and SSL context from the egress policy (``egress.clients``)."""

from __future__ import annotations

import aiohttp

__all__ = ["TIMEOUT", "new_session"]

TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)


def new_session() -> aiohttp.ClientSession:
    """A session for API calls (listing, metadata); data transfers use the engine's own."""
    return aiohttp.ClientSession(
        timeout=TIMEOUT, headers={"User-Agent": "model-agent"}, trust_env=False
    )
