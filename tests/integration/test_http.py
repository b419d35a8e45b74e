"""The HTTP server (model_agent.http + model_agent.health) scraped with a real aiohttp client.

Covers: /metrics after recording through the Metrics API carries every CONTRACT name with its
labels and non-zero values; /metrics on a separate --metrics-port and not there when the ports
are equal; /healthz 200 for a writable models root and 503 when the root is missing, is a file,
or is a directory even root cannot write to; /readyz 200 when the injected API check reaches a
live server and 503 when it talks to a closed port, and when the temp dir is not ready; /livez
200 while the loop is responsive, 503 right after a real blocking call in the loop, 200 again
once the lag window has passed, and 503 when a worker task crashed; a check that raises or hangs
answers 503 naming the error class or the timeout; stop() releases the ports; the standard
agent wiring (health.agent_checks) answers 200 on all three when healthy and fails readiness
alone when the injected watch check fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import prometheus_client as prom
import pytest
from aiohttp import web
from prometheus_client import parser

from model_agent import health, http, metrics

MODEL = metrics.ModelLabels("BaseModel", "team-a", "llama")
CLUSTER = metrics.ModelLabels("ClusterBaseModel", "", "mistral")
MODEL_LABELS = ("model_type", "namespace", "name")

#: CONTRACT.md names → the label names each sample must carry (besides histogram ``le``).
CONTRACT = {
    "model_agent_downloads_success_total": MODEL_LABELS,
    "model_agent_downloads_failed_total": MODEL_LABELS,
    "model_agent_verifications_total": (*MODEL_LABELS, "result"),
    "model_agent_md5_checksum_failed_total": MODEL_LABELS,
    "model_agent_rate_limit_total": MODEL_LABELS,
    "model_agent_download_duration_seconds_count": MODEL_LABELS,
    "model_agent_verification_duration_seconds_count": MODEL_LABELS,
    "model_agent_download_bytes_total": MODEL_LABELS,
    "model_agent_rate_limit_wait_seconds_count": MODEL_LABELS,
    "model_agent_active_workers": (),
    "model_agent_task_queue_depth": (),
    "model_agent_configmap_operations_total": ("operation", "result"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that is bound but not listening: connecting to it is refused, with no race."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def serving(
    checks: health.HealthChecks,
    *,
    registry: prom.CollectorRegistry | None = None,
    metrics_port: int | None = None,
    check_timeout: float = 5.0,
) -> AsyncIterator[tuple[http.HealthServer, str]]:
    server = http.HealthServer(
        port=0,
        metrics_port=0 if metrics_port is None else metrics_port,
        registry=registry or prom.CollectorRegistry(),
        checks=checks,
        host="127.0.0.1",
        check_timeout=check_timeout,
    )
    await server.start()
    try:
        yield server, f"http://127.0.0.1:{server.ports[0]}"
    finally:
        await server.stop()


async def get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        return response.status, await response.text()


async def poll_status(url: str, expected: int, deadline: float = 10.0) -> str:
    end = time.monotonic() + deadline
    while True:
        status, body = await get(url)
        if status == expected:
            return body
        if time.monotonic() > end:
            raise AssertionError(f"{url} answered {status} ({body.strip()}), not {expected}")
        await asyncio.sleep(0.02)


@pytest.fixture
def unwritable_dir(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A real directory in which creating a file fails, even for root: an immutable
    directory (chattr +i) where the filesystem supports it, else sysfs, else (non-root) a
    directory without write permission."""
    target = tmp_path / "immutable"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o500)
        yield target
        target.chmod(0o700)
        return
    made = subprocess.run(["chattr", "+i", str(target)], capture_output=True, check=False)
    if made.returncode == 0:
        try:
            yield target
        finally:
            subprocess.run(["chattr", "-i", str(target)], check=True)
    else:
        yield pathlib.Path("/sys/kernel")


# --- /metrics -------------------------------------------------------------------------------


