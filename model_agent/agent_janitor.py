"""The agent's side of the disk janitor: what this node's models claim on disk (their spec
paths, the agent's records, the path-ownership claims and completion manifests), which are
placed here (for the usage gauge), and the janitor's task, started with the agent when
``--disk-scan-interval`` is on.

A model's partial download is kept while the model exists and selects this node (its
selection is evaluated afresh, so a lane that has not run yet after a restart keeps its
resume data), and always for reserved, ``local://`` and ``vendor://`` models.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from model_agent import manifest, metrics
from model_agent.disk import janitor, policy

if TYPE_CHECKING:
    from model_agent import agent

__all__ = ["claims", "placed", "start"]


def claims(owner: agent.Agent, destinations: list[str], held: list[str]) -> policy.Claims:
    """What the models hold now; ``destinations``: the completion manifests' paths; ``held``:
    the directories the path-ownership registry gives a model (kept, whatever their state)."""
    pointed, kept = set(destinations) | set(held), set(held)
    for lane in owner.lanes.values():
        model = lane.model
        if lane.deleted or model is None:
            continue
        pointed.add(model.path)
        if model.reserve or model.scheme not in ("hf", "oci") or owner._selects(lane):
            kept.add(model.path)
    for record in owner.work.records.values():
        pointed.add(record.path)
        kept.add(record.path)
    return policy.Claims(pointed=frozenset(pointed), kept=frozenset(kept))


def placed(owner: agent.Agent) -> dict[str, metrics.ModelLabels]:
    """Path and metric labels of each model the agent placed on this node."""
    found: dict[str, metrics.ModelLabels] = {}
    for record in owner.work.records.values():
        if record.owned:
            found[record.path] = metrics.ModelLabels(record.kind, record.namespace, record.name)
    return found


def start(owner: agent.Agent) -> list[asyncio.Task[None]]:
    """The janitor's task (none when the disk scan is off)."""
    if owner.config.disk_scan_interval is None:
        return []

    def on_disk() -> tuple[list[str], list[str]]:
        held = [c.path for c in owner.work.owners.claims()]
        return manifest.destinations(state_dir=owner.state_dir), held

    async def current() -> policy.Claims:
        found, held = await asyncio.to_thread(on_disk)
        return claims(owner, found, held)

    owner.janitor = janitor.Janitor(
        config=owner.config,
        state_dir=str(owner.state_dir),
        claims=current,
        placed=lambda: placed(owner),
        recorder=owner.metrics,
        freed=owner.work.admission.freed,
    )
    return [asyncio.create_task(owner.janitor.run(owner._stop_event), name="disk-janitor")]
