"""The download engine: ranged HTTP GETs written at their offsets, retried, never trusted blindly.

``Engine.fetch(file, staged)`` fills every missing byte range of one staged file. Files at or
above the multipart threshold are cut into ranged parts (``planning.part_size``) fetched in
parallel up to ``multipart_concurrency``; each part takes the received buffers as they are
(``readchunk``: no joining copy) and writes them at its offset with one ``pwritev`` per
``write_size`` batch (1 MiB) in a worker thread, through its own descriptor. Memory is bounded
by parts in flight x (``write_size`` + the socket read buffer).

Every part request is checked: it must answer 206 with the exact ``Content-Range`` asked for
(a 200 to a Range request, a wrong range or a short body fail the part, never land as data).
Failures retry per part with exponential backoff and full jitter, honouring ``Retry-After``;
the budget refills whenever bytes arrive. No byte for ``stall_timeout`` seconds is a retryable
``StalledError``. Redirects are followed by hand so that ``Authorization`` goes only to the
hosts the backend named (never to a CDN). Cancelling ``fetch`` cancels every part.

Owns HTTP transfer into staged files; must not verify, rename or decide what to download.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import pathlib
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp

from model_agent import errors, planning
from model_agent.download import ranges, staging
from model_agent.egress import clients, policy, trust
from model_agent.storage import base

__all__ = ["Engine", "Options", "UnexpectedStatusError", "new_session"]

log = logging.getLogger("model_agent.download")

_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: A slow transfer still writes (and so records for resume) at least this often.
_FLUSH_SECONDS = 0.25
#: Moving the stall deadline costs a timer; once per this many seconds is precise enough.
_RESCHEDULE_SECONDS = 0.05
_SECRET_HEADERS = ("authorization", "cookie", "proxy-authorization")


class UnexpectedStatusError(errors.PermanentError):
    """The storage answered a 4xx status that retrying cannot fix."""

    reason = "HTTPError"


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


def new_session(*, connections: int, options: Options) -> aiohttp.ClientSession:
    """One pooled session per pull: kept-alive connections, no decompression. Proxies and CAs
    come from ``options.egress`` (``egress.clients.data_route``), never from aiohttp's own
    reading of the environment."""
    connector = aiohttp.TCPConnector(
        limit=connections,
        limit_per_host=0,
        ttl_dns_cache=300,
        ssl=clients.ssl_context(options.egress.ca),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        auto_decompress=False,
        read_bufsize=options.read_buffer,
        max_field_size=16 * 1024,
        headers={"Accept-Encoding": "identity", "User-Agent": "model-agent"},
    )


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


def status_error(status: int, headers: Mapping[str, str], name: str) -> errors.AgentError:
    """The error class of a non-success status for file ``name``."""
    wait = base.retry_after_seconds(headers.get("Retry-After"))
    if status == 429:
        return errors.RateLimitedError(f"rate limited (429) fetching {name}", retry_after=wait)
    if status >= 500:
        return errors.ServerError(f"server error {status} fetching {name}", retry_after=wait)
    if status in (401, 403):
        return errors.AuthError(f"access denied ({status}) fetching {name}")
    if status in (404, 410):
        return errors.NotFoundError(f"{name} not found ({status}) at the pinned revision")
    if status in (408, 416):
        return errors.ServerError(f"unexpected status {status} fetching {name}")
    return UnexpectedStatusError(f"unexpected status {status} fetching {name}")


class _Cursor:
    __slots__ = ("position",)

    def __init__(self, position: int) -> None:
        self.position = position


class Engine:
    """Fetches staged files from one backend over one session."""

    def __init__(
        self,
        backend: base.Backend,
        session: aiohttp.ClientSession,
        options: Options,
        *,
        on_bytes: Callable[[int], None] | None = None,
        on_rate_limited: Callable[[float], None] | None = None,
    ) -> None:
        self._backend = backend
        self._session = session
        self._options = options
        self._on_bytes = on_bytes
        self._on_rate_limited = on_rate_limited
        self.bytes_received = 0

    async def fetch(self, file: base.RemoteFile, staged: staging.StagedFile) -> None:
        """Download every missing range of ``file`` into ``staged`` (its sidecar is kept up
        to date). Raises the part's error once its retries are spent."""
        options = self._options
        size = planning.part_size(
            file.size,
            threshold=options.multipart_threshold,
            concurrency=options.multipart_concurrency,
        )
        parts = ranges.split(staged.missing(), part_size=size)
        try:
            if len(parts) <= 1:
                for start, end in parts:
                    await self._part(file, staged, start, end)
                return
            slots = asyncio.Semaphore(options.multipart_concurrency)

            async def run(start: int, end: int) -> None:
                async with slots:
                    await self._part(file, staged, start, end)

            async with asyncio.TaskGroup() as group:
                for start, end in parts:
                    group.create_task(run(start, end))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        finally:
            with contextlib.suppress(OSError):
                await asyncio.shield(staged.checkpoint(force=True))

    async def _part(
        self, file: base.RemoteFile, staged: staging.StagedFile, start: int, end: int
    ) -> None:
        cursor = _Cursor(start)
        failures = 0
        while cursor.position < end:
            before = cursor.position
            try:
                await self._attempt(file, staged, cursor, end)
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

    def _delay(self, exc: errors.RetryableError, failures: int) -> float:
        options = self._options
        if exc.retry_after is not None:
            wait = min(exc.retry_after, options.retry_after_cap)
            if isinstance(exc, errors.RateLimitedError) and self._on_rate_limited:
                self._on_rate_limited(wait)
            return wait + random.uniform(0, options.backoff_base)
        ceiling = min(options.backoff_cap, options.backoff_base * 2 ** (failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    @contextlib.asynccontextmanager
    async def _open(
        self, request: base.HTTPRequest, name: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET ``request``, following redirects by hand: secret headers only reach
        ``request.auth_hosts`` (default: the request's own host), never a downgrade to http."""
        url = request.url
        allowed = request.auth_hosts or frozenset({_host(url)})
        headers = dict(request.headers)
        ca = self._options.egress.ca
        for _ in range(self._options.max_redirects + 1):
            route = clients.data_route(self._options.egress, url)
            try:
                response = await self._session.get(
                    url, headers=headers, allow_redirects=False, proxy=route.proxy, ssl=route.ssl
                )
            except aiohttp.ClientConnectorCertificateError as exc:
                raise clients.CertificateError(
                    trust.certificate_message(_host(url), str(exc.certificate_error), ca)
                ) from None
            except aiohttp.ClientHttpProxyError as exc:
                raise clients.proxy_error(exc.status, route.proxy, _host(url)) from None
            if response.status not in _REDIRECTS:
                try:
                    yield response
                finally:
                    response.release()
                return
            location = response.headers.get("Location", "")
            response.release()
            if not location:
                raise errors.ServerError(f"redirect without Location fetching {name}")
            target = urljoin(url, location)
            if _host(target) not in allowed or (
                urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https"
            ):
                headers = {k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}
            url = target
        raise errors.ServerError(f"too many redirects fetching {name}")

    async def _attempt(
        self, file: base.RemoteFile, staged: staging.StagedFile, cursor: _Cursor, end: int
    ) -> None:
        loop = asyncio.get_running_loop()
        stall = self._options.stall_timeout
        request = await self._backend.request(file, start=cursor.position, end=end)
        try:
            async with asyncio.timeout(stall) as deadline:
                async with self._open(request, file.path) as response:
                    self._check(file, response, cursor.position, end)
                    deadline.reschedule(loop.time() + stall)
                    await self._stream(file, staged, response, cursor, end, deadline)
        except TimeoutError:
            raise errors.StalledError(
                f"no data for {stall:g}s fetching {file.path} at byte {cursor.position}"
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise errors.ServerError(
                f"body cut short fetching {file.path} at byte {cursor.position}: {exc}"
            ) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise errors.NetworkError(
                f"connection failed fetching {file.path}: {type(exc).__name__}: {exc}"
            ) from None
        if cursor.position < end:
            raise errors.ServerError(
                f"short body fetching {file.path}: ended at byte {cursor.position}, expected {end}"
            )

    def _check(
        self, file: base.RemoteFile, response: aiohttp.ClientResponse, start: int, end: int
    ) -> None:
        status = response.status
        if status not in (200, 206):
            raise status_error(status, response.headers, file.path)
        self._backend.check_response(file, response.headers)
        if status == 200:
            raise errors.ServerError(
                f"server ignored the Range request for {file.path} (answered 200, not 206)"
            )
        match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", "").strip())
        if (
            match is None
            or int(match.group(1)) != start
            or int(match.group(2)) != end - 1
            or (match.group(3) != "*" and int(match.group(3)) != file.size)
        ):
            raise errors.ServerError(
                f"wrong Content-Range {response.headers.get('Content-Range')!r} for "
                f"{file.path}: asked for bytes {start}-{end - 1}/{file.size}"
            )

    async def _stream(
        self,
        file: base.RemoteFile,
        staged: staging.StagedFile,
        response: aiohttp.ClientResponse,
        cursor: _Cursor,
        end: int,
        deadline: asyncio.Timeout,
    ) -> None:
        loop = asyncio.get_running_loop()
        stall = self._options.stall_timeout
        write_size = self._options.write_size
        content = response.content
        writer = _Writer()
        chunks: list[bytes] = []
        pending = 0
        written = rescheduled = loop.time()
        try:
            writer.fd = await _open_for_write(staged.temp_path)
            try:
                while True:
                    room = end - cursor.position - pending
                    if room <= 0:
                        break
                    # readchunk hands over the received buffers as they are (no joining copy).
                    chunk, end_of_http_chunk = await content.readchunk()
                    if not chunk:
                        if end_of_http_chunk:
                            continue
                        break
                    if len(chunk) > room:
                        chunk = chunk[:room]
                    now = loop.time()
                    if now - rescheduled > _RESCHEDULE_SECONDS:
                        deadline.reschedule(now + stall)
                        rescheduled = now
                    chunks.append(chunk)
                    pending += len(chunk)
                    self.bytes_received += len(chunk)
                    if self._on_bytes is not None:
                        self._on_bytes(len(chunk))
                    if pending >= write_size or now - written > _FLUSH_SECONDS:
                        await writer.write(staged, cursor, chunks, pending)
                        chunks, pending = [], 0
                        written = rescheduled = loop.time()
                        deadline.reschedule(written + stall)
                        await staged.checkpoint()
            except (aiohttp.ClientError, ConnectionError, TimeoutError):
                # Bytes that arrived before the failure are good: keep them for the retry.
                if chunks:
                    await writer.write(staged, cursor, chunks, pending)
                raise
            if chunks:
                await writer.write(staged, cursor, chunks, pending)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise errors.NoSpaceError(
                    f"no space left on device writing {file.path} ({staged.temp_path.parent})"
                ) from None
            raise
        finally:
            writer.close()


#: pwritev takes at most IOV_MAX (1024 on Linux) buffers; more small chunks are joined first.
_MAX_BUFFERS = 512


def _write_at(fd: int, chunks: list[bytes], offset: int, size: int) -> None:
    """Write ``chunks`` (``size`` bytes) at ``offset`` of ``fd`` in one pwritev (blocking)."""
    if len(chunks) > _MAX_BUFFERS:
        chunks = [b"".join(chunks)]
    done = os.pwritev(fd, chunks, offset)
    if done < size:  # a short write (rare on regular files): write the rest plainly
        view = memoryview(b"".join(chunks))
        while done < size:
            count = os.pwrite(fd, view[done:], offset + done)
            if count <= 0:
                raise OSError(errno.EIO, f"write returned {count}")
            done += count


class _Writer:
    """One part's file descriptor and its write in flight (at most one). The descriptor is
    closed only once no write uses it: a cancelled part never closes a descriptor that a
    worker thread is still writing through (its number could be reused by another file)."""

    __slots__ = ("fd", "inflight")

    def __init__(self) -> None:
        self.fd: int | None = None
        self.inflight: asyncio.Future[None] | None = None

    async def write(
        self, staged: staging.StagedFile, cursor: _Cursor, chunks: list[bytes], size: int
    ) -> None:
        if self.fd is None:
            raise RuntimeError("write before open")
        loop = asyncio.get_running_loop()
        start = cursor.position
        self.inflight = loop.run_in_executor(None, _write_at, self.fd, chunks, start, size)
        await self.inflight
        staged.mark(cursor.position, cursor.position + size)
        cursor.position += size

    def close(self) -> None:
        fd, inflight = self.fd, self.inflight
        self.fd = None
        if fd is None:
            return
        if inflight is None or inflight.done():
            os.close(fd)
        else:
            inflight.add_done_callback(lambda _: os.close(fd))


async def _open_for_write(path: pathlib.Path) -> int:
    """A write-only descriptor on ``path`` (opened in a thread). A cancellation that lands
    while the worker thread is opening it still closes the descriptor once it is open."""
    loop = asyncio.get_running_loop()
    opening = loop.run_in_executor(None, os.open, path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:

        def close(done: asyncio.Future[int]) -> None:
            if not done.cancelled() and done.exception() is None:
                os.close(done.result())

        opening.add_done_callback(close)
        raise


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
