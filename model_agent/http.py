"""The agent's HTTP server: ``/healthz``, ``/readyz``, ``/livez`` and ``/metrics``.

One aiohttp application on ``--port`` answers all four paths; when ``--metrics-port``
differs, a second listener serves ``/metrics`` there too. Checks are injected async callables
(``health.HealthChecks``), so the agent wires API reachability and watch state while this
module knows nothing about Kubernetes. A check that raises or exceeds ``check_timeout``
answers 503 naming its error class; a passing one answers 200. Bodies are plain text:
``ok: <detail>`` or ``failed: <detail>``; ``?verbose`` is accepted and ignored (kubelet style).
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import prometheus_client
import prometheus_client.aiohttp
from aiohttp import typedefs, web

from model_agent import health, logs

__all__ = ["HealthChecks", "HealthServer"]

HealthChecks = health.HealthChecks

logger = logging.getLogger("model_agent.http")


class HealthServer:
    """Serve health and metrics until ``stop()``. Ports may be 0 (tests): ``ports`` tells
    the bound ones after ``start()``."""

    def __init__(
        self,
        *,
        port: int,
        metrics_port: int,
        registry: prometheus_client.CollectorRegistry,
        checks: health.HealthChecks,
        host: str = "0.0.0.0",
        check_timeout: float = 5.0,
    ) -> None:
        self.port = port
        self.metrics_port = metrics_port
        self.registry = registry
        self.checks = checks
        self.host = host
        self.check_timeout = check_timeout
        self._runners: list[web.AppRunner] = []
        self._warn = logs.Throttle(60.0)  # a failing probe logs once a minute, not per probe

    @property
    def ports(self) -> list[int]:
        """Bound ports: ``[port]`` or ``[port, metrics_port]`` (after ``start()``)."""
        bound: list[int] = []
        for runner in self._runners:
            addresses = runner.addresses  # (host, port, ...) of each socket the runner serves
            if addresses:
                bound.append(int(addresses[0][1]))
        return bound

    def _main_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._handler("healthz"))
        app.router.add_get("/readyz", self._handler("readyz"))
        app.router.add_get("/livez", self._handler("livez"))
        app.router.add_get(
            "/metrics", prometheus_client.aiohttp.make_aiohttp_handler(self.registry)
        )
        return app

    def _metrics_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(
            "/metrics", prometheus_client.aiohttp.make_aiohttp_handler(self.registry)
        )
        return app

    def _handler(self, name: str) -> typedefs.Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            ok, detail = await self.run_check(name)
            if ok:
                self._warn.forget(name)
            if not ok and self._warn.ready(name):
                logger.warning("%s failing: %s", name, detail, extra={"probe": name})
            return web.Response(
                status=200 if ok else 503,
                text=f"{'ok' if ok else 'failed'}: {detail}\n",
                headers={"Cache-Control": "no-store"},
            )

        return handle

    async def run_check(self, name: str) -> tuple[bool, str]:
        """Run one named check with the timeout; never raises (except cancellation)."""
        check = cast(health.Check, getattr(self.checks, name))
        try:
            ok, detail = await asyncio.wait_for(check(), self.check_timeout)
        except TimeoutError:
            return False, f"{name} check did not finish within {self.check_timeout:g}s"
        except Exception as exc:
            return False, f"{name} check raised {type(exc).__name__}"
        return bool(ok), str(detail)

    async def start(self) -> None:
        apps = [(self._main_app(), self.port)]
        if self.metrics_port != self.port:
            apps.append((self._metrics_app(), self.metrics_port))
        try:
            for app, port in apps:
                runner = web.AppRunner(
                    app, handle_signals=False, access_log=None, shutdown_timeout=1.0
                )
                await runner.setup()
                self._runners.append(runner)
                await web.TCPSite(runner, self.host, port).start()
        except BaseException:
            await self.stop()
            raise
        logger.info("serving health and metrics", extra={"ports": ",".join(map(str, self.ports))})

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
