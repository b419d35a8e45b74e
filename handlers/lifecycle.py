"""Operator start-up and clean-up: Kopf tuned for event-only work, the agent built into memo,
the health/metrics server started; on clean-up everything is stopped within seconds."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from model_agent import errors, runtime
from model_agent import settings as settings_module

logger = logging.getLogger("model_agent.handlers")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Event-only, standalone: no Kopf events (the agent posts its own), no peering, watches that
    reopen every resync period (so a silently dead stream is noticed)."""
    config = memo.get("settings") or settings_module.resolve({}, os.environ)
    config.require_node_name()
    memo["settings"] = config
    settings.posting.enabled = False  # our EventRecorder posts model events (kube/events.py)
    settings.peering.standalone = True
    settings.watching.server_timeout = int(config.model_watch_resync_period)
    settings.watching.client_timeout = int(config.model_watch_resync_period) + 30
    settings.persistence.finalizer = "model-agent.ome.io/unused"


@kopf.on.startup()
async def start_agent(memo: kopf.Memo, **_: Any) -> None:
    """Start the agent and its health/metrics server; keep them in memo for the other handlers."""
    try:
        memo["runtime"] = running = await runtime.start(memo["settings"])
    except errors.AgentError as exc:
        if exc.retryable:
            raise kopf.TemporaryError(f"agent start failed: {exc}", delay=5) from exc
        raise kopf.PermanentError(f"agent cannot start: {exc}") from exc
    memo["agent"], memo["health_checks"] = running.agent, running.checks


@kopf.on.cleanup()
async def stop_agent(memo: kopf.Memo, **_: Any) -> None:
    """Cancel downloads (partial files stay for resume), stop serving, close the client."""
    if memo.get("runtime") is not None:
        await memo["runtime"].stop()
