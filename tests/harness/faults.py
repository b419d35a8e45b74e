"""Fault knobs, the request log and the body streamer shared by the local hub and object store.

Owns: what a fake storage server may do wrong on purpose (corrupt bytes under truthful headers,
throttle, fail the next requests with 5xx or 429 + Retry-After, answer a Range request with the
whole body, cut a body short, stall mid-body), the per-server request log with
``bytes_served(glob)``, the shared Range parsing, and the one place that writes file bodies
(from ``bytes`` or from a file on disk, in chunks, never the whole file in memory).

Knobs may be set from any thread while the server runs in another one; counters are taken under
a lock. Must not know any storage protocol: the servers name the file and the request kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import pathlib
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Self

from aiohttp import web

__all__ = [
    "RECORD",
    "Faults",
    "Plan",
    "RequestLog",
    "RequestRecord",
    "ServerBase",
    "Source",
    "error_headers",
    "log_middleware",
    "parse_range",
    "stream_body",
]

Source = bytes | pathlib.Path
Kind = Literal["data", "meta", "api", "any"]
_KINDS = ("data", "meta", "api", "any")
_FLIP = bytes(b ^ 0xFF for b in range(256))
_CHUNK = 256 * 1024


@dataclasses.dataclass
class RequestRecord:
    """One request as the server saw it; ``status`` and ``bytes_sent`` fill in while it runs."""

    method: str
    path: str
    host: str
    range: str | None
    headers: dict[str, str]
    file: str | None = None  # the repository path or object name the request is about
    kind: str = "api"  # "data" (file bytes), "meta" (HEAD / redirect) or "api" (listings)
    status: int = 0
    bytes_sent: int = 0  # body bytes handed to the connection so far
    completed: bool = False  # the whole body was handed to the connection


RECORD = web.RequestKey("record", RequestRecord)  # the record of the request being handled


class RequestLog(list[RequestRecord]):
    """The request log: a list of records (appended when a request arrives)."""

    def bytes_served(self, path_glob: str = "*") -> int:
        """File bytes sent (data requests only) for files or URL paths matching ``path_glob``."""
        return sum(r.bytes_sent for r in list(self) if r.kind == "data" and _matches(r, path_glob))

    def matching(self, path_glob: str = "*", *, kind: str | None = None) -> list[RequestRecord]:
        return [
            r for r in list(self) if _matches(r, path_glob) and (kind is None or r.kind == kind)
        ]


def _matches(record: RequestRecord, path_glob: str) -> bool:
    names = [record.path, record.path.lstrip("/")]
    if record.file is not None:
        names.append(record.file)
    return any(fnmatch.fnmatchcase(n, path_glob) for n in names)


@dataclasses.dataclass
class _Knob:
    remaining: int | None  # None: forever
    glob: str
    kinds: tuple[str, ...]
    value: Any = None

    def applies(self, names: Sequence[str], kind: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if "any" not in self.kinds and kind not in self.kinds:
            return False
        return self.glob == "*" or any(fnmatch.fnmatchcase(n, self.glob) for n in names)

    def take(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one request will suffer, decided when it arrives (counters already taken)."""

    fail_status: int | None = None
    retry_after: float | None = None
    ignore_range: bool = False
    corrupt: bool = False
    cut_after: int | None = None
    stall_seconds: float = 0.0
    stall_after: int | None = None


def _kinds(kind: Kind | Iterable[str]) -> tuple[str, ...]:
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    for k in kinds:
        if k not in _KINDS:
            raise ValueError(f"unknown request kind {k!r}; use one of {_KINDS}")
    return kinds


