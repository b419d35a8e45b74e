"""Operator start-up and clean-up: Kopf tuned for event-only work, the agent built into memo,
the health/metrics server started; on clean-up everything is stopped within seconds."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from model_agent import agent as agent_module
from model_agent import errors, health, http, metrics
from model_agent import settings as settings_module
from model_agent.kube import client as kube_client

logger = logging.getLogger("model_agent.handlers")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Event-only, standalone: Kopf's own events only at WARNING, no peering, watches that
    reopen every resync period (so a silently dead stream is noticed)."""
    config = memo.get("settings") or settings_module.resolve({}, os.environ)
    config.require_node_name()
    memo["settings"] = config
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
    settings.watching.server_timeout = int(config.model_watch_resync_period)
    settings.watching.client_timeout = int(config.model_watch_resync_period) + 30
    settings.persistence.finalizer = "model-agent.ome.io/unused"


@kopf.on.startup()
async def start_agent(memo: kopf.Memo, **_: Any) -> None:
    """Build the agent (API client, metrics) into memo, start it and the HTTP server."""
    config: settings_module.Settings = memo["settings"]
    api = await kube_client.make_api_client()
    recorder = metrics.Metrics()
    agent = agent_module.Agent(config=config, api=api, recorder=recorder)
    memo["api"], memo["metrics"] = api, recorder
    try:
        await agent.start()
    except errors.AgentError as exc:
        await agent.stop()
        await api.close()
        if exc.retryable:
            raise kopf.TemporaryError(f"agent start failed: {exc}", delay=5) from exc
        raise kopf.PermanentError(f"agent cannot start: {exc}") from exc
    memo["agent"] = agent
    loop = health.LoopLagMonitor(on_sample=recorder.loop_lag_observed)
    loop.start()
    memo["loop_monitor"] = loop
    memo["health_checks"] = checks = _checks(config, agent, loop)
    server = http.HealthServer(
        port=config.port,
        metrics_port=config.metrics_port,
        registry=recorder.registry,
        checks=checks,
    )
    await server.start()
    memo["http"] = server


@kopf.on.cleanup()
async def stop_agent(memo: kopf.Memo, **_: Any) -> None:
    """Cancel downloads (partial files stay for resume), stop serving, close the client."""
    for key in ("agent", "http", "loop_monitor"):
        if memo.get(key) is not None:
            await memo[key].stop()
    if memo.get("api") is not None:
        await memo["api"].close()


def _checks(
    config: settings_module.Settings,
    agent: agent_module.Agent,
    loop: health.LoopLagMonitor,
) -> health.HealthChecks:
    async def watching() -> tuple[bool, str]:
        state = agent.health()
        ok = bool(state["started"] and state["healthy"])
        return ok, "node watch open" if ok else f"agent not ready: {state['reason']}"

    return health.agent_checks(
        models_root=config.models_root_dir,
        temp_dir=config.temp_dir,
        loop=loop,
        workers=health.workers_alive(agent.background_tasks),
        api=health.reachable("kubernetes API", agent.nodes.get),
        watches=watching,
    )
