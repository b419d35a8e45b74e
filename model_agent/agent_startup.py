"""The agent's start-up and upkeep: retry the first API calls; clean up after models that
were deleted while it was down (their ConfigMap entries, Node labels and, when the agent's
record says it owns them, their files); and the loop that re-sends failed report writes and,
once per (jittered) resync period, puts back entries, labels or a whole ConfigMap that someone
else removed and sweeps for models deleted without an event."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from model_agent import agent_work, errors, pacing, report, spec
from model_agent.kube import configmap, nodes

__all__ = ["remove_stale", "retrying", "upkeep"]

logger = logging.getLogger("model_agent.agent")
T = TypeVar("T")


async def retrying(what: str, call: Callable[[], Awaitable[T]], attempts: int = 30) -> T:
    """``call()``, retried with backoff while it fails with a retryable error."""
    for attempt in range(attempts):
        try:
            return await call()
        except errors.AgentError as exc:
            if not exc.retryable or attempt + 1 >= attempts:
                logger.error("%s Failed: %s", what, exc)
                raise
            await asyncio.sleep(min(5.0, 0.1 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


async def _quietly(operation: Awaitable[Any]) -> None:
    try:
        await operation
    except errors.AgentError as exc:
        logger.error("start-up clean-up step Failed: %s (will retry)", exc)


async def remove_stale(
    *,
    work: agent_work.Work,
    cm: configmap.ConfigMapWriter,
    node: nodes.NodeClient,
    node_labels: Iterable[str],
    existing: list[dict[str, Any]],
    data: Mapping[str, str],
    models_root_dir: str,
) -> None:
    """Entries, labels, owned files and directory claims of models that no longer exist.
    Keys that do not look like model keys (another writer's) are left alone."""
    keys, labels, paths = set(), set(), set()
    for body in existing:
        try:
            ref = spec.identify(body)
        except errors.AgentError:
            continue
        keys.add(ref.configmap_key)
        labels.add(ref.label_key)
        with contextlib.suppress(errors.AgentError):
            paths.add(spec.parse(body, models_root_dir=models_root_dir).path)
    for record in list(work.records.values()):
        if record.config_key in keys:
            continue
        ref = spec.ModelRef(kind=record.kind, namespace=record.namespace, name=record.name)
        if record.path in paths:  # an existing model wants the path: keep the files
            record = dataclasses.replace(record, owned=False)
        await _quietly(work.remove(ref, model=None, record=record, why="deleted while down"))
    for claim in await asyncio.to_thread(work.owners.claims):
        if claim.owner not in keys:  # its model is gone: the directory is free again
            logger.info("releasing %s, held by %s, which no longer exists", claim.path, claim.owner)
            await asyncio.to_thread(work.owners.release, claim.owner)
    for key in data:
        if report.is_model_configmap_key(key) and key not in keys:
            logger.info("configmap update: removing stale entry %s", key)
            await _quietly(cm.write(key, None))
    for label in list(node_labels):
        if report.is_model_label(label) and label not in labels:
            logger.info("removing stale node label %s", label)
            await _quietly(node.set_label(label, None))


async def upkeep(
    *,
    cm: configmap.ConfigMapWriter,
    node: nodes.NodeClient,
    labels: Callable[[], Mapping[str, str]],
    interval: float,
    repair_interval: float,
    stop: asyncio.Event,
    sweep: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Until ``stop``: re-send pending writes every ``interval`` (no request when nothing is
    pending); about every ``repair_interval`` (jittered, see ``pacing.resync``) also
    reconcile the ConfigMap (one GET) and the labels against the latest node snapshot (no
    request), and ``sweep`` (the agent's check for models deleted without an event)."""
    repair_at = time.monotonic() + pacing.resync(repair_interval)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        try:
            if cm.pending:
                await cm.flush()
            if node.pending:
                await node.flush()
            if time.monotonic() >= repair_at:
                repair_at = time.monotonic() + pacing.resync(repair_interval)
                await cm.reconcile()
                await node.reconcile(labels())
                if sweep is not None:
                    await sweep()
        except Exception as exc:  # keep the loop alive; the next round tries again
            logger.warning("report repair failed: %s: %s", type(exc).__name__, exc)
