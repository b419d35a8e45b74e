"""The operator harness: Kopf in a thread (a fresh registry, no login handler, no
KUBECONFIG) sees BaseModel and ClusterBaseModel events from test-side and API writes, is
watching when the context is entered, stops in well under a second, and works with
``with`` and ``async with``; a failing operator is reported; the real ``model-agent run``
command starts against the fake API, watches basemodels and clusterbasemodels cluster-wide,
exits 0 on SIGTERM, and a start that fails is reported with its log."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from kubernetes_asyncio import client

from tests.harness.kube import FakeKube, RecordedRequest
from tests.harness.operator import agent_process, run_operator_in_thread


def stub_registry(seen: list[tuple[str, str | None, str]]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.event("ome.io", "v1beta1", "basemodels", registry=registry)
    def basemodel(type: str | None, body: kopf.Body, **_: Any) -> None:
        seen.append(("BaseModel", type, body["metadata"]["name"]))

    @kopf.on.event("ome.io", "v1beta1", "clusterbasemodels", registry=registry)
    def clusterbasemodel(type: str | None, body: kopf.Body, **_: Any) -> None:
        seen.append(("ClusterBaseModel", type, body["metadata"]["name"]))

    return registry


def model(kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": kind,
        "metadata": meta,
        "spec": {"storage": {"storageUri": "hf://org/model"}},
    }


def test_kopf_in_a_thread_sees_test_side_creates_updates_and_deletes(kube_api):
    seen: list[tuple[str, str | None, str]] = []
    kube_api.create(model("BaseModel", "existing", "default"))
    with run_operator_in_thread(stub_registry(seen), kube_api=kube_api) as operator:
        assert kube_api.watching("basemodels") == 1
        assert kube_api.watching("clusterbasemodels") == 1
        kube_api.wait_for_sync(lambda: ("BaseModel", None, "existing") in seen)
        kube_api.create(model("BaseModel", "m1", "models-ns"))
        kube_api.create(model("ClusterBaseModel", "c1"))
        kube_api.patch("basemodels", "m1", {"spec": {"version": "2"}})
        kube_api.delete("clusterbasemodels", "c1")
        kube_api.wait_for_sync(lambda: ("ClusterBaseModel", "DELETED", "c1") in seen)
        kube_api.wait_for_sync(lambda: ("BaseModel", "MODIFIED", "m1") in seen)
    assert ("BaseModel", "ADDED", "m1") in seen
    assert ("ClusterBaseModel", "ADDED", "c1") in seen
    assert operator.stopped_without_kopf_exit_wait  # trap 3: no 5 s wait-and-cancel at exit
    kube_api.wait_for_sync(lambda: kube_api.watching("basemodels") == 0)  # disconnect seen
    watches = kube_api.watch_requests("basemodels")
    assert watches and all(r.path == "/apis/ome.io/v1beta1/basemodels" for r in watches)


async def test_kopf_in_a_thread_sees_api_creates_with_async_with(kube_api, kube_client):
    seen: list[tuple[str, str | None, str]] = []
    async with run_operator_in_thread(stub_registry(seen), kube_api=kube_api) as operator:
        await client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
            "ome.io", "v1beta1", "default", "basemodels", model("BaseModel", "api-made")
        )
        await kube_api.wait_for(lambda: ("BaseModel", "ADDED", "api-made") in seen)
    assert operator.stopped_without_kopf_exit_wait  # trap 3: no 5 s wait-and-cancel at exit


@pytest.mark.parametrize("compacted", [False, True], ids=["resumed", "relisted-after-410"])
def test_kopf_keeps_receiving_events_after_its_watches_are_dropped(kube_api, compacted):
    seen: list[tuple[str, str | None, str]] = []
    with run_operator_in_thread(stub_registry(seen), kube_api=kube_api):
        kube_api.create(model("BaseModel", "before", "default"))
        kube_api.wait_for_sync(lambda: ("BaseModel", "ADDED", "before") in seen)
        opened = len(kube_api.watch_requests("basemodels"))
        lists = len(list_requests(kube_api))
        with kube_api.store.lock:  # a reconnect waits until the change (and compaction) is done
            assert kube_api.close_watches("basemodels") == 1
            kube_api.create(model("BaseModel", "during", "default"))  # while no watch is open
            if compacted:
                kube_api.compact()  # the resumed watch gets 410 Gone
        kube_api.wait_for_sync(lambda: len(kube_api.watch_requests("basemodels")) > opened)
        kube_api.wait_for_sync(lambda: ("BaseModel", "during") in {(k, n) for k, _, n in seen})
        kube_api.create(model("BaseModel", "after", "default"))
        kube_api.wait_for_sync(lambda: ("BaseModel", "ADDED", "after") in seen)
    reopened = kube_api.watch_requests("basemodels")[-1]
    assert reopened.query.get("resourceVersion")
    assert len(list_requests(kube_api)) == lists + (1 if compacted else 0)  # 410: list again


def list_requests(kube: FakeKube) -> list[RecordedRequest]:
    return [
        r
        for r in kube.requests
        if r.path == "/apis/ome.io/v1beta1/basemodels" and r.method == "GET" and not r.is_watch
    ]


def test_event_posting_is_off_unless_asked(kube_api):
    registry, warned = kopf.OperatorRegistry(), []

    @kopf.on.event("ome.io", "v1beta1", "basemodels", registry=registry)
    def warn(body: kopf.Body, **_: Any) -> None:
        kopf.warn(body, reason="Test", message="posted")  # event handlers' logs never post
        warned.append(body["metadata"]["name"])

    @kopf.on.event("ome.io", "v1beta1", "clusterbasemodels", registry=registry)
    def noop(**_: Any) -> None:
        pass

    with run_operator_in_thread(registry, kube_api=kube_api):
        kube_api.create(model("BaseModel", "m1", "default"))
        kube_api.wait_for_sync(lambda: warned == ["m1"])
    assert kube_api.list("events") == []
    assert not [r for r in kube_api.requests if r.method == "POST" and "events" in r.path]
    with run_operator_in_thread(registry, kube_api=kube_api, posting=True):
        kube_api.wait_for_sync(lambda: len(kube_api.list("events")) >= 1)
    event = kube_api.list("events")[0]
    assert (event["message"], event["involvedObject"]["name"]) == ("posted", "m1")


def test_an_operator_that_cannot_watch_is_reported_not_hung():
    with FakeKube() as kube:
        kube.fail_next(100, method="LIST", status=403)
        with pytest.raises((TimeoutError, RuntimeError)):
            with run_operator_in_thread(stub_registry([]), kube_api=kube, timeout=1.0):
                pass  # pragma: no cover


def test_model_agent_run_watches_both_kinds_and_exits_cleanly_on_sigterm(kube_api, tmp_path):
    kube_api.add_node("node-a")
    with agent_process(kube_api, "node-a", workdir=tmp_path) as agent:
        assert agent.proc is not None and agent.proc.poll() is None
        for resource in ("basemodels", "clusterbasemodels"):
            assert kube_api.watching(resource) >= 1
            paths = {r.path for r in kube_api.watch_requests(resource)}
            assert paths == {f"/apis/ome.io/v1beta1/{resource}"}  # cluster-wide
        code, log = agent.stop()
    assert code == 0, log
    assert agent.returncode == 0
    assert (tmp_path / "agent.log").read_text() == log


async def test_model_agent_that_fails_to_start_is_reported_with_its_log(kube_api):
    with pytest.raises(RuntimeError, match="NODE_NAME"):
        async with agent_process(kube_api, ""):
            pass  # pragma: no cover
