"""How the engine reaches storage: the one place that makes HTTP sessions and TLS contexts.

``new_session`` builds the pooled ``aiohttp`` session one transfer thread uses (each thread's
event loop has its own): keep-alive pool, no decompression, the TLS trust store of the egress
policy (``egress.clients.ssl_context``), never aiohttp's own reading of the environment. The
proxy of each request comes from the same policy (``egress.clients.data_route``, asked by
``transfer`` before every request, redirects included).

Owns session and connector construction; must not send requests.
"""

from __future__ import annotations

import dataclasses

import aiohttp

from model_agent.egress import clients, policy

__all__ = ["SessionOptions", "new_session"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SessionOptions:
    """``connections``: the pool size of one session; ``read_buffer``: aiohttp's read size."""

    connections: int
    read_buffer: int = 256 * 1024
    egress: policy.Egress = dataclasses.field(default_factory=policy.Egress)


def new_session(options: SessionOptions) -> aiohttp.ClientSession:
    """One pooled session (call it inside the event loop that will use it): kept-alive
    connections, no decompression, CAs from the egress policy."""
    connector = aiohttp.TCPConnector(
        limit=options.connections,
        limit_per_host=0,
        ttl_dns_cache=300,
        ssl=clients.ssl_context(options.egress.ca),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        auto_decompress=False,
        read_bufsize=options.read_buffer,
        max_field_size=16 * 1024,
        headers={"Accept-Encoding": "identity", "User-Agent": "model-agent"},
    )
