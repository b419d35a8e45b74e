"""Kopf's liveness endpoint serving handlers/probes.py, scraped with a real aiohttp client.

Kopf's own health reporter (the code behind ``--liveness-endpoint``) runs with the default
registry that ``import handlers`` fills, so the probes are exercised exactly as registered.
Covers: 200 with ``starting`` before the agent exists (memo without an agent); 200 with queue
depth, active workers and last success (a datetime, made JSON-safe) from ``agent.health()``,
sync or async; non-200 when the agent reports itself unhealthy; non-200 when the wired livez
check fails because a worker crashed, and because the event loop was really blocked. Through
the whole ``kopf.operator`` against the fake API server: the liveness endpoint serves the probes,
and every API request Kopf made (CRD scan, lists, watches) is granted by manifests/' RBAC.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import socket
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf
import pytest
from kopf._core.engines import probing
from kopf._core.intents import registries

import handlers  # noqa: F401  (registers the probes with Kopf's default registry)
from handlers import lifecycle, probes
from model_agent import health, settings
from tests.harness.kube import FakeKube
from tests.harness.operator import run_operator_in_thread

MODEL_CR = {
    "apiVersion": "ome.io/v1beta1",
    "kind": "BaseModel",
    "metadata": {"name": "llama", "namespace": "team-a"},
    "spec": {"storage": {"storageUri": "hf://meta/llama"}},
}
CLUSTER_CR = {
    "apiVersion": "ome.io/v1beta1",
    "kind": "ClusterBaseModel",
    "metadata": {"name": "mistral"},
    "spec": {"storage": {"storageUri": "hf://mistral/mistral"}},
}


class StubAgent:
    """Stands in for H6's Agent: only ``health()`` matters to the probes."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report

    def health(self) -> dict[str, Any]:
        return self.report


