"""The download engine: which byte ranges of a file to fetch, retried, never trusted blindly.

``Engine.fetch(file, staged, digest=...)`` fills every missing byte range of one staged file:
the interface a source of bytes needs (a backend's ``request`` makes each signed GET, so the
same engine serves the hub, object storage or a peer). Files at or above the multipart
threshold are cut into ranged parts (``planning.part_size``) fetched in parallel up to
``multipart_concurrency``. Each attempt at a part is one ``transfer.receive`` run on a
transfer thread (``loops.Pool``): the bytes are received, decrypted, written and hashed there,
while this coroutine, on the agent's event loop, starts, supervises and cancels it. Memory is
bounded by parts in flight x (``write_size`` + the socket read buffer).

Failures retry per part with exponential backoff and full jitter, honouring ``Retry-After``;
the budget refills whenever bytes arrive. The sidecar is checkpointed when the first bytes
arrive, then at most twice a second while more arrive, and once at the end unless the file
is complete (it is fsynced and renamed next); ``StagedFile.checkpoint`` makes the data durable
first.
Cancelling ``fetch`` cancels every part and returns once their threads stopped writing.

Owns HTTP transfer into staged files; must not verify, rename or decide what to download.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import ssl
from collections.abc import Callable
from typing import Protocol

import aiohttp

from model_agent import errors, planning
from model_agent.download import digest as digests
from model_agent.download import loops, ranges, staging, transfer
from model_agent.egress import policy
from model_agent.peers import plan as peer_plan
from model_agent.storage import base

__all__ = [
    "Engine",
    "Options",
    "Routing",
    "UnexpectedStatusError",
    "default_threads",
    "first_error",
]

log = logging.getLogger("model_agent.download")

UnexpectedStatusError = transfer.UnexpectedStatusError
status_error = transfer.status_error
_CHECKPOINT_SECONDS = 0.5


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """Engine tuning. ``part_retries``: failed attempts in a row (without new bytes) a part
    may make before the file fails."""

    multipart_concurrency: int = 4
    multipart_threshold: int = 200 * 1024**2
    stall_timeout: float = 60.0
    part_retries: int = 5
    write_size: int = 1024**2
    read_buffer: int = 256 * 1024
    backoff_base: float = 0.25
    backoff_cap: float = 30.0
    retry_after_cap: float = 300.0
    max_redirects: int = 5
    egress: policy.Egress = dataclasses.field(default_factory=policy.Egress)


class Routing(Protocol):
    """Where each piece of a file comes from while peering (``peers.router.Router``)."""

    ssl_context: ssl.SSLContext | None

    def shares(self, file: base.RemoteFile) -> bool: ...

    def decide(self, file: base.RemoteFile, position: int, end: int) -> peer_plan.Decision: ...

    async def changed(self) -> None: ...

    def request(
        self, file: base.RemoteFile, source: str, start: int, end: int
    ) -> base.HTTPRequest: ...

    def check(self, file: base.RemoteFile) -> Callable[[object], None]: ...

    def succeeded(self, source: str) -> None: ...

    def contributed(self, path: str, source: str) -> None: ...

    def failed(self, source: str, exc: errors.AgentError) -> None: ...


def default_threads() -> int:
    """Transfer threads when none are configured: one per CPU this process may run on
    (``taskset`` and cgroup cpusets narrow it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Engine:
    """Fetches staged files from one backend through a pool of transfer threads."""

    def __init__(
        self,
        backend: base.Backend,
        pool: loops.Pool,
        options: Options,
        *,
        on_bytes: Callable[[int, str], None] | None = None,
        on_rate_limited: Callable[[float], None] | None = None,
        router: Routing | None = None,
    ) -> None:
        self._backend = backend
        self._pool = pool
        self._options = options
        self._limits = transfer.Limits(
            stall_timeout=options.stall_timeout,
            write_size=options.write_size,
            max_redirects=options.max_redirects,
            egress=options.egress,
        )
        self._on_bytes = on_bytes
        self._on_rate_limited = on_rate_limited
        self._router = router
        self._peer_limits = dataclasses.replace(
            self._limits,
            direct=True,
            ssl_context=router.ssl_context if router is not None else None,
        )
        self.bytes_received = 0
        #: Bytes received by source (``origin`` / ``peer``).
        self.bytes_by_source: dict[str, int] = {}

    async def fetch(
        self,
        file: base.RemoteFile,
        staged: staging.StagedFile,
        *,
        digest: digests.InlineDigest | None = None,
    ) -> None:
        """Download every missing range of ``file`` into ``staged`` (its sidecar is kept up
        to date); ``digest`` hashes in-order bytes as they are written. Raises the part's
        error once its retries are spent."""
        options = self._options
        router = self._router
        slots = asyncio.Semaphore(options.multipart_concurrency)
        target = self._target(file, staged, digest)
        if router is not None and router.shares(file):
            parts = peer_plan.grid_split(staged.missing())
            from_peers = dataclasses.replace(
                self._target(file, staged, digest, source="peer"), check=router.check(file)
            )

            async def run(start: int, end: int) -> None:
                await self._routed_part(router, file, (target, from_peers), slots, start, end)
        else:
            size = planning.part_size(
                file.size,
                threshold=options.multipart_threshold,
                concurrency=options.multipart_concurrency,
            )
            parts = ranges.split(staged.missing(), part_size=size)

            async def run(start: int, end: int) -> None:
                async with slots:
                    await self._part(file, target, start, end)

        checkpoints = asyncio.create_task(_checkpoints(staged))
        try:
            if len(parts) <= 1:
                for start, end in parts:
                    await run(start, end)
                return

            async with asyncio.TaskGroup() as group:
                for start, end in parts:
                    group.create_task(run(start, end))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        finally:
            checkpoints.cancel()
            await asyncio.wait([checkpoints])
            if not staged.done:  # a complete file is fsynced and placed next, no sidecar needed
                with contextlib.suppress(OSError):
                    await asyncio.shield(staged.checkpoint(force=True))

    def _target(
        self,
        file: base.RemoteFile,
        staged: staging.StagedFile,
        digest: digests.InlineDigest | None,
        *,
        source: str = "origin",
    ) -> transfer.Target:
        loop = asyncio.get_running_loop()
        on_bytes = self._on_bytes
        by_source = self.bytes_by_source

        def written_here(start: int, size: int) -> None:
            staged.mark(start, start + size)
            self.bytes_received += size
            by_source[source] = by_source.get(source, 0) + size
            if on_bytes is not None:
                on_bytes(size, source)

        def written(start: int, size: int) -> None:  # called on a transfer thread
            with contextlib.suppress(RuntimeError):  # the agent's loop is closed
                loop.call_soon_threadsafe(written_here, start, size)

        def check(headers: object) -> None:
            self._backend.check_response(file, headers)  # type: ignore[arg-type]

        return transfer.Target(
            name=file.path,
            size=file.size,
            path=staged.temp_path,
            check=check,
            written=written,
            digest=digest,
        )

    async def _part(
        self, file: base.RemoteFile, target: transfer.Target, start: int, end: int
    ) -> None:
        cursor = transfer.Cursor(start)
        failures = 0
        limits = self._limits
        while cursor.position < end:
            before = cursor.position
            try:
                request = await self._backend.request(file, start=cursor.position, end=end)

                async def attempt(
                    session: aiohttp.ClientSession, request: base.HTTPRequest = request
                ) -> None:
                    await transfer.receive(session, request, target, cursor, end, limits)

                await self._pool.run(attempt)
            except errors.RetryableError as exc:
                failures = 1 if cursor.position > before else failures + 1
                if failures > self._options.part_retries:
                    raise
                delay = self._delay(exc, failures)
                log.warning(
                    "retrying %s bytes %d-%d in %.2fs: %s",
                    file.path,
                    cursor.position,
                    end - 1,
                    delay,
                    exc,
                    extra={"file": file.path},
                )
                await asyncio.sleep(delay)

    async def _routed_part(
        self,
        router: Routing,
        file: base.RemoteFile,
        targets: tuple[transfer.Target, transfer.Target],
        slots: asyncio.Semaphore,
        start: int,
        end: int,
    ) -> None:
        """One grid chunk while peering: from a peer that holds it, from the origin when this
        node owns it, else wait (without a slot) for a holder. A failed peer costs a retry
        elsewhere, never the file; origin failures retry as in ``_part``."""
        origin_target, peer_target = targets
        cursor = transfer.Cursor(start)
        failures = 0
        while cursor.position < end:
            if router.decide(file, cursor.position, end).kind == "wait":
                await router.changed()
                continue
            async with slots:
                decision = router.decide(file, cursor.position, end)
                if decision.kind == "wait":
                    continue
                before = cursor.position
                if decision.kind == "peer" and decision.source is not None:
                    source = decision.source
                    request = router.request(file, source, cursor.position, decision.stop)
                    try:
                        await self._attempt(request, peer_target, cursor, decision.stop, peer=True)
                    except errors.AgentError as exc:
                        router.failed(source, exc)
                    else:
                        router.succeeded(source)
                    finally:
                        if cursor.position > before:
                            router.contributed(file.path, source)
                    continue
                try:
                    request = await self._backend.request(
                        file, start=cursor.position, end=decision.stop
                    )
                    await self._attempt(request, origin_target, cursor, decision.stop, peer=False)
                except errors.RetryableError as exc:
                    failures = 1 if cursor.position > before else failures + 1
                    if failures > self._options.part_retries:
                        raise
                    delay = self._delay(exc, failures)
                    log.warning(
                        "retrying %s bytes %d-%d in %.2fs: %s",
                        file.path,
                        cursor.position,
                        end - 1,
                        delay,
                        exc,
                        extra={"file": file.path},
                    )
                    await asyncio.sleep(delay)

    async def _attempt(
        self,
        request: base.HTTPRequest,
        target: transfer.Target,
        cursor: transfer.Cursor,
        end: int,
        *,
        peer: bool,
    ) -> None:
        limits = self._peer_limits if peer else self._limits

        async def attempt(session: aiohttp.ClientSession) -> None:
            await transfer.receive(session, request, target, cursor, end, limits)

        await self._pool.run(attempt)

    def _delay(self, exc: errors.RetryableError, failures: int) -> float:
        options = self._options
        if exc.retry_after is not None:
            wait = min(exc.retry_after, options.retry_after_cap)
            if isinstance(exc, errors.RateLimitedError) and self._on_rate_limited:
                self._on_rate_limited(wait)
            return wait + random.uniform(0, options.backoff_base)
        ceiling = min(options.backoff_cap, options.backoff_base * 2 ** (failures - 1))
        return random.uniform(ceiling / 2, ceiling)


async def _checkpoints(staged: staging.StagedFile) -> None:
    """Checkpoint ``staged`` as soon as new bytes arrive, then at most every
    ``_CHECKPOINT_SECONDS`` while more arrive."""
    while True:
        await staged.changed.wait()
        if staged.done:
            return  # fsynced and placed next: no sidecar fdatasync for a complete file
        with contextlib.suppress(OSError):
            await staged.checkpoint(force=True)
        await asyncio.sleep(_CHECKPOINT_SECONDS)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The most telling error of a failed TaskGroup: a permanent one first, else the first."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    for leaf in leaves:
        if isinstance(leaf, errors.AgentError) and not leaf.retryable:
            return leaf
    return leaves[0]
