"""One ranged GET, run in a transfer thread: received, checked, written and hashed there.

``receive`` sends the request through the proxy the egress policy names for its URL
(following redirects by hand: secret headers only reach the hosts the backend named, never a
downgrade to http), checks the answer (206 with the exact
``Content-Range`` asked for; a 200 to a Range request, a wrong range or a short body fail the
attempt, never land as data), then writes the buffers aiohttp hands over as they are
(``readchunk``: no joining copy) at their offset with one ``pwritev`` per ``write_size`` batch
through its own descriptor, offers each batch to the file's inline digest, and reports it
written. No byte for ``stall_timeout`` seconds is a retryable ``StalledError``.

Everything here runs on a transfer thread's event loop (``loops.Pool``): blocking writes and
hashing block that thread only. ``Cursor.position`` is the next byte to receive; the caller
reads it once the attempt has ended.

Owns one attempt at one byte range; must not retry, verify or decide what to download.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import pathlib
import re
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp

from model_agent import errors
from model_agent.download import digest as digests
from model_agent.egress import clients, policy, trust
from model_agent.storage import base

__all__ = ["Cursor", "Limits", "Target", "receive", "status_error"]

_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: A slow transfer still writes (and so records for resume) at least this often.
_FLUSH_SECONDS = 0.25
#: Moving the stall deadline costs a timer; once per this many seconds is precise enough.
_RESCHEDULE_SECONDS = 0.05
_SECRET_HEADERS = ("authorization", "cookie", "proxy-authorization")
#: pwritev takes at most IOV_MAX (1024 on Linux) buffers; more small chunks are joined first.
_MAX_BUFFERS = 512


class UnexpectedStatusError(errors.PermanentError):
    """The storage answered a 4xx status that retrying cannot fix."""

    reason = "HTTPError"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-attempt settings: the stall timeout, the write batch, redirects followed, and the
    egress policy (proxy per URL, CA bundle)."""

    stall_timeout: float
    write_size: int
    max_redirects: int
    egress: policy.Egress = dataclasses.field(default_factory=policy.Egress)
    #: Peer transfers: no proxy, and the peers' own TLS context (``peers.client``).
    direct: bool = False
    ssl_context: ssl.SSLContext | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """The file a range lands in: its name in the model, size, temp path, inline digest,
    the backend's header check and where written batches are reported (thread-safe)."""

    name: str
    size: int
    path: pathlib.Path
    check: Callable[[Mapping[str, str]], None]
    written: Callable[[int, int], None]
    digest: digests.InlineDigest | None = None


class Cursor:
    __slots__ = ("position",)

    def __init__(self, position: int) -> None:
        self.position = position


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


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


@contextlib.asynccontextmanager
async def _open(
    session: aiohttp.ClientSession, request: base.HTTPRequest, name: str, limits: Limits
) -> AsyncIterator[aiohttp.ClientResponse]:
    url = request.url
    allowed = request.auth_hosts or frozenset({_host(url)})
    headers = dict(request.headers)
    ca = limits.egress.ca
    for _ in range(limits.max_redirects + 1):
        route = clients.data_route(limits.egress, url)
        proxy = None if limits.direct else route.proxy
        context = limits.ssl_context or route.ssl
        try:
            response = await session.get(
                url, headers=headers, allow_redirects=False, proxy=proxy, ssl=context
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


def _check(target: Target, response: aiohttp.ClientResponse, start: int, end: int) -> None:
    status = response.status
    if status not in (200, 206):
        raise status_error(status, response.headers, target.name)
    target.check(response.headers)
    if status == 200:
        raise errors.ServerError(
            f"server ignored the Range request for {target.name} (answered 200, not 206)"
        )
    match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", "").strip())
    if (
        match is None
        or int(match.group(1)) != start
        or int(match.group(2)) != end - 1
        or (match.group(3) != "*" and int(match.group(3)) != target.size)
    ):
        raise errors.ServerError(
            f"wrong Content-Range {response.headers.get('Content-Range')!r} for "
            f"{target.name}: asked for bytes {start}-{end - 1}/{target.size}"
        )


async def receive(
    session: aiohttp.ClientSession,
    request: base.HTTPRequest,
    target: Target,
    cursor: Cursor,
    end: int,
    limits: Limits,
) -> None:
    """Fetch ``[cursor.position, end)`` of ``target`` once; raise the attempt's error."""
    loop = asyncio.get_running_loop()
    stall = limits.stall_timeout
    try:
        async with asyncio.timeout(stall) as deadline:
            async with _open(session, request, target.name, limits) as response:
                _check(target, response, cursor.position, end)
                deadline.reschedule(loop.time() + stall)
                await _stream(target, response, cursor, end, deadline, limits)
    except TimeoutError:
        raise errors.StalledError(
            f"no data for {stall:g}s fetching {target.name} at byte {cursor.position}"
        ) from None
    except aiohttp.ClientPayloadError as exc:
        raise errors.ServerError(
            f"body cut short fetching {target.name} at byte {cursor.position}: {exc}"
        ) from None
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise errors.NetworkError(
            f"connection failed fetching {target.name}: {type(exc).__name__}: {exc}"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise errors.NoSpaceError(
                f"no space left on device writing {target.name} ({target.path.parent})"
            ) from None
        raise
    if cursor.position < end:
        raise errors.ServerError(
            f"short body fetching {target.name}: ended at byte {cursor.position}, expected {end}"
        )


async def _stream(
    target: Target,
    response: aiohttp.ClientResponse,
    cursor: Cursor,
    end: int,
    deadline: asyncio.Timeout,
    limits: Limits,
) -> None:
    loop = asyncio.get_running_loop()
    stall, write_size = limits.stall_timeout, limits.write_size
    content = response.content
    chunks: list[bytes] = []
    pending = 0
    written = rescheduled = loop.time()
    fd = os.open(target.path, os.O_WRONLY | os.O_CLOEXEC)
    try:
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
                if pending >= write_size or now - written > _FLUSH_SECONDS:
                    _write(target, fd, cursor, chunks, pending)
                    chunks, pending = [], 0
                    written = rescheduled = loop.time()
                    deadline.reschedule(written + stall)
        except (aiohttp.ClientError, ConnectionError, TimeoutError, asyncio.CancelledError):
            # Bytes that arrived before the failure are good: keep them for the retry.
            if chunks:
                _write(target, fd, cursor, chunks, pending)
            raise
        if chunks:
            _write(target, fd, cursor, chunks, pending)
    finally:
        os.close(fd)


def _write(target: Target, fd: int, cursor: Cursor, chunks: list[bytes], size: int) -> None:
    """Write ``chunks`` at the cursor (blocking this transfer thread), hash them inline when
    they continue the digest's prefix, then report them written and move the cursor."""
    start = cursor.position
    _write_at(fd, chunks, start, size)
    if target.digest is not None:
        target.digest.offer(start, chunks, size)
    cursor.position = start + size
    target.written(start, size)


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
