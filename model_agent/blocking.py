"""Blocking calls run from the event loop, and what cancelling one means.

A call handed to a worker thread cannot be interrupted. ``to_end`` runs one and, when the
awaiting task is cancelled, waits for the call to return before the cancellation goes on: the
caller's ``finally`` (closing a descriptor, deleting a directory) never races a thread still
using it. ``finish`` does the same for a short coroutine of such calls (a sidecar write, a
makedirs): once started it runs to its end. Callers keep each call short (one chunk, one
step), so a cancellation, and with it SIGTERM, lands within one step, never after a file.

``run`` is ``asyncio.run`` with a default executor whose shutdown waits at most ``grace``
seconds (Python 3.11's waits for every queued call without a limit): a process told to stop
does not wait for work nobody awaits any more.

Owns those rules; must not decide what runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

__all__ = ["BoundedExecutor", "finish", "opened", "run", "to_end"]

log = logging.getLogger("model_agent")

P = ParamSpec("P")
T = TypeVar("T")


async def to_end(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args, **kwargs)`` in the default executor; cancellation waits for it to end."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, functools.partial(func, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait([future])
        raise


async def finish(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` (a short coroutine of thread calls); a cancellation waits for it to
    end, so nothing it does lands after the caller's cancellation went on."""
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait([task])
        raise


async def opened(func: Callable[P, int], /, *args: P.args, **kwargs: P.kwargs) -> int:
    """A descriptor ``func`` (``os.open``, a locking opener) returns, opened in a thread; one
    opened after the caller was cancelled is closed, never leaked."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, functools.partial(func, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait([future])
            os.close(future.result())
        raise


class BoundedExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool whose ``shutdown(wait=True)`` drops queued calls and waits at most
    ``grace`` seconds for the running ones."""

    def __init__(self, *, grace: float, thread_name_prefix: str = "asyncio") -> None:
        super().__init__(thread_name_prefix=thread_name_prefix)
        self.grace = grace

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        threads = list(getattr(self, "_threads", ()))
        super().shutdown(wait=False, cancel_futures=True)
        if not wait:
            return
        deadline = time.monotonic() + self.grace
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in threads if t.is_alive()]
        if busy:
            log.warning(
                "stopping with %d worker thread(s) still busy after %gs: %s",
                len(busy),
                self.grace,
                ", ".join(busy),
            )


def run(main: Coroutine[Any, Any, T], *, grace: float = 5.0) -> T:
    """``asyncio.run(main)`` whose default executor waits at most ``grace`` s at exit."""
    executor = BoundedExecutor(grace=grace)

    def factory() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        loop.set_default_executor(executor)
        return loop

    with asyncio.Runner(loop_factory=factory) as runner:
        result: T = runner.run(main)
    return result
