"""Event handlers for BaseModel and ClusterBaseModel: thin, they only hand work to the agent."""

from __future__ import annotations

import logging
from typing import Any

import kopf

logger = logging.getLogger("model_agent.handlers")


@kopf.on.event("ome.io", "v1beta1", "basemodels")
async def basemodel_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    logger.debug("basemodel event %s %s/%s", type, body.metadata.namespace, body.metadata.name)


@kopf.on.event("ome.io", "v1beta1", "clusterbasemodels")
async def clusterbasemodel_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    logger.debug("clusterbasemodel event %s %s", type, body.metadata.name)
