"""The lane watchdog: a model's task that makes no progress (no bytes, no state change) for
far longer than the stall timeout is restarted, with a log line naming the model.

The stall timeout guards each transfer; this guards everything around them (an API call or
a metadata request that never answers, a hung thread). Time spent waiting for a download
slot, or for disk space to be admitted, is not a lack of progress. Pure decision
(``stuck``) and one loop (``watch``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable

from model_agent import agent_lanes

__all__ = ["STALL_FACTOR", "lane_slot", "lane_waiting", "stuck", "watch"]

logger = logging.getLogger("model_agent.agent")

#: A lane is stuck after this many stall timeouts without progress.
STALL_FACTOR = 20


def stuck(
    lanes: Iterable[agent_lanes.Lane], *, now: float, stuck_after: float
) -> list[agent_lanes.Lane]:
    """Lanes whose running task has shown no progress for ``stuck_after`` seconds."""
    return [
        lane
        for lane in lanes
        if lane.task is not None
        and not lane.task.done()
        and not lane.waiting_slot
        and now - lane.active_at > stuck_after
    ]


@contextlib.asynccontextmanager
async def lane_slot(
    slots: agent_lanes.DownloadSlots, lane: agent_lanes.Lane
) -> AsyncIterator[None]:
    """A download slot for ``lane``; the wait for it does not count as being stuck."""
    lane.waiting_slot = True
    try:
        async with slots.slot() as held:
            lane.waiting_slot, lane.held = False, held
            lane.active_at = time.monotonic()
            yield
    finally:
        lane.waiting_slot, lane.held = False, None


@contextlib.asynccontextmanager
async def lane_waiting(lane: agent_lanes.Lane) -> AsyncIterator[None]:
    """``lane`` waits for disk space: its download slot is lent back meanwhile, and the wait
    (and taking the slot again) does not count as being stuck."""
    lane.waiting_slot = True
    try:
        if lane.held is None:
            yield
        else:
            async with lane.held.lent():
                yield
    finally:
        lane.waiting_slot = False
        lane.active_at = time.monotonic()


async def watch(
    *,
    lanes: Callable[[], Iterable[agent_lanes.Lane]],
    stuck_after: float,
    restart: Callable[[agent_lanes.Lane], None],
    stop: asyncio.Event,
) -> None:
    """Until ``stop``: every quarter of ``stuck_after`` (at most a minute), restart the
    stuck lanes."""
    interval = max(0.05, min(60.0, stuck_after / 4))
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        now = time.monotonic()
        for lane in stuck(lanes(), now=now, stuck_after=stuck_after):
            logger.error(
                "model %s: its %s task made no progress for %.0f s (no bytes, no state "
                "change): restarting it",
                lane.ref.configmap_key,
                lane.running,
                now - lane.active_at,
            )
            restart(lane)