class Faults:
    """The fault knobs of one server. Counted knobs apply to the next ``n`` matching requests.

    ``path_glob`` is matched (fnmatch, ``*`` crosses ``/``) against the file path inside the
    repository or the object name. ``kind`` picks the requests a knob applies to: "data"
    (requests that carry file bytes: hub resolve GET of a small file, CDN GET, object GET),
    "meta" (HEAD, and the hub's 302 redirect), "api" (revision info, tree and object listings)
    or "any".
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fail: list[_Knob] = []
        self._ignore_range: list[_Knob] = []
        self._corrupt: list[_Knob] = []
        self._cut: list[_Knob] = []
        self._stall: list[_Knob] = []
        self._rate: float | None = None
        self._next_free = 0.0  # throttle: when the shared pipe is next free (loop time)

    # -- knobs ---------------------------------------------------------------------------------
    def corrupt(self, path_glob: str = "*", *, count: int | None = None) -> None:
        """Serve every byte of matching files flipped (XOR 0xFF) under truthful headers
        (sizes, ETags, hashes of the real content). ``count``: only the next ``count`` data
        responses (None: until reset)."""
        with self._lock:
            self._corrupt.append(_Knob(count, path_glob, ("data",)))

    def throttle(self, bytes_per_second: float | None) -> None:
        """Limit all body bytes of this server together to ``bytes_per_second`` (None/0: off)."""
        with self._lock:
            self._rate = float(bytes_per_second) if bytes_per_second else None
            self._next_free = 0.0

    def fail_next(
        self,
        n: int,
        status: int = 500,
        retry_after: float | None = None,
        *,
        path_glob: str = "*",
        kind: Kind | Iterable[str] = "data",
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` (JSON body, and
        ``Retry-After`` when given: an integer when whole, else a decimal like ``0.2``)."""
        with self._lock:
            self._fail.append(_Knob(n, path_glob, _kinds(kind), (status, retry_after)))

    def ignore_range(self, n: int, *, path_glob: str = "*") -> None:
        """Answer the next ``n`` data requests that carry Range with 200 and the whole body."""
        with self._lock:
            self._ignore_range.append(_Knob(n, path_glob, ("data",)))

    def cut_short(self, n: int, after_bytes: int, *, path_glob: str = "*") -> None:
        """Send only ``after_bytes`` body bytes of the next ``n`` data responses (headers still
        promise the full length), then close the connection."""
        with self._lock:
            self._cut.append(_Knob(n, path_glob, ("data",), after_bytes))

    def stall(
        self, n: int, seconds: float, *, after_bytes: int | None = None, path_glob: str = "*"
    ) -> None:
        """Send nothing for ``seconds`` in the middle of the next ``n`` data bodies (after
        ``after_bytes`` bytes; default half the body), then carry on."""
        with self._lock:
            self._stall.append(_Knob(n, path_glob, ("data",), (seconds, after_bytes)))

    def reset(self) -> None:
        """Turn every knob off (the request log is kept)."""
        with self._lock:
            for knobs in (self._fail, self._ignore_range, self._corrupt, self._cut, self._stall):
                knobs.clear()
            self._rate = None

    # -- used by the servers -------------------------------------------------------------------
    def plan(self, names: Sequence[str], kind: str, *, has_range: bool = False) -> Plan:
        """Decide (and count) the faults for one arriving request."""
        with self._lock:
            if failing := _first(self._fail, names, kind):
                failing.take()
                status, retry_after = failing.value
                return Plan(fail_status=status, retry_after=retry_after)
            if kind != "data":
                return Plan()
            fields: dict[str, Any] = {}
            if has_range and (knob := _first(self._ignore_range, names, kind)):
                knob.take()
                fields["ignore_range"] = True
            if knob := _first(self._corrupt, names, kind):
                knob.take()
                fields["corrupt"] = True
            if knob := _first(self._cut, names, kind):
                knob.take()
                fields["cut_after"] = int(knob.value)
            if knob := _first(self._stall, names, kind):
                knob.take()
                fields["stall_seconds"], fields["stall_after"] = knob.value
            return Plan(**fields)

    async def pace(self, nbytes: int) -> None:
        """Wait so that bytes leave no faster than the throttle allows (shared by all bodies)."""
        rate = self._rate
        if rate is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next_free)
        self._next_free = start + nbytes / rate
        delay = self._next_free - now
        if delay > 0:
            await asyncio.sleep(delay)

    def chunk_size(self) -> int:
        rate = self._rate
        return _CHUNK if rate is None else max(1024, min(_CHUNK, int(rate / 20)))


def _first(knobs: list[_Knob], names: Sequence[str], kind: str) -> _Knob | None:
    return next((k for k in knobs if k.applies(names, kind)), None)


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["invalid"] | None:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range as (start, end exclusive).

    None: no usable Range (absent, malformed or several ranges: serve the whole body).
    "invalid": unsatisfiable (416).
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return "invalid"
            return (max(0, size - suffix), size)
        start = int(first)
        end = int(last) + 1 if last != "" else size
    except ValueError:
        return None
    if start < 0 or start >= size or end <= start:
        return "invalid"
    return (start, min(end, size))


def _read_chunks(source: Source, start: int, end: int, chunk: int) -> Iterable[bytes]:
    if isinstance(source, bytes):
        view = memoryview(source)
        for offset in range(start, end, chunk):
            yield bytes(view[offset : min(end, offset + chunk)])
        return
    with source.open("rb") as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            data = handle.read(min(chunk, remaining))
            if not data:
                raise OSError(f"{source} is shorter than expected")
            remaining -= len(data)
            yield data


async def serve_span(
    request: web.Request,
    *,
    span: tuple[int, int] | None,
    size: int,
    headers: Mapping[str, str],
    source: Source,
    plan: Plan,
    faults: Faults,
    record: RequestRecord,
    whole_body_headers: Sequence[str] = (),
) -> web.StreamResponse:
    """200 with the whole body, or 206 with ``Content-Range`` for ``span`` (a parsed, valid
    range); ``whole_body_headers`` (e.g. Content-MD5) are dropped from a 206, since they
    describe the whole object, not the part."""
    headers = dict(headers)
    status, start, end = 200, 0, size
    if span is not None:
        status, (start, end) = 206, span
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        for name in whole_body_headers:
            headers.pop(name, None)
    return await stream_body(
        request,
        status=status,
        headers=headers,
        source=source,
        start=start,
        end=end,
        plan=plan,
        faults=faults,
        record=record,
    )


