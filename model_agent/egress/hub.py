"""The egress policy for huggingface_hub: its one process-wide HTTP client, rebuilt to route
every request by the agent's metadata policy and to trust the agent's CA bundle.

huggingface_hub (1.x and later) shares one httpx client, made by a factory it lets callers
replace (``set_client_factory``). Left alone it reads the proxy variables with httpx's own
``NO_PROXY`` rules; ``install`` makes it use ``egress.proxies`` instead (a transport per proxy,
chosen per request URL, redirects included), with the hub's own request hook kept. Installing
the same policy again is free; a different policy replaces the client.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any

from model_agent import errors
from model_agent.egress import clients, policy

__all__ = ["install"]

_lock = threading.Lock()
_installed: policy.Egress | None = None


def _modules() -> tuple[ModuleType, ModuleType]:
    hf_http = importlib.import_module("huggingface_hub.utils._http")
    for name in ("httpx2", "httpx"):
        library = getattr(hf_http, name, None)
        if isinstance(library, ModuleType):
            return hf_http, library
    raise errors.ConfigError(
        "this huggingface_hub has no replaceable httpx client (huggingface_hub>=1.0 is needed)"
    )


def _factory(egress: policy.Egress) -> Any:
    hf_http, httpx = _modules()
    verify = clients.ssl_context(egress.ca)

    class Routing(httpx.BaseTransport):  # type: ignore[misc,name-defined]
        """Picks the transport of the proxy the policy names for each request's URL."""

        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._transports: dict[str | None, Any] = {}

        def _for(self, proxy: str | None) -> Any:
            with self._lock:
                transport = self._transports.get(proxy)
                if transport is None:
                    transport = httpx.HTTPTransport(proxy=proxy, verify=verify, trust_env=False)
                    self._transports[proxy] = transport
                return transport

        def handle_request(self, request: Any) -> Any:
            return self._for(egress.metadata_proxy(str(request.url))).handle_request(request)

        def close(self) -> None:
            with self._lock:
                transports, self._transports = list(self._transports.values()), {}
            for transport in transports:
                transport.close()

    hooks = [h for h in (getattr(hf_http, "hf_request_event_hook", None),) if h is not None]

    def make() -> Any:
        return httpx.Client(
            transport=Routing(),
            trust_env=False,
            event_hooks={"request": hooks},
            follow_redirects=True,
            timeout=None,
        )

    return make


def install(egress: policy.Egress) -> None:
    """Make huggingface_hub's client follow ``egress`` (idempotent; thread-safe)."""
    global _installed
    with _lock:
        if _installed == egress:
            return
        factory = _factory(egress)
        importlib.import_module("huggingface_hub").set_client_factory(factory)
        _installed = egress