async def test_metrics_scrape_finds_every_contract_name_with_labels_and_nonzero_values() -> None:
    m = metrics.Metrics(prom.CollectorRegistry())
    for model in (MODEL, CLUSTER):
        m.received(model, 4096)
        m.verified(model, result="success", seconds=0.2)
        m.verified(model, result="failure", seconds=0.1)
        m.rate_limited(model, wait_seconds=1.5)
        m.download_failed(model, reason="Transient")
        m.download_succeeded(model, seconds=30.0, nbytes=4096)
    m.configmap_operation("patch", "success")
    m.active_workers.set(1)
    m.task_queue_depth.set(3)
    async with serving(health.HealthChecks(), registry=m.registry) as (_, base):
        status, text = await get(f"{base}/metrics")
    assert status == 200
    samples = [s for family in parser.text_string_to_metric_families(text) for s in family.samples]
    for name, labels in CONTRACT.items():
        found = [s for s in samples if s.name == name]
        assert found, f"{name} missing from /metrics"
        for sample in found:
            assert set(labels) <= set(sample.labels), (name, sample.labels)
            assert sample.value > 0, (name, sample.labels)
    namespaces = {
        s.labels["namespace"] for s in samples if s.name == "model_agent_downloads_success_total"
    }
    assert namespaces == {"team-a", ""}
    assert any(s.name == "process_resident_memory_bytes" for s in samples)


async def test_metrics_are_also_served_on_a_different_metrics_port() -> None:
    registry = prom.CollectorRegistry()
    metrics.Metrics(registry).task_queue_depth.set(9)
    async with serving(health.HealthChecks(), registry=registry, metrics_port=free_port()) as (
        server,
        base,
    ):
        assert len(server.ports) == 2
        metrics_base = f"http://127.0.0.1:{server.ports[1]}"
        status, text = await get(f"{metrics_base}/metrics")
        assert status == 200 and "model_agent_task_queue_depth 9.0" in text
        assert (await get(f"{metrics_base}/healthz"))[0] == 404
        assert (await get(f"{base}/metrics"))[0] == 200


async def test_one_listener_when_the_metrics_port_equals_the_port() -> None:
    port = free_port()
    server = http.HealthServer(
        port=port,
        metrics_port=port,
        registry=prom.CollectorRegistry(),
        checks=health.HealthChecks(),
        host="127.0.0.1",
    )
    await server.start()
    try:
        assert server.ports == [port]
        assert (await get(f"http://127.0.0.1:{port}/metrics"))[0] == 200
    finally:
        await server.stop()


async def test_stop_releases_the_ports() -> None:
    async with serving(health.HealthChecks()) as (server, _):
        port = server.ports[0]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # would raise EADDRINUSE if still listening


# --- /healthz -------------------------------------------------------------------------------


async def test_healthz_is_200_when_the_models_root_is_a_writable_directory(
    tmp_path: pathlib.Path,
) -> None:
    checks = health.HealthChecks(healthz=health.directory_writable(tmp_path))
    async with serving(checks) as (_, base):
        status, body = await get(f"{base}/healthz")
    assert (status, body) == (200, f"ok: {tmp_path} writable\n")
    assert os.listdir(tmp_path) == []  # the probe file is cleaned up


@pytest.mark.parametrize(
    ("case", "expected"),
    [("missing", "does not exist"), ("file", "is not a directory"), ("unwritable", "not writable")],
)
async def test_healthz_is_503_when_the_models_root_is_not_usable(
    case: str, expected: str, tmp_path: pathlib.Path, unwritable_dir: pathlib.Path
) -> None:
    root = {
        "missing": tmp_path / "nope",
        "file": tmp_path / "a-file",
        "unwritable": unwritable_dir,
    }[case]
    if case == "file":
        root.write_text("x")
    checks = health.HealthChecks(healthz=health.directory_writable(root))
    async with serving(checks) as (_, base):
        status, body = await get(f"{base}/healthz")
    assert status == 503
    assert body.startswith("failed: ") and expected in body


# --- /readyz --------------------------------------------------------------------------------


async def fake_api_server() -> tuple[web.AppRunner, str]:
    app = web.Application()

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "33"})

    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def api_probe(url: str) -> Callable[[], Awaitable[object]]:
    async def probe() -> object:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/version") as response:
            response.raise_for_status()
            return await response.json()

    return probe


async def test_readyz_is_200_when_the_api_answers_and_directories_are_ready(
    tmp_path: pathlib.Path,
) -> None:
    runner, url = await fake_api_server()
    (tmp_path / "tmp").mkdir()
    try:
        ready = health.all_of(
            health.reachable("API server", api_probe(url)),
            health.directory_writable(tmp_path),
            health.directory_writable(tmp_path / "tmp"),
        )
        async with serving(health.HealthChecks(readyz=ready)) as (_, base):
            status, body = await get(f"{base}/readyz")
    finally:
        await runner.cleanup()
    assert status == 200
    assert "API server reachable" in body and f"{tmp_path / 'tmp'} writable" in body


