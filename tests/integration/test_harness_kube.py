"""The fake Kubernetes API, through kubernetes-asyncio: create answers 201 with uid,
resourceVersion and creationTimestamp; duplicate create and stale resourceVersion answer 409;
PUT replaces; merge patch, JSON patch (a list) and strategic merge (built-in kinds only) are
told apart by content type, and a dict sent as JSON patch is rejected; watches honour
timeoutSeconds, deliver ADDED/MODIFIED/DELETED for API and test-side writes, replay from a
resourceVersion and answer 410 after compaction; field and label selectors filter lists
and watches; injected faults fail before any state change; namespace URLs parse; deletes
honour finalizers; the status subresource is separate; validation a real server does
(labels, ConfigMap size) applies; list pagination and discovery work; requests are logged."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.harness import kube_patch
from tests.harness.kube import FakeKube

GROUP, VERSION = "ome.io", "v1beta1"
MERGE = "application/merge-patch+json"


def authorized(kube: FakeKube) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {kube.token}"},
        connector=aiohttp.TCPConnector(ssl=kube.ssl_context or True),
    )


def basemodel(name: str, namespace: str = "default", uri: str = "hf://org/model") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BaseModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"storage": {"storageUri": uri}},
    }


def configmap(name: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {}}


async def test_custom_object_create_answers_201_with_server_fields(kube_client, kube_api):
    api = client.CustomObjectsApi(kube_client)
    before = kube_api.resource_version
    created = await api.create_namespaced_custom_object(
        GROUP, VERSION, "default", "basemodels", basemodel("m1")
    )
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > before
    assert kube_api.get("basemodels", "m1", "default")["spec"]["storage"]["storageUri"] == (
        "hf://org/model"
    )
    _, status, _ = await api.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, "default", "basemodels", basemodel("m2")
    )
    assert status == 201


async def test_duplicate_create_is_409_already_exists(kube_client):
    core = client.CoreV1Api(kube_client)
    await core.create_namespaced_config_map("ome", configmap("node-a"))
    with pytest.raises(ApiException) as caught:
        await core.create_namespaced_config_map("ome", configmap("node-a"))
    assert caught.value.status == 409
    assert "AlreadyExists" in caught.value.body


async def test_get_of_a_missing_object_is_404(kube_client):
    with pytest.raises(ApiException) as caught:
        await client.CoreV1Api(kube_client).read_namespaced_config_map("nope", "ome")
    assert caught.value.status == 404


async def test_merge_patch_and_json_patch_list_both_apply(kube_client, kube_api):
    api = client.CustomObjectsApi(kube_client)
    kube_api.create(basemodel("m1"))
    merged = await api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "basemodels",
        "m1",
        {"spec": {"version": "1.0", "storage": {"path": "/models/m1"}}},
        _content_type=MERGE,
    )
    assert merged["spec"]["storage"] == {"storageUri": "hf://org/model", "path": "/models/m1"}
    patched = await api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "basemodels",
        "m1",
        [
            {"op": "replace", "path": "/spec/version", "value": "2.0"},
            {"op": "remove", "path": "/spec/storage/path"},
        ],
    )
    assert patched["spec"]["version"] == "2.0"
    assert "path" not in kube_api.get("basemodels", "m1")["spec"]["storage"]
    assert int(patched["metadata"]["resourceVersion"]) > int(merged["metadata"]["resourceVersion"])


async def test_a_dict_sent_as_json_patch_is_rejected_and_changes_nothing(kube_client, kube_api):
    api = client.CustomObjectsApi(kube_client)
    before = kube_api.create(basemodel("m1"))
    with pytest.raises(ApiException) as caught:  # kubernetes-asyncio's default content type
        await api.patch_namespaced_custom_object(
            GROUP, VERSION, "default", "basemodels", "m1", {"spec": {"version": "9"}}
        )
    assert caught.value.status == 400
    assert "jsonpatch.Patch" in caught.value.body
    assert kube_api.requests[-1].content_type == "application/json-patch+json"
    assert kube_api.get("basemodels", "m1") == before


async def test_strategic_merge_is_415_on_custom_resources_and_works_on_built_ins(
    kube_client, kube_api
):
    api = client.CustomObjectsApi(kube_client)
    kube_api.create(basemodel("m1"))
    with pytest.raises(ApiException) as caught:
        await api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            "basemodels",
            "m1",
            {"spec": {"version": "9"}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert caught.value.status == 415
    kube_api.add_node("node-a")
    node = await client.CoreV1Api(kube_client).patch_node(  # strategic by default for a dict
        "node-a", {"metadata": {"labels": {"models.ome.io/default.basemodel.m1": "Ready"}}}
    )
    assert node.metadata.labels["models.ome.io/default.basemodel.m1"] == "Ready"
    assert kube_api.requests[-1].content_type == "application/strategic-merge-patch+json"


async def test_stale_resource_version_in_patch_or_put_is_409(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    created = kube_api.create({**configmap("cm"), "metadata": {"name": "cm", "namespace": "ome"}})
    stale = created["metadata"]["resourceVersion"]
    kube_api.patch("configmaps", "cm", {"data": {"a": "1"}}, "ome")
    with pytest.raises(ApiException) as patched:
        await core.patch_namespaced_config_map(
            "cm",
            "ome",
            {"metadata": {"resourceVersion": stale}, "data": {"b": "2"}},
            _content_type=MERGE,
        )
    assert patched.value.status == 409
    body = {**configmap("cm", {"c": "3"})}
    body["metadata"] = {"name": "cm", "resourceVersion": stale}
    with pytest.raises(ApiException) as replaced:
        await core.replace_namespaced_config_map("cm", "ome", body)
    assert replaced.value.status == 409
    assert kube_api.get("configmaps", "cm", "ome")["data"] == {"a": "1"}


async def test_put_replaces_the_whole_object_with_a_current_resource_version(kube_client, kube_api):
    api = client.CustomObjectsApi(kube_client)
    current = kube_api.create(
        {**basemodel("m1"), "spec": {"storage": {"storageUri": "hf://a/b"}, "version": "1"}}
    )
    body = basemodel("m1", uri="hf://c/d")
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    replaced = await api.replace_namespaced_custom_object(
        GROUP, VERSION, "default", "basemodels", "m1", body
    )
    assert replaced["spec"] == {"storage": {"storageUri": "hf://c/d"}}
    assert replaced["metadata"]["uid"] == current["metadata"]["uid"]
    assert replaced["metadata"]["generation"] == 2
    del body["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as caught:  # custom resources need a resourceVersion
        await api.replace_namespaced_custom_object(
            GROUP, VERSION, "default", "basemodels", "m1", body
        )
    assert caught.value.status == 422


async def test_a_write_that_changes_nothing_keeps_the_resource_version(kube_client, kube_api):
    kube_api.add_node("node-a", {"a": "1"})
    first = await client.CoreV1Api(kube_client).patch_node(
        "node-a", {"metadata": {"labels": {"a": "1"}}}, _content_type=MERGE
    )
    assert (
        first.metadata.resource_version
        == kube_api.get("nodes", "node-a")["metadata"]["resourceVersion"]
    )
    assert first.metadata.resource_version == str(kube_api.resource_version)


async def test_watch_with_timeout_seconds_sees_added_and_modified_then_ends(kube_client, kube_api):
    api = client.CustomObjectsApi(kube_client)
    seen: list[tuple[str, str, str]] = []

    async def consume() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(
                api.list_cluster_custom_object, GROUP, VERSION, "basemodels", timeout_seconds=1
            ):
                obj = event["object"]
                seen.append(
                    (event["type"], obj["metadata"]["name"], obj["spec"].get("version", ""))
                )

    kube_api.create(basemodel("before"))
    started = time.monotonic()
    task = asyncio.create_task(consume())
    await kube_api.wait_for(lambda: kube_api.watching("basemodels") == 1)
    await api.create_namespaced_custom_object(
        GROUP, VERSION, "ome", "basemodels", basemodel("m1", "ome")
    )
    await api.patch_namespaced_custom_object(
        GROUP, VERSION, "ome", "basemodels", "m1", {"spec": {"version": "2"}}, _content_type=MERGE
    )
    kube_api.patch("basemodels", "before", {"spec": {"version": "3"}})
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started > 0.9  # the server ended it at timeoutSeconds, not before
    assert seen == [
        ("ADDED", "before", ""),
        ("ADDED", "m1", ""),
        ("MODIFIED", "m1", "2"),
        ("MODIFIED", "before", "3"),
    ]
    watches = kube_api.watch_requests("basemodels")
    assert len(watches) == 1 and watches[0].query["timeoutSeconds"] == "1"
    assert watches[0].query["watch"] == "True"  # kubernetes-asyncio's spelling
    assert kube_api.watching("basemodels") == 0


async def test_test_side_delete_reaches_watchers_as_deleted(kube_client, kube_api):
    kube_api.create(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterBaseModel",
            "metadata": {"name": "c1"},
            "spec": {"storage": {"storageUri": "hf://a/b"}},
        }
    )
    events: list[tuple[str, str]] = []

    async def consume() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(
                client.CustomObjectsApi(kube_client).list_cluster_custom_object,
                GROUP,
                VERSION,
                "clusterbasemodels",
                timeout_seconds=5,
            ):
                events.append((event["type"], event["object"]["metadata"]["name"]))
                if event["type"] == "DELETED":
                    w.stop()

    task = asyncio.create_task(consume())
    await kube_api.wait_for(lambda: kube_api.watching("clusterbasemodels") == 1)
    gone = kube_api.delete("clusterbasemodels", "c1")
    await asyncio.wait_for(task, 5)
    assert events == [("ADDED", "c1"), ("DELETED", "c1")]
    assert kube_api.get("clusterbasemodels", "c1") is None
    assert gone["metadata"]["name"] == "c1"


async def test_field_selector_limits_node_list_and_watch_to_one_node(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    for name in ("node-a", "node-b"):
        kube_api.add_node(name)
    listed = await core.list_node(field_selector="metadata.name=node-a")
    assert [n.metadata.name for n in listed.items] == ["node-a"]
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(
                core.list_node,
                field_selector="metadata.name=node-a",
                resource_version=listed.metadata.resource_version,
                timeout_seconds=5,
            ):
                seen.append((event["type"], event["object"].metadata.name))
                w.stop()

    task = asyncio.create_task(consume())
    await kube_api.wait_for(lambda: kube_api.watching("nodes") == 1)
    kube_api.patch("nodes", "node-b", {"metadata": {"labels": {"x": "1"}}})
    kube_api.patch("nodes", "node-a", {"metadata": {"labels": {"x": "2"}}})
    await asyncio.wait_for(task, 5)
    assert seen == [("MODIFIED", "node-a")]


async def test_label_selector_filters_lists_and_turns_transitions_into_added_and_deleted(
    kube_client, kube_api
):
    core = client.CoreV1Api(kube_client)
    kube_api.add_node("gpu", {"pool": "gpu"})
    kube_api.add_node("cpu", {"pool": "cpu"})
    listed = await core.list_node(label_selector="pool=gpu")
    assert [n.metadata.name for n in listed.items] == ["gpu"]
    assert [n.metadata.name for n in (await core.list_node(label_selector="pool!=gpu")).items] == [
        "cpu"
    ]
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(
                core.list_node,
                label_selector="pool=gpu",
                resource_version=listed.metadata.resource_version,
                timeout_seconds=5,
            ):
                seen.append((event["type"], event["object"].metadata.name))
                if len(seen) == 2:
                    w.stop()

    task = asyncio.create_task(consume())
    await kube_api.wait_for(lambda: kube_api.watching("nodes") == 1)
    kube_api.patch("nodes", "cpu", {"metadata": {"labels": {"pool": "gpu"}}})
    kube_api.patch("nodes", "gpu", {"metadata": {"labels": {"pool": "cpu"}}})
    await asyncio.wait_for(task, 5)
    assert seen == [("ADDED", "cpu"), ("DELETED", "gpu")]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1", {"a": "2"}, False),
        ("a!=1", {}, True),
        ("a in (1, 2)", {"a": "2"}, True),
        ("a notin (1,2)", {"a": "2"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("a=1,b in (x,y),!c", {"a": "1", "b": "y"}, True),
        ("", {"z": "1"}, True),
    ],
)
def test_label_selector_grammar(selector, labels, expected):
    assert kube_patch.label_matcher(selector)({"metadata": {"labels": labels}}) is expected


async def test_fail_next_fails_before_any_state_change(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    kube_api.add_node("node-a")
    before = kube_api.get("nodes", "node-a")
    kube_api.fail_next(1, method="PATCH", path_contains="/nodes/node-a", status=500)
    with pytest.raises(ApiException) as caught:
        await core.patch_node("node-a", {"metadata": {"labels": {"x": "1"}}}, _content_type=MERGE)
    assert caught.value.status == 500
    assert kube_api.get("nodes", "node-a") == before
    await core.read_node("node-a")  # other requests are not affected
    patched = await core.patch_node(
        "node-a", {"metadata": {"labels": {"x": "1"}}}, _content_type=MERGE
    )
    assert patched.metadata.labels["x"] == "1"


async def test_fail_next_on_create_leaves_no_object_and_counts_down(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    kube_api.fail_next(2, method="CREATE", status=503)
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            await core.create_namespaced_config_map("ome", configmap("node-a"))
        assert caught.value.status == 503
        assert kube_api.get("configmaps", "node-a", "ome") is None
    await core.create_namespaced_config_map("ome", configmap("node-a"))
    assert kube_api.get("configmaps", "node-a", "ome") is not None


async def test_fail_next_429_carries_retry_after(kube_api):
    kube_api.fail_next(1, method="GET", status=429, retry_after=2)
    async with authorized(kube_api) as session:
        async with session.get(f"{kube_api.url}/api/v1/nodes") as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "2"
            assert (await response.json())["reason"] == "TooManyRequests"
        async with session.get(f"{kube_api.url}/api/v1/nodes") as response:
            assert response.status == 200


async def test_watch_resumes_from_a_resource_version_and_gets_410_after_compaction(kube_api):
    kube_api.create(basemodel("m1"))
    since = kube_api.resource_version
    kube_api.patch("basemodels", "m1", {"spec": {"version": "2"}})
    kube_api.create(basemodel("m2"))
    url = f"{kube_api.url}/apis/{GROUP}/{VERSION}/basemodels"
    async with authorized(kube_api) as session:
        params = {"watch": "true", "resourceVersion": str(since), "timeoutSeconds": "1"}
        async with session.get(url, params=params) as response:
            lines = [line async for line in response.content]
        assert [line.split(b'"')[3] for line in lines] == [b"MODIFIED", b"ADDED"]
        kube_api.compact()
        async with session.get(url, params=params) as response:
            body = await response.read()
        assert b'"ERROR"' in body and b'"code": 410' in body


async def test_close_watches_ends_open_streams(kube_api):
    url = f"{kube_api.url}/api/v1/nodes"
    async with authorized(kube_api) as session:
        async with session.get(url, params={"watch": "true"}) as response:
            await kube_api.wait_for(lambda: kube_api.watching("nodes") == 1)
            assert kube_api.close_watches("nodes") == 1
            assert await asyncio.wait_for(response.read(), 5) == b""


async def test_namespace_urls_parse_for_create_get_and_delete(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    created = await core.create_namespace({"metadata": {"name": "models"}})
    assert created.metadata.uid
    assert (await core.read_namespace("models")).metadata.name == "models"
    await core.create_namespaced_config_map("models", configmap("cm"))
    assert kube_api.get("configmaps", "cm", "models")["metadata"]["namespace"] == "models"
    assert [n["metadata"]["name"] for n in kube_api.list("namespaces")] == [
        "default",
        "kube-system",
        "models",
        "ome",
    ]


async def test_delete_answers_status_for_built_ins_and_honours_finalizers(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    await core.create_namespaced_config_map("ome", configmap("cm"))
    status = await core.delete_namespaced_config_map("cm", "ome")
    assert status.status == "Success"
    assert kube_api.get("configmaps", "cm", "ome") is None
    model = basemodel("m1")
    model["metadata"]["finalizers"] = ["example.com/keep"]
    kube_api.create(model)
    api = client.CustomObjectsApi(kube_client)
    marked = await api.delete_namespaced_custom_object(
        GROUP, VERSION, "default", "basemodels", "m1"
    )
    assert marked["metadata"]["deletionTimestamp"]
    assert kube_api.get("basemodels", "m1") is not None
    await api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "basemodels",
        "m1",
        {"metadata": {"finalizers": None}},
        _content_type=MERGE,
    )
    assert kube_api.get("basemodels", "m1") is None


async def test_status_subresource_is_separate_from_the_main_resource(kube_client, kube_api):
    api = client.CustomObjectsApi(kube_client)
    kube_api.create(basemodel("m1"))
    await api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "basemodels",
        "m1",
        {"spec": {"version": "2"}, "status": {"state": "Ready"}},
        _content_type=MERGE,
    )
    assert "status" not in kube_api.get("basemodels", "m1")
    await api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        "basemodels",
        "m1",
        {"spec": {"version": "3"}, "status": {"state": "Ready"}},
        _content_type=MERGE,
    )
    stored = kube_api.get("basemodels", "m1")
    assert stored["status"] == {"state": "Ready"}
    assert stored["spec"]["version"] == "2"


@pytest.mark.parametrize(
    "labels",
    [
        {"models.ome.io/" + "x" * 64: "Ready"},
        {"models.ome.io/m": "not valid!"},
        {"Bad_Prefix/m": "Ready"},
    ],
)
async def test_invalid_labels_are_422_like_a_real_server(kube_client, kube_api, labels):
    kube_api.add_node("node-a")
    with pytest.raises(ApiException) as caught:
        await client.CoreV1Api(kube_client).patch_node(
            "node-a", {"metadata": {"labels": labels}}, _content_type=MERGE
        )
    assert caught.value.status == 422


async def test_configmap_over_one_mebibyte_is_rejected(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    half = "x" * (600 * 1024)  # each request stays under 1 MiB, the sum does not
    await core.create_namespaced_config_map("ome", configmap("cm", {"a": half}))
    with pytest.raises(ApiException) as caught:
        await core.patch_namespaced_config_map(
            "cm", "ome", {"data": {"b": half}}, _content_type=MERGE
        )
    assert caught.value.status == 422
    assert kube_api.get("configmaps", "cm", "ome")["data"] == {"a": half}


async def test_list_paginates_with_limit_and_continue(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    for i in range(5):
        kube_api.add_node(f"node-{i}")
    first = await core.list_node(limit=2)
    assert [n.metadata.name for n in first.items] == ["node-0", "node-1"]
    names = [n.metadata.name for n in first.items]
    token = first.metadata._continue
    while token:
        page = await core.list_node(limit=2, _continue=token)
        names += [n.metadata.name for n in page.items]
        token = page.metadata._continue
    assert names == [f"node-{i}" for i in range(5)]


async def test_list_resource_version_moves_with_every_write(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    first = (await core.list_node()).metadata.resource_version
    kube_api.add_node("node-a")
    second = (await core.list_node()).metadata.resource_version
    assert int(second) > int(first)


async def test_discovery_lists_builtins_and_the_crds(kube_client):
    groups = await client.ApisApi(kube_client).get_api_versions()
    assert {"ome.io", "events.k8s.io", "apiextensions.k8s.io"} <= {g.name for g in groups.groups}
    core = await client.CoreV1Api(kube_client).get_api_resources()
    assert {"namespaces", "nodes", "configmaps", "secrets", "events"} <= {
        r.name for r in core.resources
    }
    custom = await client.CustomObjectsApi(kube_client).get_api_resources(GROUP, VERSION)
    scopes = {r.name: r.namespaced for r in custom.resources}
    assert scopes["basemodels"] is True and scopes["clusterbasemodels"] is False
    crds = await client.ApiextensionsV1Api(kube_client).list_custom_resource_definition()
    assert {c.metadata.name for c in crds.items} == {
        "basemodels.ome.io",
        "clusterbasemodels.ome.io",
    }


async def test_request_log_records_method_path_query_and_content_type(kube_client, kube_api):
    kube_api.add_node("x")
    await client.CoreV1Api(kube_client).list_node(field_selector="metadata.name=x")
    await client.CoreV1Api(kube_client).patch_node(
        "x", {"metadata": {"labels": {"a": "b"}}}, _content_type=MERGE
    )
    (method, path, query, _), patched = kube_api.requests[-2:]
    assert (method, path, query) == ("GET", "/api/v1/nodes", {"fieldSelector": "metadata.name=x"})
    assert patched == ("PATCH", "/api/v1/nodes/x", {}, MERGE)


def test_test_side_helpers_find_objects_across_namespaces():
    with FakeKube() as kube:
        kube.create({**configmap("node-a"), "metadata": {"name": "node-a", "namespace": "ome"}})
        assert kube.get("configmaps", "node-a")["metadata"]["namespace"] == "ome"
        assert kube.get("configmaps", "missing") is None
        kube.create({**configmap("node-a"), "metadata": {"name": "node-a", "namespace": "default"}})
        with pytest.raises(ValueError, match="several namespaces"):
            kube.get("configmaps", "node-a")
        with pytest.raises(kube_patch.ApiError) as caught:
            kube.create(
                {**configmap("x"), "metadata": {"name": "x", "namespace": "ome"}}
                | {"data": {"bad key!": "v"}}
            )
        assert caught.value.status == 422


def event(namespace: str, involved: dict[str, Any], *, event_time: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "model-agent-", "namespace": namespace},
        "involvedObject": involved,
        "reason": "Ready",
        "message": "model is ready",
        "type": "Normal",
    }
    if event_time:
        body |= {
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "action": "Download",
            "reportingComponent": "model-agent",
            "reportingInstance": "node-a",
        }
    return body


@pytest.mark.parametrize(
    ("namespace", "involved", "event_time", "status"),
    [
        ("team-a", {"kind": "BaseModel", "name": "m", "namespace": "team-a"}, True, 201),
        ("team-a", {"kind": "BaseModel", "name": "m", "namespace": "team-a"}, False, 201),
        ("ome", {"kind": "BaseModel", "name": "m", "namespace": "team-a"}, False, 422),
        ("default", {"kind": "ClusterBaseModel", "name": "c"}, True, 201),
        ("kube-system", {"kind": "ClusterBaseModel", "name": "c"}, True, 201),
        ("ome", {"kind": "ClusterBaseModel", "name": "c"}, True, 422),
        ("ome", {"kind": "ClusterBaseModel", "name": "c"}, False, 422),
    ],
)
async def test_events_follow_the_api_servers_namespace_rules(
    kube_api, namespace, involved, event_time, status
):
    kube_api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    url = f"{kube_api.url}/api/v1/namespaces/{namespace}/events"
    async with authorized(kube_api) as session:
        async with session.post(url, json=event(namespace, involved, event_time=event_time)) as r:
            assert r.status == status, await r.text()
    assert len(kube_api.list("events")) == (1 if status == 201 else 0)


async def test_new_style_events_need_reporting_fields(kube_api):
    body = event("default", {"kind": "ClusterBaseModel", "name": "c"})
    del body["reportingComponent"]
    async with authorized(kube_api) as session:
        url = f"{kube_api.url}/api/v1/namespaces/default/events"
        async with session.post(url, json=body) as response:
            assert response.status == 422
            assert "reportingComponent" in (await response.json())["message"]


async def test_api_create_in_a_missing_namespace_is_404_but_test_side_create_adds_it(
    kube_client, kube_api
):
    with pytest.raises(ApiException) as caught:
        await client.CoreV1Api(kube_client).create_namespaced_config_map("nowhere", configmap("cm"))
    assert caught.value.status == 404
    assert json.loads(caught.value.body)["message"] == 'namespaces "nowhere" not found'
    kube_api.create(basemodel("m1", namespace="team-b"))
    assert kube_api.get("namespaces", "team-b") is not None


async def test_secret_string_data_is_stored_as_base64_data(kube_client, kube_api):
    secret = await client.CoreV1Api(kube_client).create_namespaced_secret(
        "default",
        {"metadata": {"name": "hf"}, "stringData": {"token": "hf_abc"}},
    )
    assert secret.data == {"token": "aGZfYWJj"} and secret.type == "Opaque"
    assert "stringData" not in kube_api.get("secrets", "hf", "default")


async def test_fail_next_watch_fails_only_the_watch(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    kube_api.fail_next(1, method="WATCH", path_contains="/nodes", status=500)
    assert (await core.list_node()).items == []
    with pytest.raises(ApiException) as caught:
        async with watch.Watch() as w:
            async for _ in w.stream(core.list_node, timeout_seconds=1):
                pass  # pragma: no cover
    assert caught.value.status == 500
    assert kube_api.watching("nodes") == 0


async def test_a_client_that_stops_watching_leaves_no_open_watch(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    kube_api.add_node("node-a")
    async with watch.Watch() as w:
        async for _ in w.stream(core.list_node, timeout_seconds=30):
            w.stop()
    await kube_api.wait_for(lambda: kube_api.watching("nodes") == 0)


async def test_watch_from_a_version_older_than_the_kept_history_is_410(kube_api):
    kube_api.store.history.max_entries = 3
    kube_api.add_node("node-a")
    since = kube_api.resource_version
    for i in range(4):
        kube_api.patch("nodes", "node-a", {"metadata": {"labels": {"i": str(i)}}})
    url = f"{kube_api.url}/api/v1/nodes"
    params = {"watch": "true", "resourceVersion": str(since), "timeoutSeconds": "1"}
    async with authorized(kube_api) as session:
        async with session.get(url, params=params) as response:
            body = await response.read()
    assert b'"code": 410' in body


async def test_slow_next_delays_the_answer_and_applies_the_write_only_then(kube_client, kube_api):
    core = client.CoreV1Api(kube_client)
    kube_api.add_node("node-a")
    kube_api.slow_next(1, 0.5, method="PATCH")
    started = time.monotonic()
    task = asyncio.create_task(
        core.patch_node("node-a", {"metadata": {"labels": {"x": "1"}}}, _content_type=MERGE)
    )
    await kube_api.wait_for(lambda: any(r.method == "PATCH" for r in kube_api.requests))
    assert "x" not in kube_api.get("nodes", "node-a")["metadata"]["labels"]
    node = await asyncio.wait_for(task, 5)
    assert node.metadata.labels["x"] == "1"
    assert time.monotonic() - started >= 0.5


async def test_generation_counts_spec_changes_of_custom_resources_only(kube_api):
    kube_api.create(basemodel("m1"))
    kube_api.patch("basemodels", "m1", {"metadata": {"labels": {"a": "b"}}})
    assert kube_api.get("basemodels", "m1")["metadata"]["generation"] == 1
    kube_api.patch("basemodels", "m1", {"spec": {"version": "2"}})
    assert kube_api.get("basemodels", "m1")["metadata"]["generation"] == 2
    assert "generation" not in kube_api.add_node("node-a")["metadata"]


async def test_requests_without_the_kubeconfig_token_are_401_except_public_paths(kube_api):
    connector = aiohttp.TCPConnector(ssl=kube_api.ssl_context or True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"{kube_api.url}/api/v1/nodes") as response:
            assert response.status == 401
        async with session.get(f"{kube_api.url}/version") as response:
            assert response.status == 200
    assert [status for _, status in kube_api.responses[-2:]] == [401, 200]


async def test_a_bug_in_the_fake_is_recorded_not_passed_off_as_a_server_error(
    kube_client, kube_api, monkeypatch
):
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug in the fake")

    monkeypatch.setattr(kube_api.store, "get", broken)
    with pytest.raises(ApiException) as caught:
        await client.CoreV1Api(kube_client).read_node("node-a")
    assert caught.value.status == 500
    assert "bug in the fake" in kube_api.server_errors[0]
    kube_api.server_errors.clear()  # the fixture would fail the test otherwise


async def test_a_configmap_watch_by_name_sees_only_that_configmap_in_that_namespace(
    kube_client, kube_api
):
    core = client.CoreV1Api(kube_client)
    kube_api.create({**configmap("node-a"), "metadata": {"name": "node-a", "namespace": "ome"}})
    seen: list[tuple[str, str, str]] = []

    async def consume() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(
                core.list_namespaced_config_map,
                "ome",
                field_selector="metadata.name=node-a",
                timeout_seconds=5,
            ):
                cm = event["object"]
                seen.append((event["type"], cm.metadata.namespace, (cm.data or {}).get("k", "")))
                if len(seen) == 2:
                    w.stop()

    task = asyncio.create_task(consume())
    await kube_api.wait_for(lambda: kube_api.watching("configmaps") == 1)
    kube_api.create({**configmap("node-a"), "metadata": {"name": "node-a", "namespace": "default"}})
    kube_api.create({**configmap("node-b"), "metadata": {"name": "node-b", "namespace": "ome"}})
    kube_api.patch("configmaps", "node-a", {"data": {"k": "v"}}, "ome")
    await asyncio.wait_for(task, 5)
    assert seen == [("ADDED", "ome", ""), ("MODIFIED", "ome", "v")]


async def test_json_patch_pointers_escape_slashes_in_label_keys(kube_client, kube_api):
    kube_api.add_node("node-a")
    node = await client.CoreV1Api(kube_client).patch_node(
        "node-a",
        [
            {
                "op": "add",
                "path": "/metadata/labels/models.ome.io~1default.basemodel.m1",
                "value": "Ready",
            }
        ],
    )
    assert node.metadata.labels["models.ome.io/default.basemodel.m1"] == "Ready"
    assert kube_api.requests[-1].content_type == "application/json-patch+json"


def test_test_side_patch_changes_status_only_through_the_status_subresource(kube_api):
    kube_api.add_node("node-a")
    kube_api.patch("nodes", "node-a", {"status": {"capacity": {"nvidia.com/gpu": "8"}}})
    assert "capacity" not in kube_api.get("nodes", "node-a")["status"]
    kube_api.patch(
        "nodes", "node-a", {"status": {"capacity": {"nvidia.com/gpu": "8"}}}, subresource="status"
    )
    assert kube_api.get("nodes", "node-a")["status"]["capacity"] == {"nvidia.com/gpu": "8"}


@pytest.mark.parametrize("query", ["limit=abc", "limit=-1", "watch=true&timeoutSeconds=soon"])
async def test_malformed_numeric_parameters_are_400(kube_api, query):
    async with authorized(kube_api) as session:
        async with session.get(f"{kube_api.url}/api/v1/nodes?{query}") as response:
            assert response.status == 400


@pytest.mark.parametrize("flag", ["True", "true", "1"])
async def test_watch_flag_spellings_all_open_a_watch(kube_api, flag):
    kube_api.add_node("node-a")
    params = {"watch": flag, "timeoutSeconds": "0.2"}
    async with authorized(kube_api) as session:
        async with session.get(f"{kube_api.url}/api/v1/nodes", params=params) as response:
            lines = [line async for line in response.content]
    assert len(lines) == 1 and b'"type": "ADDED"' in lines[0]
    assert kube_api.watch_requests("nodes")[0].query["watch"] == flag


async def test_custom_resources_are_pruned_defaulted_and_validated_by_their_crd_schema(
    kube_client, kube_api
):
    api = client.CustomObjectsApi(kube_client)
    body = basemodel("m1")
    body["spec"] |= {"modelFormat": {"name": "safetensors"}, "notInTheSchema": "x"}
    body["spec"]["modelConfiguration"] = {"anything": {"goes": 1}}
    created = await api.create_namespaced_custom_object(
        GROUP, VERSION, "default", "basemodels", body
    )
    assert "notInTheSchema" not in created["spec"]  # pruned
    assert created["spec"]["modelFormat"] == {
        "name": "safetensors",
        "operator": "Equal",
        "weight": 1,
    }
    assert created["spec"]["modelConfiguration"] == {"anything": {"goes": 1}}  # preserved
    with pytest.raises(ApiException) as caught:
        await api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            "basemodels",
            "m1",
            {"spec": {"maxTokens": "many"}},
            _content_type=MERGE,
        )
    assert caught.value.status == 422
    assert "spec.maxTokens" in json.loads(caught.value.body)["message"]
    with pytest.raises(kube_patch.ApiError) as missing:
        kube_api.create({**basemodel("m2"), "spec": {"modelType": "llama"}})
    assert missing.value.status == 422 and "storage" in missing.value.message
