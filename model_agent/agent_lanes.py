"""Small parts of the agent's lanes: the per-model ``Lane`` record, the bounded pool of
download slots (with the queue-depth and active-worker gauges), the backoff rule and the
node's GPU shape (detected once per instance type, in a thread: NVML calls block)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Mapping

from model_agent import errors, metrics, report, selection, spec

__all__ = [
    "DELETE",
    "SYNC",
    "DownloadSlots",
    "HeldSlot",
    "Lane",
    "ShapeCache",
    "Verdict",
    "backoff",
    "judge",
]

SYNC, DELETE = "sync", "delete"


@dataclasses.dataclass
class Lane:
    """Everything known about one model (key: kind/namespace/name; the uid is tracked)."""

    ref: spec.ModelRef
    model: spec.ModelSpec | None = None
    invalid: errors.AgentError | None = None
    placement: selection.Selection | None = None  # of an invalid spec, when it parses
    wanted: str | None = None  # SYNC or DELETE, waiting to run
    running: str | None = None
    running_model: spec.ModelSpec | None = None
    task: asyncio.Task[None] | None = None
    driver: asyncio.Task[None] | None = None
    retry: asyncio.TimerHandle | None = None
    attempts: int = 0
    selected: bool = False
    deleted: bool = False
    done_model: spec.ModelSpec | None = None  # the spec the last success was for
    progress: report.Progress | None = None
    progress_written: float = 0.0
    seen_at: float = 0.0  # monotonic time of the model's last event
    active_at: float = 0.0  # monotonic time of the running task's last sign of progress
    waiting_slot: bool = False  # the running task waits for a download slot or disk space
    held: HeldSlot | None = None  # the running task's download slot
    conflicted: bool = False  # the last attempt failed with PathConflict (retry on release)


class DownloadSlots:
    """At most ``size`` downloads at once; ``waiting``/``active`` feed the gauges."""

    def __init__(self, size: int, recorder: metrics.Metrics | None) -> None:
        self._semaphore = asyncio.Semaphore(size)
        self._metrics = recorder
        self.waiting = 0
        self.active = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[HeldSlot]:
        held = HeldSlot(self)
        await held.take()
        try:
            yield held
        finally:
            held.give()

    def _gauges(self) -> None:
        if self._metrics is not None:
            self._metrics.task_queue_depth.set(self.waiting)
            self._metrics.active_workers.set(self.active)


class HeldSlot:
    """One task's download slot; ``lent()`` gives it back while the task waits for something
    else (disk space) and takes one again after."""

    def __init__(self, slots: DownloadSlots) -> None:
        self._slots = slots
        self.held = False

    async def take(self) -> None:
        slots = self._slots
        slots.waiting += 1
        slots._gauges()
        try:
            await slots._semaphore.acquire()
        finally:
            slots.waiting -= 1
        self.held = True
        slots.active += 1
        slots._gauges()

    def give(self) -> None:
        if self.held:
            self.held = False
            self._slots.active -= 1
            self._slots._semaphore.release()
            self._slots._gauges()

    @contextlib.asynccontextmanager
    async def lent(self) -> AsyncIterator[None]:
        """Taken again only when the body ends normally: a cancelled wait must not queue
        for a slot it would give back at once."""
        self.give()
        yield
        await self.take()


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What to do after a failed attempt."""

    reason: str
    message: str
    give_up: bool  # report Failed (then retry after the long backoff)
    retry_in: float


def judge(
    failure: BaseException,
    *,
    attempts: int,
    max_attempts: int,
    delay: float,
    failed_retry: float,
) -> Verdict:
    """Retryable failures (and unexpected exceptions) retry after ``delay`` (or the
    Retry-After the remote side asked for, when longer) until ``max_attempts``; a permanent
    error, or the last attempt, gives up and retries after ``failed_retry``."""
    error = failure if isinstance(failure, errors.AgentError) else None
    reason = error.reason if error is not None else "Error"
    message = str(failure) or type(failure).__name__
    retryable = error.retryable if error is not None else True
    if retryable and attempts < max_attempts:
        retry_after = getattr(error, "retry_after", None)
        return Verdict(reason, message, False, max(delay, float(retry_after or 0)))
    return Verdict(reason, message, True, failed_retry)


def backoff(attempts: int, *, base: float, cap: float) -> float:
    """Exponential backoff with +-25 % jitter: base, 2 base, 4 base, ... up to ``cap``."""
    delay: float = min(cap, base * 2.0 ** max(0, attempts - 1))
    return delay * (0.75 + random.random() / 2)


class ShapeCache:
    """The GPU shape filter key for TensorRT-LLM models, per instance-type label."""

    def __init__(self, instance_type_map: Mapping[str, str]) -> None:
        self._map = instance_type_map
        self._cached: tuple[str | None, str | None] | None = None

    async def get(self, labels: Mapping[str, str]) -> str | None:
        from model_agent import gpu, shapes

        instance_type = shapes.instance_type_from_labels(labels)
        if self._cached is None or self._cached[0] != instance_type:
            found = await asyncio.to_thread(
                gpu.detect_shape, instance_type=instance_type, instance_type_map=self._map
            )
            self._cached = (instance_type, found.filter_key if found else None)
        return self._cached[1]
