"""Kopf liveness probes (``@kopf.on.probe``): worker health reported at the liveness endpoint.

Kopf's liveness endpoint (``--liveness-endpoint``, the DaemonSet's livenessProbe) answers 200
with the JSON of every probe handler, or 500 when one fails. Two probes:

- ``agent``: ``memo["agent"].health()`` (queue depth, active workers, last success, ...),
  made JSON-safe. A dict with ``"healthy": False`` fails the probe, naming ``"reason"``.
  While the agent is not built yet (start-up), the probe reports ``{"agent": "starting"}``.
- ``livez``: when ``memo["health_checks"]`` holds the agent's ``health.HealthChecks``, its
  ``livez`` check (event-loop lag, workers alive) runs too, so Kopf's endpoint and ``/livez``
  agree.

A failing probe raises ``kopf.PermanentError`` so Kopf does not retry it inside the request.
"""

from __future__ import annotations

import datetime
import inspect
import logging
from collections.abc import Mapping
from typing import Any

import kopf

logger = logging.getLogger("model_agent.handlers.probes")

#: memo key under which the agent's ``health.HealthChecks`` may be stored.
HEALTH_CHECKS_KEY = "health_checks"


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return str(value)


@kopf.on.probe(id="agent")
async def agent_health(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """The agent's own view: queue depth, active workers, last success."""
    agent = memo.get("agent")
    if agent is None:
        return {"agent": "starting"}
    report = agent.health()
    if inspect.isawaitable(report):
        report = await report
    safe = _json_safe(report if isinstance(report, Mapping) else {"health": report})
    if safe.get("healthy") is False:
        reason = safe.get("reason") or "agent reports unhealthy"
        raise kopf.PermanentError(f"agent unhealthy: {reason}")
    return dict(safe)


@kopf.on.probe(id="livez")
async def livez(memo: kopf.Memo, **_: Any) -> str:
    """The same verdict as ``/livez`` (event loop responsive, workers alive)."""
    checks = memo.get(HEALTH_CHECKS_KEY)
    if checks is None:
        return "not wired"
    ok, detail = await checks.livez()
    if not ok:
        raise kopf.PermanentError(f"livez failing: {detail}")
    return str(detail)
