"""The peer server: this node's model files, read-only, to agents that carry the peer token.

``GET /peer/v1/models/<key>`` answers what this node holds of a model (JSON, see
``protocol.Holding``); ``GET /peer/v1/models/<key>/files/<path>`` answers one held byte range
with 206 (sendfile through aiohttp's ``FileResponse``). Without the token: 401, before any
lookup. A file request must name the revision and the identity the origin gave the file; a
different one is 409, an unknown model or file 404, a range not (yet) held 416. Paths are only
looked up in the model's own plan or manifest (``holdings.Registry``), never joined from the
request. Optional TLS. Every answer is counted in ``model_agent_peer_requests_total``.

Owns serving; must not decide what to download.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from model_agent import metrics
from model_agent.peers import holdings, protocol

__all__ = ["PeerServer"]

log = logging.getLogger("model_agent.peers")

_RESULTS = {401: "unauthorized", 404: "not_found", 409: "conflict", 416: "unsatisfiable"}


class PeerServer:
    """Serves ``registry`` on ``host:port``; ``async with`` starts and stops it."""

    def __init__(
        self,
        registry: holdings.Registry,
        *,
        host: str,
        port: int,
        token: str,
        recorder: metrics.Metrics | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.registry = registry
        self._host, self._port, self._token = host, port, token
        self._metrics = recorder
        self._tls = tls
        self._runner: web.AppRunner | None = None
        self.port = port

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_get(protocol.PREFIX + "{key}", self._holding)
        app.router.add_get(protocol.PREFIX + "{key}/files/{path:.+}", self._file)
        return app

    async def __aenter__(self) -> PeerServer:
        # Transfers in flight at shutdown get a second: the fetching peer retries elsewhere.
        self._runner = web.AppRunner(
            self._app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._tls)
        await site.start()
        for address in self._runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break
        log.info("peer server listening on %s:%d", self._host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _count(self, result: str, nbytes: int = 0) -> None:
        if self._metrics is not None:
            self._metrics.peer_served(result, nbytes)

    @web.middleware
    async def _authenticate(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if not protocol.authorized(request.headers.get("Authorization"), self._token):
            self._count("unauthorized")
            log.warning(
                "peer request without the peer token from %s refused", request.remote or "?"
            )
            return web.Response(
                status=401, text="peer token required\n", headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)

    def _refuse(self, status: int, reason: str) -> web.Response:
        self._count(_RESULTS.get(status, "not_found"))
        return web.Response(status=status, text=f"{reason}\n")

    async def _holding(self, request: web.Request) -> web.StreamResponse:
        found = await self.registry.holding(request.match_info["key"])
        if found is None:
            return self._refuse(404, "model not held here")
        self._count("ok")
        return web.json_response(found.to_json())

    async def _file(self, request: web.Request) -> web.StreamResponse:
        revision = request.headers.get(protocol.REVISION_HEADER, "")
        identity = request.headers.get(protocol.IDENTITY_HEADER, "")
        if not revision or not identity:
            return self._refuse(409, "revision and identity headers required")
        found = await self.registry.locate(
            request.match_info["key"],
            request.match_info["path"],
            revision=revision,
            identity=identity,
        )
        if isinstance(found, holdings.Refusal):
            return self._refuse(found.status, found.reason)
        span = protocol.parse_range(request.headers.get("Range"), found.size)
        if span == "invalid":
            return self._refuse(416, "one closed byte range within the file required")
        start, end = span
        held = any(s <= start and end <= e for s, e in found.ranges)
        if not held:
            return self._refuse(416, "range not held here (yet)")
        self._count("ok", end - start)
        return web.FileResponse(
            found.path,
            headers={protocol.IDENTITY_HEADER: found.identity, "Cache-Control": "no-store"},
        )
