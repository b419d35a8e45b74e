"""Admission of downloads into the node's disk: the edge around the pure ``ledger``.

``Admission.reserve(needs)`` reads each filesystem with ``statvfs`` (in a thread), asks the
ledger, and either holds the promise for the body of the ``async with`` (admit), raises
``NoSpaceError`` naming the needed and available bytes (never fits), or waits: it tells the
caller when the promises or its need change (``on_wait``), runs the wait inside ``waiting()`` (the
agent lends the download slot back and keeps the watchdog off the lane), and tries again when
a promise is released, when ``freed()`` says a model was removed, or every ``poll`` seconds
(someone else may free space). Decisions are made on the event loop with no await between
reading the ledger and recording the promise, and the free space is read again when any
promise changed while it was being read.

Owns the waiting and the ``model_agent_disk_*`` admission gauges; must not delete anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence

from model_agent import errors, metrics, settings
from model_agent.disk import ledger

__all__ = ["Admission", "OnWait", "Waiting", "filesystem"]

logger = logging.getLogger("model_agent.disk")

OnWait = Callable[[ledger.Decision], Awaitable[None]]
Waiting = Callable[[], contextlib.AbstractAsyncContextManager[None]]


def filesystem(directory: str) -> tuple[Hashable, ledger.Space]:
    """The filesystem key (device id) and space of ``directory`` or of its nearest existing
    ancestor (blocking: run it in a thread)."""
    path = os.path.abspath(directory)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return os.stat(path).st_dev, ledger.Space(free=free, capacity=used + free, block=st.f_frsize)


class Admission:
    """See the module docstring. One per agent."""

    def __init__(
        self,
        *,
        reserve: settings.FreeSpace,
        recorder: metrics.Metrics | None = None,
        poll: float = 10.0,
    ) -> None:
        self.ledger = ledger.Ledger()
        self._reserve = reserve
        self._metrics = recorder
        self._poll = poll
        self._event = asyncio.Event()
        self._generation = 0
        self._waiting: dict[int, int] = {}  # id of a waiting reserve() -> bytes it needs

    def freed(self) -> None:
        """Space may have been freed (a model was removed): waiting downloads look again."""
        self._generation += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def _read(
        self, directories: Sequence[tuple[str, int, int]]
    ) -> tuple[list[ledger.Need], dict[Hashable, ledger.Space]]:
        found = await asyncio.gather(
            *(asyncio.to_thread(filesystem, directory) for directory, _, _ in directories)
        )
        needs = [
            ledger.Need(key, directory, ledger.footprint(nbytes, count, space.block))
            for (directory, nbytes, count), (key, space) in zip(directories, found, strict=True)
        ]
        return needs, {key: space for key, space in found}

    @contextlib.asynccontextmanager
    async def reserve(
        self,
        directories: Sequence[tuple[str, int, int]],
        *,
        on_wait: OnWait | None = None,
        waiting: Waiting | None = None,
    ) -> AsyncIterator[None]:
        """Hold a promise on the filesystem of each ``(directory, bytes, files)``: the bytes
        rounded up to whole blocks, plus a block per file for its resume sidecar."""
        wanted = [(d, n, c) for d, n, c in directories if n > 0]
        token: int | None = None
        told: tuple[object, ...] | None = None
        me = id(wanted)
        try:
            # The slot lent while waiting is taken back only when admitted: a cancelled or
            # failed wait ends at once (the caller's slot is simply no longer held).
            async with contextlib.AsyncExitStack() as lent:
                lending = False
                while token is None:
                    version, generation = self.ledger.version, self._generation
                    needs, spaces = await self._read(wanted)
                    if self.ledger.version != version:
                        continue  # a promise changed while statvfs ran: read again
                    reserves = {k: self._reserve.of(space.capacity) for k, space in spaces.items()}
                    ruling = ledger.verdict_of(self.ledger.decide_all(needs, spaces, reserves))
                    if ruling is None:
                        token = self.ledger.promise(needs)
                        break
                    if ruling.verdict == ledger.NEVER:
                        raise errors.NoSpaceError(ruling.message)
                    self._waiting[me] = ruling.needed
                    self._gauges()
                    if not lending and waiting is not None:
                        await lent.enter_async_context(waiting())
                        lending = True
                    # Told again only when the promises or the need change, not with every
                    # byte someone else writes: a waiting model costs no API write per look.
                    reason = (ruling.directory, ruling.needed, ruling.promised, ruling.running)
                    if told != reason:
                        logger.info("%s", ruling.message)
                        if on_wait is not None:
                            await on_wait(ruling)
                    told = reason
                    if generation != self._generation:
                        continue  # space was freed while this round looked
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._event.wait(), timeout=self._poll)
                self._waiting.pop(me, None)
                self._gauges()
        except BaseException:
            if token is not None:  # admitted, then cancelled while taking the slot back
                self.ledger.release(token)
                self.freed()
            raise
        finally:
            self._waiting.pop(me, None)
            self._gauges()
        try:
            self._gauges()
            yield
        finally:
            assert token is not None
            self.ledger.release(token)
            self.freed()
            self._gauges()

    def _gauges(self) -> None:
        if self._metrics is not None:
            self._metrics.disk_admission(
                promised=self.ledger.total(),
                waiting=len(self._waiting),
                waiting_bytes=sum(self._waiting.values()),
            )
