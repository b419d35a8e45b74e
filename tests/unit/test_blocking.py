"""Blocking calls from the event loop: what cancelling one waits for, and how long exit waits.

Aspects: ``to_end`` and ``finish`` return from a cancellation only after the thread call (or
the short coroutine of them) has ended; ``opened`` closes a descriptor that arrived after
its caller was cancelled; the bounded executor's shutdown drops queued calls and returns
while a long call still runs (Python 3.11's default waits for it).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import threading

import pytest

from model_agent import blocking


async def test_a_cancelled_to_end_returns_only_after_the_thread_call_ended() -> None:
    release, ended = threading.Event(), threading.Event()

    def work() -> None:
        release.wait(10)
        ended.set()

    task = asyncio.create_task(blocking.to_end(work))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # still waiting for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set()


async def test_a_cancelled_finish_lets_its_coroutine_complete(tmp_path: pathlib.Path) -> None:
    release = threading.Event()

    async def write() -> None:
        await asyncio.to_thread(release.wait, 10)
        await asyncio.to_thread((tmp_path / "sidecar").write_text, "done")

    task = asyncio.create_task(blocking.finish(write()))
    await asyncio.sleep(0.05)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (tmp_path / "sidecar").read_text() == "done"


async def test_a_descriptor_opened_after_cancellation_is_closed(tmp_path: pathlib.Path) -> None:
    release = threading.Event()
    opened: list[int] = []

    def slow_open(path: pathlib.Path) -> int:
        release.wait(10)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
        opened.append(fd)
        return fd

    task = asyncio.create_task(blocking.opened(slow_open, tmp_path / "f"))
    await asyncio.sleep(0.05)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):
        os.fstat(opened[0])


def test_the_bounded_executor_stops_waiting_for_a_long_call() -> None:
    release = threading.Event()
    executor = blocking.BoundedExecutor(grace=0.1)
    running = executor.submit(release.wait, 30)
    queued = [executor.submit(release.wait, 30) for _ in range(64)]
    executor.shutdown(wait=True)
    try:
        assert not running.done()  # shutdown returned while the call still runs
        assert any(f.cancelled() for f in queued)  # calls never started are dropped
    finally:
        release.set()
