"""The running operator process: Kubernetes client, metrics, the Agent, the loop-lag monitor and
the health/metrics HTTP server, started together and stopped in reverse order.

Owns the wiring only; Kopf stays in handlers/, which keep a ``Runtime`` in memo.
"""

from __future__ import annotations

import dataclasses
import logging

from kubernetes_asyncio import client

from model_agent import agent as agent_module
from model_agent import errors, health, http, metrics, settings
from model_agent.kube import client as kube_client

__all__ = ["Runtime", "start"]

log = logging.getLogger("model_agent.runtime")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Runtime:
    """Everything ``model-agent run`` keeps alive between start-up and clean-up."""

    config: settings.Settings
    api: client.ApiClient
    metrics: metrics.Metrics
    agent: agent_module.Agent
    loop_monitor: health.LoopLagMonitor
    checks: health.HealthChecks
    server: http.HealthServer

    async def stop(self) -> None:
        """Cancel downloads (partial files stay for resume), stop serving, close the client."""
        try:
            await self.agent.stop()
        finally:
            await self.server.stop()
            await self.loop_monitor.stop()
            await self.api.close()


async def start(config: settings.Settings) -> Runtime:
    """Serve /healthz, /readyz, /livez and /metrics on ``--port`` (not ready until the agent
    has started), then start the agent. Raises ``errors.AgentError`` (retryable or not) when
    either cannot start; a port in use is a ``ConfigError`` naming the flag."""
    api = await kube_client.make_api_client()
    recorder = metrics.Metrics()
    agent = agent_module.Agent(config=config, api=api, recorder=recorder)
    for path in filter(None, (config.models_root_dir, config.temp_dir)):
        recorder.watch_filesystem(path)
    loop_monitor = health.LoopLagMonitor(on_sample=recorder.loop_lag_observed)
    checks = _checks(config, agent, loop_monitor)
    server = http.HealthServer(
        port=config.port,
        metrics_port=config.metrics_port,
        registry=recorder.registry,
        checks=checks,
    )
    try:
        await _serve(server, config)
        loop_monitor.start()
        await agent.start()
    except BaseException:
        await agent.stop()
        await server.stop()
        await loop_monitor.stop()
        await api.close()
        raise
    log.info("agent started on node %s", agent.node_name, extra={"node": agent.node_name})
    return Runtime(
        config=config,
        api=api,
        metrics=recorder,
        agent=agent,
        loop_monitor=loop_monitor,
        checks=checks,
        server=server,
    )


async def _serve(server: http.HealthServer, config: settings.Settings) -> None:
    try:
        await server.start()
    except OSError as exc:
        ports = f"--port {config.port}"
        if config.metrics_port != config.port:
            ports += f" / --metrics-port {config.metrics_port}"
        raise errors.ConfigError(
            f"cannot serve health and metrics on {ports}: {exc.strerror or exc}"
        ) from exc


def _checks(
    config: settings.Settings, agent: agent_module.Agent, loop: health.LoopLagMonitor
) -> health.HealthChecks:
    async def watching() -> tuple[bool, str]:
        """Ready from the node watch's state in memory: a probe costs no API request."""
        state = agent.health()
        if not state["started"]:
            return False, "agent not started"
        if not state["healthy"]:
            return False, f"agent not ready: {state['reason']}"
        if state["watch_open"]:
            return True, "node watch open"
        closed = f"node watch reconnecting for {state['watch_closed_for']:g}s"
        return bool(state["watch_ready"]), closed

    return health.agent_checks(
        models_root=config.models_root_dir,
        temp_dir=config.temp_dir,
        loop=loop,
        workers=health.workers_alive(agent.background_tasks),
        watches=watching,
    )
