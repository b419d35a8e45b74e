"""Download engine against a small aiohttp file server on 127.0.0.1 (web.FileResponse serves
Range), with a second host (127.0.0.2) standing in for a CDN.

Aspects: a large file is fetched in parallel ranged parts and matches byte for byte; only the
missing ranges of a staged file are requested (resume); Authorization reaches the origin host
but is dropped on a redirect to another host; a wrong Content-Range, a 200 answer to a Range
request and a short body fail the part and are retried; a stall is a retryable StalledError;
429 honours Retry-After; 404 is permanent at once; cancelling a fetch leaves no task running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import pathlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Mapping

import pytest
from aiohttp import web

from model_agent import checksums, errors, verify
from model_agent.download import connections, engine, loops, staging
from model_agent.storage import base

SIZE = 300_000


class Server:
    """Serves ``/data`` (FileResponse) on 127.0.0.1 and the CDN copy on 127.0.0.2; each
    request's Range and Authorization are logged; ``misbehave`` names what goes wrong next."""

    def __init__(self, data_path: pathlib.Path) -> None:
        self.data_path = data_path
        self.log: list[tuple[str, str | None, str | None]] = []
        self.misbehave: list[str] = []
        self.origin = self.cdn = ""
        self._runners: list[web.AppRunner] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.log.append(
            (request.host, request.headers.get("Range"), request.headers.get("Authorization"))
        )
        fault = self.misbehave.pop(0) if self.misbehave else None
        if request.path == "/redirect":
            raise web.HTTPFound(f"{self.cdn}/data")
        if fault == "404":
            return web.Response(status=404)
        if fault == "429":
            return web.Response(status=429, headers={"Retry-After": "0.2"})
        if fault == "500":
            return web.Response(status=500)
        if fault == "ignore-range":
            return web.Response(status=200, body=self.data_path.read_bytes())
        if fault == "wrong-range":
            return web.Response(
                status=206, body=b"x" * 10, headers={"Content-Range": f"bytes 0-9/{SIZE}"}
            )
        if fault in ("short", "stall"):
            start, end = _parse(request.headers["Range"])
            response = web.StreamResponse(
                status=206,
                headers={
                    "Content-Range": f"bytes {start}-{end - 1}/{SIZE}",
                    "Content-Length": str(end - start),
                },
            )
            await response.prepare(request)
            data = self.data_path.read_bytes()[start:end]
            await response.write(data[: len(data) // 2])
            if fault == "stall":
                await asyncio.sleep(5)
            assert request.transport is not None
            request.transport.close()
            return response
        return web.FileResponse(self.data_path)

    async def start(self) -> None:
        for host in ("127.0.0.1", "127.0.0.2"):
            app = web.Application()
            app.router.add_get("/{tail:.*}", self.handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await runner.setup()
            sock = socket.socket()
            sock.bind((host, 0))
            await web.SockSite(runner, sock).start()
            self._runners.append(runner)
            url = f"http://{host}:{sock.getsockname()[1]}"
            if host == "127.0.0.1":
                self.origin = url
            else:
                self.cdn = url

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


def _parse(header: str) -> tuple[int, int]:
    first, last = header.removeprefix("bytes=").split("-")
    return int(first), int(last) + 1


class Backend:
    """A minimal ``base.Backend`` over the test server."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url, self.token = url, token

    async def pin(self) -> base.Plan:
        raise NotImplementedError

    async def request(self, file: base.RemoteFile, *, start: int, end: int) -> base.HTTPRequest:
        headers = {"Range": base.range_header(start, end)}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return base.HTTPRequest(url=self.url, headers=headers)

    def check_response(self, file: base.RemoteFile, headers: Mapping[str, str]) -> None:
        return None

    async def close(self) -> None:
        return None


def prefill(path: pathlib.Path, content: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.write(content)


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if predicate():
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def data(tmp_path: pathlib.Path) -> bytes:
    content = os.urandom(SIZE)
    (tmp_path / "source.bin").write_bytes(content)
    return content


@pytest.fixture
async def server(tmp_path: pathlib.Path, data: bytes) -> AsyncIterator[Server]:
    srv = Server(tmp_path / "source.bin")
    await srv.start()
    yield srv
    await srv.stop()


FILE = base.RemoteFile(path="model.bin", size=SIZE, identity="id-1", key="model.bin")
FAST = engine.Options(
    multipart_concurrency=4,
    multipart_threshold=75_000,
    stall_timeout=0.5,
    part_retries=3,
    write_size=32 * 1024,
    backoff_base=0.01,
)


async def fetch(
    tmp_path: pathlib.Path,
    backend: Backend,
    options: engine.Options = FAST,
    *,
    threads: int = 2,
    expected: checksums.Checksum | None = None,
) -> tuple[staging.StagedFile, engine.Engine]:
    stage = staging.Staging(tmp_path / "dest")
    (tmp_path / "dest").mkdir(exist_ok=True)
    async with stage:
        staged = await stage.stage(path=FILE.path, size=FILE.size, identity=FILE.identity)
        session = connections.SessionOptions(connections=8)
        async with loops.Pool(threads=threads, options=session) as pool:
            fetcher = engine.Engine(backend, pool, options)
            verifier = verify.Verifier()
            digest = verifier.digest_for(staged, expected)
            hashing = asyncio.create_task(verifier.follow(staged, digest))
            try:
                await fetcher.fetch(FILE, staged, digest=digest)
                verifier.check(await hashing, name=FILE.path, expected=expected)
            finally:
                hashing.cancel()
    fetcher.digest = digest  # type: ignore[attr-defined]
    return staged, fetcher


async def test_large_file_arrives_in_parallel_ranged_parts_byte_for_byte(
    tmp_path: pathlib.Path, server: Server, data: bytes
) -> None:
    staged, fetcher = await fetch(tmp_path, Backend(f"{server.origin}/data"))
    assert staged.temp_path.read_bytes() == data
    assert staged.done and fetcher.bytes_received == SIZE
    assert sorted(r for _, r, _ in server.log) == [
        "bytes=0-74999",
        "bytes=150000-224999",
        "bytes=225000-299999",
        "bytes=75000-149999",
    ]


async def test_only_missing_ranges_are_requested_after_a_restart(
    tmp_path: pathlib.Path, server: Server, data: bytes
) -> None:
    (tmp_path / "dest").mkdir()
    async with staging.Staging(tmp_path / "dest") as stage:
        staged = await stage.stage(path=FILE.path, size=SIZE, identity="id-1")
        prefill(staged.temp_path, data[:200_000])
        staged.mark(0, 200_000)
        await staged.checkpoint(force=True)
    staged, fetcher = await fetch(tmp_path, Backend(f"{server.origin}/data"))
    assert staged.temp_path.read_bytes() == data
    assert fetcher.bytes_received == 100_000
    assert all(not r.startswith("bytes=0-") for _, r, _ in server.log if r)


async def test_changed_identity_starts_the_file_over(tmp_path: pathlib.Path) -> None:
    (tmp_path / "dest").mkdir()
    async with staging.Staging(tmp_path / "dest") as stage:
        staged = await stage.stage(path="a", size=10, identity="old")
        staged.mark(0, 5)
        await staged.checkpoint(force=True)
        assert (await stage.stage(path="a", size=10, identity="old")).completed == ((0, 5),)
        assert (await stage.stage(path="a", size=10, identity="new")).completed == ()


async def test_authorization_is_dropped_on_a_redirect_to_another_host(
    tmp_path: pathlib.Path, server: Server, data: bytes
) -> None:
    staged, _ = await fetch(tmp_path, Backend(f"{server.origin}/redirect", token="secret"))
    assert staged.temp_path.read_bytes() == data
    origin = [auth for host, _, auth in server.log if host.startswith("127.0.0.1")]
    cdn = [auth for host, _, auth in server.log if host.startswith("127.0.0.2")]
    assert origin and all(a == "Bearer secret" for a in origin)
    assert cdn and all(a is None for a in cdn)


@pytest.mark.parametrize("fault", ["500", "429", "ignore-range", "wrong-range", "short", "stall"])
async def test_misbehaving_answers_fail_the_part_and_are_retried(
    tmp_path: pathlib.Path, server: Server, data: bytes, fault: str
) -> None:
    server.misbehave = [fault]
    staged, _ = await fetch(tmp_path, Backend(f"{server.origin}/data"))
    assert staged.temp_path.read_bytes() == data
    assert len(server.log) == 5  # four parts and one retry


async def test_a_server_that_keeps_failing_exhausts_the_part_retries(
    tmp_path: pathlib.Path, server: Server
) -> None:
    server.misbehave = ["ignore-range"] * 20
    with pytest.raises(errors.ServerError, match="ignored the Range request"):
        await fetch(tmp_path, Backend(f"{server.origin}/data"))


async def test_not_found_is_permanent_at_once(tmp_path: pathlib.Path, server: Server) -> None:
    server.misbehave = ["404"] * 4
    with pytest.raises(errors.NotFoundError, match=r"model\.bin"):
        await fetch(tmp_path, Backend(f"{server.origin}/data"))
    assert len(server.log) <= 4


async def test_stall_is_a_retryable_stalled_error(tmp_path: pathlib.Path, server: Server) -> None:
    server.misbehave = ["stall"] * 20
    options = engine.Options(
        multipart_threshold=10**9, stall_timeout=0.3, part_retries=1, backoff_base=0.01
    )
    with pytest.raises(errors.StalledError) as caught:
        await fetch(tmp_path, Backend(f"{server.origin}/data"), options)
    assert caught.value.retryable


async def test_cancelling_a_fetch_leaves_no_task_running(
    tmp_path: pathlib.Path, server: Server
) -> None:
    server.misbehave = ["stall"] * 4
    options = engine.Options(
        multipart_concurrency=4, multipart_threshold=75_000, stall_timeout=30, backoff_base=0.01
    )
    before = asyncio.all_tasks()
    task = asyncio.create_task(fetch(tmp_path, Backend(f"{server.origin}/data"), options))
    await wait_until(lambda: len(server.log) >= 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    engine_dir = str(pathlib.Path(engine.__file__).parent.parent)
    leftovers = [
        task
        for task in asyncio.all_tasks() - before
        if getattr(task.get_coro(), "cr_code", None) is not None
        and task.get_coro().cr_code.co_filename.startswith(engine_dir)  # type: ignore[union-attr]
    ]
    assert leftovers == []


async def test_cancelling_a_fetch_returns_only_after_the_transfer_threads_stopped_writing(
    tmp_path: pathlib.Path, server: Server
) -> None:
    server.misbehave = ["stall"] * 4
    options = engine.Options(
        multipart_concurrency=4, multipart_threshold=75_000, stall_timeout=30, backoff_base=0.01
    )
    task = asyncio.create_task(fetch(tmp_path, Backend(f"{server.origin}/data"), options))
    await wait_until(lambda: len(server.log) >= 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Every transfer thread is gone with its pool: nothing writes into the staging directory.
    transfer_threads = [
        t for t in threading.enumerate() if t.name.startswith("model-agent-transfer")
    ]
    assert transfer_threads == []
    part = next((tmp_path / "dest" / staging.STAGING_NAME).glob("*.part"))
    before = part.stat()
    await asyncio.sleep(0.3)
    assert part.stat().st_mtime_ns == before.st_mtime_ns


async def test_in_order_bytes_are_hashed_inline_and_only_out_of_order_bytes_are_read_back(
    tmp_path: pathlib.Path, server: Server, data: bytes
) -> None:
    expected = checksums.Checksum("sha256", hashlib.sha256(data).hexdigest())
    _staged, fetcher = await fetch(tmp_path, Backend(f"{server.origin}/data"), expected=expected)
    digest = fetcher.digest  # type: ignore[attr-defined]
    assert digest.inline_bytes + digest.read_back_bytes == SIZE
    assert digest.inline_bytes >= 75_000  # at least the first part, hashed from memory


async def test_a_single_connection_file_is_hashed_without_reading_anything_back(
    tmp_path: pathlib.Path, server: Server, data: bytes
) -> None:
    expected = checksums.Checksum("sha256", hashlib.sha256(data).hexdigest())
    options = dataclasses.replace(FAST, multipart_threshold=10**9)
    _, fetcher = await fetch(tmp_path, Backend(f"{server.origin}/data"), options, expected=expected)
    digest = fetcher.digest  # type: ignore[attr-defined]
    assert (digest.inline_bytes, digest.read_back_bytes) == (SIZE, 0)


async def test_a_wrong_digest_fails_even_when_every_byte_was_hashed_inline(
    tmp_path: pathlib.Path, server: Server
) -> None:
    wrong = checksums.Checksum("sha256", "0" * 64)
    with pytest.raises(errors.ChecksumMismatchError, match=r"model\.bin"):
        await fetch(tmp_path, Backend(f"{server.origin}/data"), expected=wrong)
