"""Operator start-up and clean-up: settings into memo, Kopf tuned for event-only work."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from model_agent import settings as settings_module


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Event-only, standalone: no posting of Kopf's own events below WARNING, no peering,
    watches that reopen every resync period (so a silently dead stream is noticed)."""
    config = memo.get("settings") or settings_module.resolve({}, os.environ)
    config.require_node_name()
    memo["settings"] = config
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
    settings.watching.server_timeout = int(config.model_watch_resync_period)
    settings.watching.client_timeout = int(config.model_watch_resync_period) + 30
    settings.persistence.finalizer = "model-agent.ome.io/unused"
