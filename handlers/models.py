"""Event handlers for BaseModel and ClusterBaseModel: thin, they only hand work to the agent.

Event-only (``@kopf.on.event``): no finalizers, no annotations, no status writes. Kopf sends
``type=None`` for objects found by the initial listing; ``DELETED`` when an object is gone.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

logger = logging.getLogger("model_agent.handlers")


def _submit(memo: kopf.Memo, kind: str, event_type: str | None, body: kopf.Body) -> None:
    agent = memo.get("agent")
    if agent is None:  # not started yet: the agent's start-up listing covers this object
        return
    agent.submit(event_type, {**dict(body), "kind": kind})


@kopf.on.event("ome.io", "v1beta1", "basemodels")
async def basemodel_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _submit(memo, "BaseModel", type, body)


@kopf.on.event("ome.io", "v1beta1", "clusterbasemodels")
async def clusterbasemodel_event(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    _submit(memo, "ClusterBaseModel", type, body)
