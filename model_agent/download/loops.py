"""Transfer threads: event loops of their own, where the bytes of a download are handled.

A ``Pool`` starts ``threads`` worker threads, each running an asyncio event loop with its own
HTTP session (``connections.new_session``). The agent's event loop hands each transfer
(one ranged GET, its TLS decryption, its writes and its inline hashing) to the least busy
thread with ``run`` and awaits the result: receive, decrypt, write and hash run on as many
cores as there are threads, while the agent's loop still starts, supervises, times out and
cancels every transfer. Cancelling ``run`` cancels the transfer in its thread and waits for it
to end, so no write is still in flight once the caller's cancellation goes on.

Owns the threads, their loops and sessions; must not decide what is transferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from model_agent.download import connections

__all__ = ["Pool"]

T = TypeVar("T")


class _Lane:
    """One thread, its event loop and its session; ``active`` counts transfers on it."""

    def __init__(self, index: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._main, name=f"model-agent-transfer-{index}", daemon=True
        )
        self.session: aiohttp.ClientSession | None = None
        self.active = 0

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # Stopped: let the callbacks of closed transports run, then close the loop.
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    async def call(self, factory: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(_await(factory), self.loop)
        )


async def _await(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


class Pool:
    """``threads`` transfer threads; ``async with`` starts and stops them."""

    def __init__(self, *, threads: int, options: connections.SessionOptions) -> None:
        self._lanes = [_Lane(i) for i in range(max(1, threads))]
        self._options = options

    @property
    def threads(self) -> int:
        return len(self._lanes)

    async def __aenter__(self) -> Pool:
        for lane in self._lanes:
            lane.thread.start()

            async def make() -> aiohttp.ClientSession:
                return connections.new_session(self._options)

            lane.session = await lane.call(make)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for lane in self._lanes:
            session, lane.session = lane.session, None
            if session is not None:
                with contextlib.suppress(Exception):
                    await lane.call(session.close)
            lane.loop.call_soon_threadsafe(lane.loop.stop)
        for lane in self._lanes:
            await asyncio.to_thread(lane.thread.join)

    async def run(self, transfer: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
        """``transfer(session)`` on the least busy thread. Cancelling this cancels the
        transfer there and returns only once it has ended."""
        lane = min(self._lanes, key=lambda candidate: candidate.active)
        session = lane.session
        if session is None:
            raise RuntimeError("transfer pool is not started")
        main = asyncio.get_running_loop()
        result: asyncio.Future[T] = main.create_future()
        state: dict[str, asyncio.Task[T] | bool] = {}

        def deliver(task: asyncio.Task[T]) -> None:
            def settle() -> None:
                if result.done():
                    return
                if task.cancelled():
                    result.cancel()
                elif (error := task.exception()) is not None:
                    result.set_exception(error)
                else:
                    result.set_result(task.result())

            with contextlib.suppress(RuntimeError):  # the agent's loop is already closed
                main.call_soon_threadsafe(settle)

        def start() -> None:
            task = lane.loop.create_task(_await(lambda: transfer(session)))
            state["task"] = task
            if state.get("cancelled"):
                task.cancel()
            task.add_done_callback(deliver)

        def cancel() -> None:
            state["cancelled"] = True
            task = state.get("task")
            if isinstance(task, asyncio.Task):
                task.cancel()

        lane.active += 1
        try:
            lane.loop.call_soon_threadsafe(start)
            try:
                return await asyncio.shield(result)
            except asyncio.CancelledError:
                lane.loop.call_soon_threadsafe(cancel)
                with contextlib.suppress(BaseException):
                    await asyncio.wait([result])
                raise
        finally:
            lane.active -= 1
