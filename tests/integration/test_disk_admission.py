"""Admission into the disk against the real ``statvfs`` of tmp_path's filesystem.

Aspects: a download that fits is admitted at once and holds its promise until it ends; a
second one that would need the same free space waits (told once, inside ``waiting()``, with
the gauges set) and is admitted when the first ends; ``freed()`` makes a waiter look again;
one larger than the filesystem less the reserve fails at once with ``NoSpaceError`` naming
the bytes; the reserve (a percent) counts."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator

import prometheus_client as prom
import pytest

from model_agent import errors, metrics, settings
from model_agent.disk import admission, ledger


def free_of(path: pathlib.Path) -> ledger.Space:
    return admission.filesystem(str(path))[1]


async def test_two_downloads_never_share_the_same_free_space(tmp_path: pathlib.Path) -> None:
    recorder = metrics.Metrics(prom.CollectorRegistry())
    gate = admission.Admission(reserve=settings.FreeSpace(), recorder=recorder, poll=60.0)
    share = int(free_of(tmp_path).free * 0.6)
    told: list[ledger.Decision] = []
    lent: list[str] = []

    async def on_wait(decision: ledger.Decision) -> None:
        told.append(decision)

    @contextlib.asynccontextmanager
    async def waiting() -> AsyncIterator[None]:
        lent.append("lent")
        try:
            yield
        finally:
            lent.append("back")

    first = gate.reserve([(str(tmp_path), share, 1)])
    await first.__aenter__()
    assert gate.ledger.total() >= share
    second_admitted = asyncio.Event()

    async def second() -> None:
        async with gate.reserve([(str(tmp_path), share, 1)], on_wait=on_wait, waiting=waiting):
            second_admitted.set()
            await asyncio.sleep(0)

    task = asyncio.create_task(second())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if told:
            break
    assert len(told) == 1 and told[0].verdict == ledger.WAIT and not second_admitted.is_set()
    assert lent == ["lent"]
    assert recorder.registry.get_sample_value("model_agent_disk_waiting_downloads") == 1
    gate.freed()  # nothing changed: it looks again and keeps waiting, told only once
    await asyncio.sleep(0.1)
    assert not second_admitted.is_set() and len(told) == 1
    await first.__aexit__(None, None, None)
    await asyncio.wait_for(task, timeout=10)
    assert second_admitted.is_set() and lent == ["lent", "back"]
    assert gate.ledger.total() == 0
    assert recorder.registry.get_sample_value("model_agent_disk_waiting_downloads") == 0


async def test_a_download_that_can_never_fit_fails_at_once(tmp_path: pathlib.Path) -> None:
    gate = admission.Admission(reserve=settings.FreeSpace())
    capacity = free_of(tmp_path).capacity
    with pytest.raises(errors.NoSpaceError, match=r"never fit.*bytes needed"):
        async with gate.reserve([(str(tmp_path), capacity + 1, 1)]):
            pass
    assert gate.ledger.total() == 0


async def test_the_reserve_is_kept_free(tmp_path: pathlib.Path) -> None:
    space = free_of(tmp_path)
    share = space.free // 2
    reserved = settings.FreeSpace(nbytes=space.free - share // 2)
    gate = admission.Admission(reserve=reserved, poll=0.05)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3), gate.reserve([(str(tmp_path), share, 1)]):
            pass
    async with admission.Admission(reserve=settings.FreeSpace()).reserve(
        [(str(tmp_path), share, 1)]
    ):
        pass


async def test_a_waiting_download_lends_its_slot_and_a_cancel_ends_it_at_once(
    tmp_path: pathlib.Path,
) -> None:
    from model_agent import agent_lanes

    slots = agent_lanes.DownloadSlots(1, None)
    gate = admission.Admission(reserve=settings.FreeSpace(), poll=60.0)
    share = int(free_of(tmp_path).free * 0.6)
    blocker = gate.reserve([(str(tmp_path), share, 1)])
    await blocker.__aenter__()

    async def waiter() -> None:
        async with slots.slot() as held:
            async with gate.reserve([(str(tmp_path), share, 1)], waiting=held.lent):
                raise AssertionError("admitted into promised space")

    task = asyncio.create_task(waiter())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if slots.active == 0 and gate._waiting:
            break
    assert slots.active == 0  # lent back while it waits for space
    async with asyncio.timeout(5), slots.slot():  # another task gets the only slot
        assert slots.active == 1
        task.cancel()  # e.g. the model was deleted: it must not queue for the slot first
        await asyncio.wait([task], timeout=5)
        assert task.cancelled()
    assert slots.active == 0 and slots.waiting == 0
    async with asyncio.timeout(5), slots.slot():  # exactly one slot, none leaked or doubled
        assert slots._semaphore.locked()
    await blocker.__aexit__(None, None, None)