class AsyncStubAgent(StubAgent):
    async def health(self) -> dict[str, Any]:  # type: ignore[override]
        return self.report


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def liveness(memo: kopf.Memo) -> AsyncIterator[str]:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    ready = asyncio.Event()
    task = asyncio.create_task(
        probing.health_reporter(
            url,
            memo=memo,
            indices={},
            registry=registries.get_default_registry(),
            settings=kopf.OperatorSettings(),
            ready_flag=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield url
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def get(url: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response,
    ):
        body = await response.text()
        if response.content_type == "application/json":
            return response.status, json.loads(body)
        return response.status, body


async def test_liveness_is_200_and_says_starting_when_memo_has_no_agent() -> None:
    async with liveness(kopf.Memo()) as url:
        status, body = await get(url)
    assert status == 200
    assert body == {"agent": {"agent": "starting"}, "livez": "not wired"}


@pytest.mark.parametrize("agent_class", [StubAgent, AsyncStubAgent])
async def test_liveness_reports_queue_depth_workers_and_last_success(
    agent_class: type[StubAgent],
) -> None:
    last = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    agent = agent_class({"queue_depth": 3, "active_workers": 2, "last_success": last})
    async with liveness(kopf.Memo(agent=agent)) as url:
        status, body = await get(url)
    assert status == 200
    assert body["agent"] == {
        "queue_depth": 3,
        "active_workers": 2,
        "last_success": "2026-01-02T03:04:05+00:00",
    }


async def test_liveness_is_not_200_when_the_agent_reports_unhealthy() -> None:
    agent = StubAgent({"healthy": False, "reason": "informer stopped", "queue_depth": 0})
    async with liveness(kopf.Memo(agent=agent)) as url:
        status, _ = await get(url)
    assert status >= 500


async def test_liveness_is_not_200_when_a_worker_crashed() -> None:
    async def crashing() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(crashing(), name="worker-3")
    await asyncio.gather(task, return_exceptions=True)
    checks = health.HealthChecks(livez=health.workers_alive(lambda: [task]))
    memo = kopf.Memo(agent=StubAgent({"queue_depth": 0}), **{probes.HEALTH_CHECKS_KEY: checks})
    async with liveness(memo) as url:
        status, _ = await get(url)
    assert status >= 500


async def test_liveness_is_not_200_after_the_event_loop_was_blocked() -> None:
    monitor = health.LoopLagMonitor(interval=0.02, threshold=0.3, window=5.0)
    monitor.start()
    checks = health.HealthChecks(livez=monitor.check)
    memo = kopf.Memo(agent=StubAgent({"queue_depth": 0}), **{probes.HEALTH_CHECKS_KEY: checks})
    try:
        async with liveness(memo) as url:
            time.sleep(1.0)  # noqa: ASYNC251  (a real blocking call in the loop)
            status, _ = await get(url)
    finally:
        await monitor.stop()
    assert status >= 500


async def test_liveness_is_200_with_a_healthy_livez_check() -> None:
    monitor = health.LoopLagMonitor(interval=0.02, threshold=2.0, window=5.0)
    monitor.start()
    checks = health.HealthChecks(livez=monitor.check)
    memo = kopf.Memo(agent=StubAgent({"queue_depth": 0}), **{probes.HEALTH_CHECKS_KEY: checks})
    try:
        async with liveness(memo) as url:
            status, body = await get(url)
    finally:
        await monitor.stop()
    assert status == 200 and body["livez"].startswith("event loop lag")


# --- through the whole operator --------------------------------------------------------------


def operator_registry(warned: list[str]) -> kopf.OperatorRegistry:
    """The probe handlers of handlers/probes.py plus event handlers that note what they saw,
    in a fresh registry (no agent start-up)."""
    registry = kopf.OperatorRegistry()
    kopf.on.probe(id="agent", registry=registry)(probes.agent_health)
    kopf.on.probe(id="livez", registry=registry)(probes.livez)

    def warn(body: kopf.Body, logger: Any, **_: Any) -> None:
        logger.warning("model needs attention")
        warned.append(body["metadata"]["name"])

    kopf.on.event("ome.io", "v1beta1", "basemodels", registry=registry)(warn)
    kopf.on.event("ome.io", "v1beta1", "clusterbasemodels", registry=registry)(warn)
    return registry


def test_kopf_liveness_through_the_operator_and_every_request_fits_the_rbac(
    kube_api: FakeKube,
) -> None:
    from tests.harness import kube_http
    from tests.unit import test_manifests

    warned: list[str] = []
    url = f"http://127.0.0.1:{free_port()}/healthz"
    agent = StubAgent({"queue_depth": 0, "active_workers": 0, "last_success": None})
    kube_api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    config = settings.resolve({"node_name": "node-a"}, {})
    with run_operator_in_thread(
        operator_registry(warned),
        kube_api=kube_api,
        memo=kopf.Memo(agent=agent),
        liveness_endpoint=url,
        settings=lambda kopf_settings: lifecycle.tune(kopf_settings, config),
    ):
        kube_api.create(MODEL_CR)
        kube_api.create(CLUSTER_CR)
        kube_api.wait_for_sync(lambda: {"llama", "mistral"} <= set(warned))
        with urllib.request.urlopen(url, timeout=10) as response:
            status, body = response.status, json.loads(response.read())
    assert status == 200 and body["agent"]["queue_depth"] == 0

    requested = set()
    for request in kube_api.requests:
        target = kube_http.parse_path(kube_api.catalog, request.path)
        if target is None:
            continue  # discovery: allowed to every authenticated user
        verb = kube_http.verb_of(request.method, target, request.query)
        requested.add((target.resource.group, target.resource.plural, verb, target.namespace))
    assert ("ome.io", "basemodels", "watch", None) in requested
    for group, resource, verb, namespace in requested:
        allowed = test_manifests.granted(None) | (
            test_manifests.granted(namespace) if namespace else set()
        )
        assert (group, resource, verb) in allowed, (group, resource, verb, namespace)
