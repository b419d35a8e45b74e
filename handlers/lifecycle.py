"""Operator start-up and clean-up: Kopf tuned for event-only work and a small request budget,
the agent built into memo, the health/metrics server started; on clean-up everything is
stopped within seconds."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import kopf
from kopf._cogs.configs import configuration as kopf_configuration  # not exported by kopf

from model_agent import errors, pacing, runtime
from model_agent import settings as settings_module

logger = logging.getLogger("model_agent.handlers")


class JitteredWatching(kopf_configuration.WatchingSettings):
    """Kopf's watch settings with a ``reconnect_backoff`` drawn afresh (``pacing.spread``)
    each time Kopf reads it. Kopf sleeps that long before every relist (after a 410 Gone or
    a failed list), so a thousand agents that lose their watches together relist spread
    over ``window`` seconds instead of in the same second."""

    window: float = 30.0

    @property
    def reconnect_backoff(self) -> float:
        return 0.1 + pacing.spread(self.window)

    @reconnect_backoff.setter
    def reconnect_backoff(self, value: float) -> None:
        """Kopf's constructor sets its fixed default; the window decides instead."""


def tune(settings: kopf.OperatorSettings, config: settings_module.Settings) -> None:
    """Event-only, standalone, and frugal with the API server (DESIGN.md decision 17): no
    Kopf events (the agent posts its own), no peering, no CRD or namespace scanning (the two
    model kinds are found once at start-up), watches that end every resync period and
    resume from their resourceVersion, relists spread over ``--relist-window``, and failed
    requests retried with jittered exponential backoff."""
    settings.posting.enabled = False  # our EventRecorder posts model events (kube/events.py)
    settings.peering.standalone = True
    settings.scanning.disabled = True
    watching = JitteredWatching(
        **{
            f.name: getattr(settings.watching, f.name)
            for f in dataclasses.fields(settings.watching)
        }
    )
    watching.window = config.relist_window
    watching.server_timeout = int(config.model_watch_resync_period)
    watching.client_timeout = int(config.model_watch_resync_period) + 30
    settings.watching = watching
    settings.networking.error_backoffs = pacing.Backoffs(
        base=1.0, cap=max(1.0, config.relist_window), count=8
    )
    settings.persistence.finalizer = "model-agent.ome.io/unused"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Read the agent's settings and tune Kopf with them (see ``tune``)."""
    config = memo.get("settings") or settings_module.resolve({}, os.environ)
    config.require_node_name()
    memo["settings"] = config
    tune(settings, config)


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
