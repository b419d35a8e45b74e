"""A fault-injecting reverse proxy in front of a real emulator (moto, gcp-storage-emulator).

``FaultProxy`` forwards every request to ``upstream`` unchanged and applies the ``faults`` knobs
on the way back: injected failures (each store's error body, ``Retry-After``), bytes flipped
under truthful headers, a Range ignored (the header is dropped, so the emulator answers 200
with the whole body), bodies cut short, a shared throttle. Subclasses say which object a
request is about and whether it carries file bytes (``classify``), and shape error bodies
(``error_body``); the request log records both (``file``, ``kind``).
"""

from __future__ import annotations

import aiohttp
import yarl
from aiohttp import web

from tests.harness import faults

__all__ = ["FaultProxy"]

_FLIP = bytes(b ^ 0xFF for b in range(256))
_HOP = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade"}
)


class FaultProxy(faults.ServerBase):
    """A reverse proxy to ``upstream`` with the ``faults`` knobs."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.endpoint = ""
        self._session: aiohttp.ClientSession | None = None

    def _apps(self) -> list[tuple[web.Application, str]]:
        app = web.Application(middlewares=[faults.log_middleware(self.log)])
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_cleanup.append(self._close)
        return [(app, "127.0.0.1")]

    def _bound(self, ports: list[tuple[str, int]]) -> None:
        host, port = ports[0]
        self.endpoint = f"http://{host}:{port}"

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = request[faults.RECORD]
        record.file, record.kind = self.classify(request)
        names = [record.file] if record.file else []
        plan = self.faults.plan(names, record.kind, has_range="Range" in request.headers)
        if plan.fail_status is not None:
            return self._error(request, plan)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        if plan.ignore_range:
            headers.pop("Range", None)
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        answer = await self.intercept(request, self._session, headers)
        if answer is not None:
            record.status = answer.status
            return answer
        url = yarl.URL(self.upstream + request.raw_path, encoded=True)
        body = await request.read()
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            return await self._relay(request, upstream, plan, record)

    def classify(self, request: web.Request) -> tuple[str | None, str]:
        """(the object name, the request kind: "data", "meta" or "api")."""
        raise NotImplementedError

    def error_body(self, status: int) -> tuple[str, str]:
        """(content type, body) of an injected failure."""
        return "text/plain", f"injected failure {status}"

    async def intercept(
        self, request: web.Request, session: aiohttp.ClientSession, headers: dict[str, str]
    ) -> web.StreamResponse | None:
        """Answer a request here instead of forwarding it (None: forward)."""
        return None

    def _error(self, request: web.Request, plan: faults.Plan) -> web.Response:
        status = plan.fail_status or 500
        content_type, body = self.error_body(status)
        headers = {**faults.error_headers(plan), "Content-Type": content_type}
        return web.Response(
            status=status, headers=headers, text=None if request.method == "HEAD" else body
        )

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        plan: faults.Plan,
        record: faults.RequestRecord,
    ) -> web.StreamResponse:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        response = web.StreamResponse(status=upstream.status, headers=headers)
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        record.status = upstream.status
        await response.prepare(request)
        if request.method == "HEAD":
            record.completed = True
            return response
        sent = 0
        limit = plan.cut_after
        while True:
            chunk = await upstream.content.read(self.faults.chunk_size())
            if not chunk:
                break
            if limit is not None:
                chunk = chunk[: max(0, limit - sent)]
                if not chunk:
                    break
            if plan.corrupt and record.kind == "data" and upstream.status < 300:
                chunk = chunk.translate(_FLIP)
            await self.faults.pace(len(chunk))
            sent += len(chunk)
            record.bytes_sent = sent
            await response.write(chunk)
        if limit is not None and request.transport is not None:
            request.transport.close()
            return response
        record.completed = True
        await response.write_eof()
        return response