async def test_readyz_is_503_when_the_api_server_port_is_closed(tmp_path: pathlib.Path) -> None:
    with closed_port() as port:
        ready = health.all_of(
            health.reachable("API server", api_probe(f"http://127.0.0.1:{port}")),
            health.directory_writable(tmp_path),
        )
        async with serving(health.HealthChecks(readyz=ready)) as (_, base):
            status, body = await get(f"{base}/readyz")
    assert status == 503
    assert "API server unreachable (ClientConnectorError)" in body


async def test_readyz_is_503_when_the_temp_dir_is_missing(tmp_path: pathlib.Path) -> None:
    ready = health.all_of(
        health.directory_writable(tmp_path), health.directory_writable(tmp_path / "tmp")
    )
    async with serving(health.HealthChecks(readyz=ready)) as (_, base):
        status, body = await get(f"{base}/readyz")
    assert status == 503 and "tmp does not exist" in body


# --- /livez ---------------------------------------------------------------------------------


async def test_livez_fails_after_a_real_blocking_call_and_recovers() -> None:
    monitor = health.LoopLagMonitor(interval=0.02, threshold=0.3, window=1.0)
    monitor.start()
    try:
        async with serving(health.HealthChecks(livez=monitor.check)) as (_, base):
            await poll_status(f"{base}/livez", 200)
            time.sleep(1.0)  # noqa: ASYNC251  (the point: block the event loop for real)
            status, body = await get(f"{base}/livez")
            assert status == 503, body
            assert "event loop" in body
            await poll_status(f"{base}/livez", 200)
    finally:
        await monitor.stop()


async def test_livez_is_503_when_the_lag_monitor_is_not_running() -> None:
    monitor = health.LoopLagMonitor(interval=0.02, threshold=0.3, window=1.0)
    async with serving(health.HealthChecks(livez=monitor.check)) as (_, base):
        status, body = await get(f"{base}/livez")
    assert status == 503 and "not running" in body


async def test_livez_is_503_when_a_worker_task_crashed() -> None:
    async def worker() -> None:
        await asyncio.Event().wait()

    async def crashing() -> None:
        raise RuntimeError("boom")

    tasks = [asyncio.create_task(worker(), name="worker-0")]
    alive = health.workers_alive(lambda: tasks, minimum=1)
    try:
        async with serving(health.HealthChecks(livez=alive)) as (_, base):
            assert await get(f"{base}/livez") == (200, "ok: 1 workers alive\n")
            tasks.append(asyncio.create_task(crashing(), name="worker-1"))
            body = await poll_status(f"{base}/livez", 503)
            assert "worker worker-1 crashed (RuntimeError)" in body
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_check_that_raises_or_hangs_answers_503() -> None:
    async def raising() -> tuple[bool, str]:
        raise ValueError("secret-ish detail that must not be shown")

    async def hanging() -> tuple[bool, str]:
        await asyncio.Event().wait()
        return True, "never"

    checks = health.HealthChecks(healthz=raising, readyz=hanging)
    async with serving(checks, check_timeout=0.2) as (_, base):
        assert await get(f"{base}/healthz") == (503, "failed: healthz check raised ValueError\n")
        status, body = await get(f"{base}/readyz")
    assert status == 503 and "did not finish within 0.2s" in body


async def test_agent_checks_wire_all_three_endpoints(tmp_path: pathlib.Path) -> None:
    watching = [True]

    async def watches() -> tuple[bool, str]:
        return (True, "watches open") if watching[0] else (False, "basemodels watch closed")

    async def worker() -> None:
        await asyncio.Event().wait()

    monitor = health.LoopLagMonitor(interval=0.02, threshold=1.0, window=2.0)
    monitor.start()
    tasks = [asyncio.create_task(worker(), name="worker-0")]
    checks = health.agent_checks(
        models_root=tmp_path,
        temp_dir=tmp_path,
        loop=monitor,
        workers=health.workers_alive(lambda: tasks, minimum=1),
        watches=watches,
    )
    try:
        async with serving(checks) as (_, base):
            for path in ("healthz", "readyz", "livez"):
                await poll_status(f"{base}/{path}", 200)
            watching[0] = False
            status, body = await get(f"{base}/readyz")
            assert status == 503 and "basemodels watch closed" in body
            assert (await get(f"{base}/healthz"))[0] == 200
            assert (await get(f"{base}/livez"))[0] == 200
    finally:
        await monitor.stop()
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
