"""The agent's Kubernetes edges through kubernetes-asyncio against the fake API server.

Aspects: the per-node ConfigMap is created with OME's labels and annotations; each entry is a
merge patch of one key (content type checked), so another writer's keys survive; 409 and 500
answers are retried; a deleted ConfigMap is recreated with every owned entry; removing a key
from a missing ConfigMap is a no-op; writes that failed stay pending and flush later; node
labels are merge-patched and removed, retried up to the limit and no further; the node watch
asks for the own node by field selector with timeoutSeconds and reports label changes; HF
tokens are read from Secrets (missing key and secret are AuthErrors naming them, not the
value); both model kinds are listed; spec write-back is a merge patch.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from model_agent import errors, metrics, report
from model_agent.kube import client as kube_client
from model_agent.kube import configmap, models, nodes, secrets


def writer(kube_client_, **kw):
    return configmap.ConfigMapWriter(
        kube_client_,
        namespace="ome",
        node_name="node-a",
        recorder=metrics.Metrics(),
        base_delay=0.01,
        **kw,
    )


async def test_ensure_creates_the_configmap_with_omes_labels_and_annotations(kube_api, kube_client):
    cm = writer(kube_client)
    assert await cm.ensure() == {}
    stored = kube_api.get("configmaps", "node-a", "ome")
    assert stored["metadata"]["labels"] == {"models.ome/basemodel-status": "true", "node": "node-a"}
    assert stored["metadata"]["annotations"]["models.ome.io/managed-by"] == "model-agent"
    assert stored["metadata"]["annotations"]["models.ome.io/node-name"] == "node-a"


async def test_an_entry_is_a_merge_patch_of_one_key_and_keeps_other_writers_keys(
    kube_api, kube_client
):
    cm = writer(kube_client)
    await cm.ensure()
    kube_api.patch("configmaps", "node-a", {"data": {"foreign": "keep me"}}, "ome")
    await cm.write("default.basemodel.a", report.entry("a", report.READY))
    stored = kube_api.get("configmaps", "node-a", "ome")["data"]
    assert stored["foreign"] == "keep me"
    assert json.loads(stored["default.basemodel.a"])["status"] == "Ready"
    patches = [r for r in kube_api.requests if r.method == "PATCH" and "configmaps" in r.path]
    assert patches and all(r.content_type == "application/merge-patch+json" for r in patches)
    await cm.write("default.basemodel.a", None)
    assert "default.basemodel.a" not in kube_api.get("configmaps", "node-a", "ome")["data"]
    assert cm.owned == {}


async def test_conflicts_and_server_errors_are_retried_until_the_entry_lands(kube_api, kube_client):
    cm = writer(kube_client)
    await cm.ensure()
    kube_api.fail_next(2, method="PATCH", path_contains="configmaps", status=409)
    kube_api.fail_next(2, method="PATCH", path_contains="configmaps", status=500)
    await cm.write("clusterbasemodel.b", report.entry("b", report.UPDATING))
    assert "clusterbasemodel.b" in kube_api.get("configmaps", "node-a", "ome")["data"]
    assert cm.pending == {}


async def test_a_deleted_configmap_is_recreated_with_every_owned_entry(kube_api, kube_client):
    cm = writer(kube_client)
    await cm.ensure()
    await cm.write("clusterbasemodel.one", report.entry("one", report.READY))
    kube_api.delete("configmaps", "node-a", "ome")
    await cm.write("clusterbasemodel.two", report.entry("two", report.UPDATING))
    stored = kube_api.get("configmaps", "node-a", "ome")
    assert set(stored["data"]) == {"clusterbasemodel.one", "clusterbasemodel.two"}
    assert stored["metadata"]["labels"]["models.ome/basemodel-status"] == "true"


async def test_removing_a_key_from_a_missing_configmap_is_already_done(kube_api, kube_client):
    cm = writer(kube_client)
    await cm.write("clusterbasemodel.gone", None)
    assert kube_api.get("configmaps", "node-a", "ome") is None


async def test_a_write_that_keeps_failing_stays_pending_and_flushes_later(kube_api, kube_client):
    cm = writer(kube_client, attempts=2)
    await cm.ensure()
    kube_api.fail_next(2, method="PATCH", path_contains="configmaps", status=503)
    with pytest.raises(errors.RetryableError):
        await cm.write("clusterbasemodel.c", report.entry("c", report.READY))
    assert list(cm.pending) == ["clusterbasemodel.c"]
    assert await cm.flush() == 0
    assert "clusterbasemodel.c" in kube_api.get("configmaps", "node-a", "ome")["data"]


async def test_node_labels_are_merge_patched_and_removed(kube_api, kube_client):
    kube_api.add_node("node-a", {"gpu": "h100"})
    node = nodes.NodeClient(kube_client, node_name="node-a", retries=3, base_delay=0.01)
    kube_api.fail_next(2, method="PATCH", path_contains="nodes", status=409)
    await node.set_label("models.ome.io/clusterbasemodel.x", "Ready")
    labels = kube_api.get("nodes", "node-a")["metadata"]["labels"]
    assert labels["models.ome.io/clusterbasemodel.x"] == "Ready"
    assert labels["gpu"] == "h100"
    await node.set_label("models.ome.io/clusterbasemodel.x", None)
    assert (
        "models.ome.io/clusterbasemodel.x"
        not in kube_api.get("nodes", "node-a")["metadata"]["labels"]
    )
    patches = [r for r in kube_api.requests if r.method == "PATCH" and "/nodes/" in r.path]
    assert all(r.content_type == "application/merge-patch+json" for r in patches)


async def test_node_label_retries_stop_at_the_limit(kube_api, kube_client):
    kube_api.add_node("node-a")
    node = nodes.NodeClient(kube_client, node_name="node-a", retries=2, base_delay=0.01)
    kube_api.fail_next(3, method="PATCH", path_contains="nodes", status=500)
    with pytest.raises(errors.RetryableError):
        await node.set_label("models.ome.io/clusterbasemodel.y", "Ready")
    patches = [r for r in kube_api.requests if r.method == "PATCH" and "/nodes/" in r.path]
    assert len(patches) == 3
    assert await node.flush() == 0
    assert (
        kube_api.get("nodes", "node-a")["metadata"]["labels"]["models.ome.io/clusterbasemodel.y"]
        == "Ready"
    )


async def test_the_node_watch_sees_label_changes_of_the_own_node_only(kube_api, kube_client):
    kube_api.add_node("node-a", {"pool": "a"})
    kube_api.add_node("node-b", {"pool": "b"})
    node = nodes.NodeClient(kube_client, node_name="node-a", base_delay=0.01)
    seen: list[dict] = []

    async def on_node(raw):
        seen.append(raw)

    stop = asyncio.Event()
    task = asyncio.create_task(node.watch(on_node, timeout_seconds=2, stop=stop))
    try:
        await kube_api.wait_for(lambda: len(seen) >= 1)
        kube_api.patch("nodes", "node-b", {"metadata": {"labels": {"pool": "x"}}})
        kube_api.patch("nodes", "node-a", {"metadata": {"labels": {"pool": "new"}}})
        await kube_api.wait_for(lambda: seen[-1]["metadata"]["labels"].get("pool") == "new")
    finally:
        stop.set()
        kube_api.close_watches("nodes")
        await asyncio.wait_for(task, 10)
    assert {s["metadata"]["name"] for s in seen} == {"node-a"}
    watches = kube_api.watch_requests("nodes")
    assert watches
    assert watches[0].query.get("fieldSelector") == "metadata.name=node-a"
    assert watches[0].query.get("timeoutSeconds") == "2"


async def test_tokens_come_from_the_secret_and_errors_name_it_not_the_value(kube_api, kube_client):
    kube_api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf", "namespace": "default"},
            "data": {"token": base64.b64encode(b"hf_secretvalue123\n").decode(), "other": ""},
        }
    )
    token = await secrets.read_token(kube_client, namespace="default", name="hf", key="token")
    assert token == "hf_secretvalue123"
    with pytest.raises(errors.AuthError, match="no key 'missing'") as caught:
        await secrets.read_token(kube_client, namespace="default", name="hf", key="missing")
    assert "hf_secret" not in str(caught.value)
    with pytest.raises(errors.AuthError, match="default/absent"):
        await secrets.read_token(kube_client, namespace="default", name="absent", key="token")


async def test_both_model_kinds_are_listed_and_spec_write_back_is_a_merge_patch(
    kube_api, kube_client
):
    storage = {"storage": {"storageUri": "hf://org/m"}}
    kube_api.create(
        {
            "apiVersion": "ome.io/v1beta1",
            "kind": "BaseModel",
            "metadata": {"name": "a", "namespace": "default"},
            "spec": storage,
        }
    )
    kube_api.create(
        {
            "apiVersion": "ome.io/v1beta1",
            "kind": "ClusterBaseModel",
            "metadata": {"name": "b"},
            "spec": storage,
        }
    )
    found = await models.list_models(kube_client)
    assert sorted((m["kind"], m["metadata"]["name"]) for m in found) == [
        ("BaseModel", "a"),
        ("ClusterBaseModel", "b"),
    ]
    await models.patch_spec(
        kube_client, kind="ClusterBaseModel", namespace="", name="b", spec={"modelType": "llama"}
    )
    assert kube_api.get("clusterbasemodels", "b")["spec"]["modelType"] == "llama"
    assert kube_api.get("clusterbasemodels", "b")["spec"]["storage"] == storage["storage"]


async def test_api_errors_map_onto_retryable_and_permanent_classes():
    from kubernetes_asyncio.client import ApiException

    assert kube_client.api_error(ApiException(status=409), "x").retryable
    assert kube_client.api_error(ApiException(status=503), "x").retryable
    assert isinstance(kube_client.api_error(ApiException(status=403), "x"), errors.AuthError)
    assert not kube_client.api_error(ApiException(status=422), "x").retryable
