"""Health checks of the agent that need no Kubernetes API: directories, event loop, workers.

A check is an async callable answering ``(ok, detail)``; ``HealthChecks`` bundles the three
the HTTP server serves (``/healthz``, ``/readyz``, ``/livez``). The agent adds its own check
(its node watch open, read from memory: a probe sends no API request) and combines them with
``all_of``.

- ``directory_writable``: the directory exists, is a directory, and a file can really be
  created in it (``os.access`` lies on read-only mounts for some filesystems and for root).
- ``LoopLagMonitor``: a task that sleeps a short interval and measures how late it wakes.
  Its check fails while the worst lag seen in the last ``window`` seconds exceeds
  ``threshold``, or when the monitor itself has not ticked for longer than that (the loop
  is blocked right now).
- ``workers_alive``: worker tasks given by a callable; fails if one has ended.
- ``agent_checks``: the agent's standard wiring of the three endpoints from the above.
- ``reachable``: wraps any awaitable probe (e.g. the API server's ``/version``) with a
  timeout and reports the error class, never the error text (it may carry a URL with
  credentials).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import pathlib
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

__all__ = [
    "Check",
    "HealthChecks",
    "LoopLagMonitor",
    "agent_checks",
    "all_of",
    "directory_writable",
    "reachable",
    "workers_alive",
]

#: An async health check: ``(True, "why it is fine")`` or ``(False, "what is wrong")``.
Check = Callable[[], Awaitable[tuple[bool, str]]]


async def _always_ok() -> tuple[bool, str]:
    return True, "ok"


@dataclasses.dataclass(frozen=True, kw_only=True)
class HealthChecks:
    """The three checks the HTTP server answers; each defaults to "ok"."""

    healthz: Check = _always_ok
    readyz: Check = _always_ok
    livez: Check = _always_ok


def all_of(*checks: Check) -> Check:
    """One check that passes when every check passes; details joined with ``; ``.
    The checks run concurrently; a check that raises counts as failed (its error class)."""

    async def combined() -> tuple[bool, str]:
        results = await asyncio.gather(*(c() for c in checks), return_exceptions=True)
        ok, details = True, []
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                ok = False
                details.append(f"check raised {type(result).__name__}")
            else:
                ok = ok and result[0]
                details.append(result[1])
        return ok, "; ".join(details)

    return combined


def _probe_directory(path: pathlib.Path) -> tuple[bool, str]:
    if not path.exists():
        return False, f"{path} does not exist"
    if not path.is_dir():
        return False, f"{path} is not a directory"
    try:
        fd, name = tempfile.mkstemp(prefix=".model-agent-probe-", dir=path)
    except OSError as exc:
        return False, f"{path} is not writable ({exc.strerror or type(exc).__name__})"
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass
    return True, f"{path} writable"


def directory_writable(path: str | os.PathLike[str], *, timeout: float = 5.0) -> Check:
    """Check that ``path`` exists, is a directory and accepts a new file. The probe runs in
    a thread with a timeout, so a hung network filesystem fails the check instead of the
    event loop."""
    target = pathlib.Path(path)

    async def check() -> tuple[bool, str]:
        try:
            return await asyncio.wait_for(asyncio.to_thread(_probe_directory, target), timeout)
        except TimeoutError:
            return False, f"{target} did not answer within {timeout:g}s"

    return check


def reachable(name: str, probe: Callable[[], Awaitable[Any]], *, timeout: float = 5.0) -> Check:
    """Check that ``probe()`` completes within ``timeout``; the detail names ``name`` and, on
    failure, only the error class."""

    async def check() -> tuple[bool, str]:
        try:
            await asyncio.wait_for(probe(), timeout)
        except TimeoutError:
            return False, f"{name} unreachable (no answer within {timeout:g}s)"
        except Exception as exc:
            return False, f"{name} unreachable ({type(exc).__name__})"
        return True, f"{name} reachable"

    return check


def workers_alive(tasks: Callable[[], Collection[asyncio.Task[Any]]], *, minimum: int = 0) -> Check:
    """Check that every task ``tasks()`` returns is still running, and at least ``minimum``
    of them exist. A task that ended (crashed, returned or was cancelled) fails the check."""

    async def check() -> tuple[bool, str]:
        current = list(tasks())
        for task in current:
            if task.done():
                if task.cancelled():
                    why = "cancelled"
                elif task.exception() is not None:
                    why = f"crashed ({type(task.exception()).__name__})"
                else:
                    why = "returned"
                return False, f"worker {task.get_name()} {why}"
        if len(current) < minimum:
            return False, f"{len(current)} workers alive, {minimum} expected"
        return True, f"{len(current)} workers alive"

    return check


class LoopLagMonitor:
    """Measures event-loop lag: sleeps ``interval`` and records how much later it woke.

    ``check`` fails while the worst lag within the last ``window`` seconds exceeds
    ``threshold``, or while the monitor has not ticked for ``interval + threshold`` (the
    loop is blocked now, or the monitor died). ``on_sample`` receives every lag (metrics).
    """

    def __init__(
        self,
        *,
        interval: float = 0.5,
        threshold: float = 5.0,
        window: float = 30.0,
        on_sample: Callable[[float], None] | None = None,
    ) -> None:
        self.interval = interval
        self.threshold = threshold
        self.window = window
        self._on_sample = on_sample
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._last_tick: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def last_lag(self) -> float:
        return self._samples[-1][1] if self._samples else 0.0

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._last_tick = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="loop-lag-monitor"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self._record(now, max(0.0, now - before - self.interval))

    def _record(self, now: float, lag: float) -> None:
        self._last_tick = now
        self._samples.append((now, lag))
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()
        if self._on_sample is not None:
            self._on_sample(lag)

    def worst_recent_lag(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return max((lag for t, lag in self._samples if t >= now - self.window), default=0.0)

    async def check(self) -> tuple[bool, str]:
        now = time.monotonic()
        if self._task is None or self._task.done() or self._last_tick is None:
            return False, "event-loop monitor is not running"
        silent = now - self._last_tick
        if silent > self.interval + self.threshold:
            return False, f"event loop blocked for {silent:.2f}s"
        worst = self.worst_recent_lag(now)
        if worst > self.threshold:
            return False, (
                f"event loop lagged {worst:.2f}s within the last {self.window:g}s "
                f"(threshold {self.threshold:g}s)"
            )
        return True, f"event loop lag {self.last_lag:.3f}s"


def agent_checks(
    *,
    models_root: str | os.PathLike[str],
    temp_dir: str | os.PathLike[str] | None,
    loop: LoopLagMonitor,
    workers: Check | None = None,
    api: Check | None = None,
    watches: Check | None = None,
) -> HealthChecks:
    """The standard wiring: ``/healthz`` = models root usable; ``/readyz`` = models root and
    temp dir usable, API reachable, watches open; ``/livez`` = event loop responsive and
    workers alive. ``api``, ``watches`` and ``workers`` are the agent's own checks."""
    root = directory_writable(models_root)
    ready: list[Check] = [root]
    if temp_dir is not None:
        ready.append(directory_writable(temp_dir))
    ready.extend(check for check in (api, watches) if check is not None)
    live: list[Check] = [loop.check]
    if workers is not None:
        live.append(workers)
    return HealthChecks(healthz=root, readyz=all_of(*ready), livez=all_of(*live))
