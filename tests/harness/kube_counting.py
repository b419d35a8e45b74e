"""Request accounting for ``FakeKube``: who asked what, by verb, resource and agent.

An aiohttp middleware (``Counter.middleware``) that ``FakeKube`` installs in front of every
handler. Each request is recorded as a ``Hit``: the time, the Kubernetes verb (``get``,
``list``, ``watch``, ``create``, ``update``, ``patch``, ``delete``, ``deletecollection``, or
``discovery`` for the paths that name no resource), the resource (plural, with ``/status``
for a subresource), the namespace, the HTTP status answered and the agent that sent it. The
agent is the name behind the request's bearer token, as a real API server tells clients apart
by their credentials: ``FakeKube.add_agent(name)`` accepts a token for ``name`` and returns
the path of a kubeconfig that carries it, one per agent process.

Also answers the questions the API-budget tests and the multi-agent benchmark ask:
``verbs_seen`` (least privilege: which RBAC verbs were exercised), ``count`` with filters,
``per_agent`` and ``since`` (a window of time).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from tests.harness import kube_http
from tests.harness.kube_resources import Catalog

__all__ = ["WRITE_VERBS", "Counter", "Hit"]

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class Hit:
    """One request, counted when it arrives (``at``: ``time.monotonic()``); ``status`` is 0
    until it is answered (a watch: until its stream ends)."""

    at: float
    verb: str
    resource: str
    namespace: str | None
    agent: str | None
    status: int = 0
    ended: float | None = None

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS

    @property
    def is_open(self) -> bool:
        return self.ended is None


class Counter:
    """Counts requests; thread-safe (the fake serves on its own thread, tests read here)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._lock = threading.Lock()
        self.hits: list[Hit] = []
        #: bearer token -> agent name
        self.agents: dict[str, str] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        verb, resource, namespace = self._classify(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        hit = Hit(time.monotonic(), verb, resource, namespace, self.agents.get(token))
        with self._lock:
            self.hits.append(hit)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            hit.status, hit.ended = status, time.monotonic()

    def _classify(self, request: web.Request) -> tuple[str, str, str | None]:
        try:
            target = kube_http.parse_path(self._catalog, request.path)
        except Exception:  # a 404 path: the handler answers it
            return "unknown", request.path, None
        if target is None:
            return "discovery", request.path, None
        verb = kube_http.verb_of(request.method, target, dict(request.query))
        resource = target.resource.plural
        if target.subresource:
            resource += f"/{target.subresource}"
        return verb, resource, target.namespace

    # --- questions -----------------------------------------------------------------------

    def snapshot(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def select(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        agents: Iterable[str] | None = None,
        verbs: Iterable[str] | None = None,
        resource: str | None = None,
    ) -> list[Hit]:
        wanted_agents = None if agents is None else set(agents)
        wanted_verbs = None if verbs is None else set(verbs)
        return [
            h
            for h in self.snapshot()
            if (since is None or h.at >= since)
            and (until is None or h.at < until)
            and (wanted_agents is None or h.agent in wanted_agents)
            and (wanted_verbs is None or h.verb in wanted_verbs)
            and (resource is None or h.resource == resource)
        ]

    def open_watches(self) -> dict[str | None, dict[str, int]]:
        """Watch streams open now, per agent and resource."""
        held: dict[str | None, dict[str, int]] = {}
        for h in self.snapshot():
            if h.verb == "watch" and h.is_open:
                per = held.setdefault(h.agent, {})
                per[h.resource] = per.get(h.resource, 0) + 1
        return held

    def per_agent(self, hits: Iterable[Hit]) -> dict[str | None, int]:
        return dict(collections.Counter(h.agent for h in hits))

    def by_verb_and_resource(self, hits: Iterable[Hit]) -> dict[tuple[str, str], int]:
        return dict(collections.Counter((h.verb, h.resource) for h in hits))

    def verbs_seen(self, *, agents: Iterable[str] | None = None) -> set[tuple[str, str]]:
        """(resource, verb) pairs of the resource requests sent, whatever the answer (a GET
        answered 404 still needed the permission: without it the answer is 403); discovery,
        which every authenticated client may read, is left out."""
        return {
            (h.resource.split("/")[0], h.verb)
            for h in self.select(agents=agents)
            if h.verb not in ("discovery", "unknown")
        }