async def stream_body(
    request: web.Request,
    *,
    status: int,
    headers: Mapping[str, str],
    source: Source,
    start: int,
    end: int,
    plan: Plan,
    faults: Faults,
    record: RequestRecord,
) -> web.StreamResponse:
    """Write ``source[start:end]`` as the body, applying the plan's faults and counting bytes.

    ``headers`` must already be truthful (Content-Length of ``end - start`` is set here).
    """
    response = web.StreamResponse(status=status, headers=dict(headers))
    response.content_length = end - start
    record.status = status
    await response.prepare(request)
    if request.method == "HEAD":
        record.completed = True
        return response
    sent = 0
    stall_at: int | None = None
    if plan.stall_seconds > 0:
        stall_at = plan.stall_after if plan.stall_after is not None else (end - start) // 2
    limit = plan.cut_after if plan.cut_after is not None else end - start
    try:
        for data in _read_chunks(source, start, end, faults.chunk_size()):
            pieces = [data]
            if stall_at is not None and sent <= stall_at < sent + len(data):
                split = stall_at - sent
                pieces = [data[:split], data[split:]]
            for index, piece in enumerate(pieces):
                if index == 1 and stall_at is not None:
                    await asyncio.sleep(plan.stall_seconds)
                    stall_at = None
                piece = piece[: max(0, limit - sent)]
                if not piece:
                    continue
                if plan.corrupt:
                    piece = piece.translate(_FLIP)
                await faults.pace(len(piece))
                # Count before writing: a client (maybe in another thread) must never see bytes
                # that the log does not show yet.
                sent += len(piece)
                record.bytes_sent = sent
                record.completed = sent == end - start
                await response.write(piece)
            if sent >= limit:
                break
        if plan.cut_after is not None and plan.cut_after < end - start:
            _drop_connection(request)
            return response
        record.completed = True
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        record.completed = False
        _drop_connection(request)
        raise
    return response


def _drop_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes what was written, then closes: the client sees a short body


def error_headers(plan: Plan) -> dict[str, str]:
    """Headers of an injected failure (Retry-After when the knob set one)."""
    headers: dict[str, str] = {}
    if plan.retry_after is not None:
        value = plan.retry_after
        headers["Retry-After"] = str(int(value)) if float(value).is_integer() else f"{value:g}"
    return headers


def log_middleware(log: RequestLog) -> Any:
    """An aiohttp middleware that records every request in ``log`` (``request["record"]``)."""

    @web.middleware
    async def middleware(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        record = RequestRecord(
            method=request.method,
            path=request.path,
            host=request.host,
            range=request.headers.get("Range"),
            headers=dict(request.headers),
        )
        request[RECORD] = record
        log.append(record)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        if record.status == 0:
            record.status = response.status
        if isinstance(response, web.Response) and request.method != "HEAD":
            body = response.body
            record.bytes_sent = len(body) if isinstance(body, bytes) else 0
            record.completed = True
        return response

    return middleware


class ServerBase:
    """Start/stop plumbing shared by the fake servers: ephemeral ports on loopback, usable
    from pytest-asyncio's loop (``await start()`` / ``await stop()``, or ``async with``) or
    from a plain thread with its own loop (``with server.serve_in_thread():``)."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.log = RequestLog()
        #: Serve HTTPS with this context (None: plain HTTP).
        self.tls: ssl.SSLContext | None = None
        self._runners: list[web.AppRunner] = []

    def bytes_served(self, path_glob: str = "*") -> int:
        """Body bytes sent so far for files (or URL paths) matching ``path_glob``."""
        return self.log.bytes_served(path_glob)

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - same shape as FakeKube.wait_for
        interval: float = 0.01,
    ) -> None:
        """Poll ``predicate`` until it holds; TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(interval)

    def wait_for_blocking(
        self, predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01
    ) -> None:
        """Like ``wait_for`` for a thread that runs no event loop (the server must be served
        in its own thread, see ``serve_in_thread``)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    def _apps(self) -> list[tuple[web.Application, str]]:
        raise NotImplementedError

    def _bound(self, ports: list[tuple[str, int]]) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        ports: list[tuple[str, int]] = []
        for app, host in self._apps():
            runner = web.AppRunner(
                app, access_log=None, shutdown_timeout=0.2, handler_cancellation=True
            )
            await runner.setup()
            self._runners.append(runner)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            site = web.SockSite(runner, sock, ssl_context=self.tls)
            await site.start()
            ports.append((host, sock.getsockname()[1]))
        self._bound(ports)

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[Self]:
        """Run the server on its own event loop in a daemon thread for the ``with`` block (for
        subprocess tests and benchmarks); knobs and the log work from the calling thread."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=type(self).__name__, daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=30)
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=30)
                loop.close()
