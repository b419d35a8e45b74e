"""What one agent asks of the API server, in process, against the fake API server.

Aspects: the node watch asks for bookmarks and resumes from its resourceVersion when the
server ends the stream (no relist); only a 410 Gone relists, asking for a state not older than
the last one seen; 50 node watchers that lose their streams together relist spread over more
than 10 s; the sweep for missed deletes lists both kinds whole from the watch cache
(``resourceVersionMatch=NotOlderThan`` the newest version seen, no quorum read) and finds the
delete; per-key state of the ConfigMap writer and the Node labeller shrinks once removals are
written; Kopf is tuned with scanning off, jittered relists and jittered retry backoffs; the
fake counts requests per agent token.
"""

from __future__ import annotations

import asyncio
import pathlib

import kopf
import pytest
from kubernetes_asyncio import client, config

from handlers import lifecycle
from model_agent import agent, settings
from model_agent.kube import configmap, nodes
from tests.harness import modelfiles

NODE = "node-a"


async def _client(kubeconfig: str) -> client.ApiClient:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


async def test_the_node_watch_resumes_from_its_resource_version_and_relists_only_on_410(
    kube_api, kube_client
):
    kube_api.add_node(NODE, {"pool": "a"})
    watcher = nodes.NodeClient(kube_client, node_name=NODE)
    seen: list[dict] = []

    async def on_node(raw):
        seen.append(raw)

    first = await watcher.get()
    stop = asyncio.Event()
    since = first["metadata"]["resourceVersion"]
    task = asyncio.create_task(
        watcher.watch(on_node, timeout_seconds=1, stop=stop, window=0.2, since=since)
    )
    try:
        await kube_api.wait_for(lambda: len(kube_api.watch_requests("nodes")) >= 3, 10)
        assert watcher.relists == 0  # three streams ended by the server, resumed, no list
        queries = [r.query for r in kube_api.watch_requests("nodes")]
        assert all(q.get("allowWatchBookmarks", "").lower() == "true" for q in queries)
        assert queries[0]["resourceVersion"] == since
        kube_api.patch("nodes", NODE, {"metadata": {"labels": {"pool": "b"}}})
        await kube_api.wait_for(lambda: seen and seen[-1]["metadata"]["labels"]["pool"] == "b")
        kube_api.add_node("node-other")  # history this watch never saw, then forgotten
        kube_api.compact()
        kube_api.close_watches("nodes")

        def lists():
            return [r for r in kube_api.requests if r.path == "/api/v1/nodes" and not r.is_watch]

        await kube_api.wait_for(lambda: len(lists()) >= 1, 10)  # counted by the server
        await kube_api.wait_for(lambda: watcher.watch_state[0], 10)
        assert watcher.relists == 1 and len(lists()) == 1
        relist = lists()[0]
        assert relist.query["resourceVersionMatch"] == "NotOlderThan"
        assert relist.query["fieldSelector"] == f"metadata.name={NODE}"
    finally:
        stop.set()
        kube_api.close_watches("nodes")
        await asyncio.wait_for(task, 10)
    assert not watcher.watch_state[0]


async def test_50_node_watchers_that_lose_their_streams_together_relist_over_10_seconds(
    kube_api,
):
    """50 agents' node watches (one client each, as 50 processes would have) lose their
    streams and history at once; their relists arrive spread over the 20 s window."""
    names = [f"node-{i:02d}" for i in range(50)]
    clients, watchers = [], []
    for name in names:
        kube_api.add_node(name)
        clients.append(await _client(kube_api.add_agent(name)))
        watchers.append(nodes.NodeClient(clients[-1], node_name=name))
    stop = asyncio.Event()

    async def ignore(raw):
        return None

    tasks = [
        asyncio.create_task(w.watch(ignore, timeout_seconds=300, stop=stop, window=20.0))
        for w in watchers
    ]
    try:
        await kube_api.wait_for(lambda: kube_api.watching("nodes") == 50, 30)
        assert all(w.relists == 1 for w in watchers)  # the first list of each
        dropped = kube_api.counter.snapshot()[-1].at
        kube_api.add_node("node-other")
        kube_api.compact()
        kube_api.close_watches("nodes")

        def relists():
            return kube_api.counter.select(since=dropped, verbs=["list"], resource="nodes")

        await kube_api.wait_for(lambda: {h.agent for h in relists()} == set(names), 40)
        assert all(w.relists == 2 for w in watchers)
        times = sorted(h.at for h in relists())
        assert times[-1] - times[0] >= 10.0
        busiest = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
        assert busiest <= 15
    finally:
        stop.set()
        kube_api.close_watches("nodes")
        await asyncio.gather(*tasks, return_exceptions=True)
        for api in clients:
            await api.close()


async def test_the_sweep_lists_from_the_watch_cache_and_removes_a_model_deleted_unseen(
    kube_api, kube_client, tmp_path: pathlib.Path
):
    kube_api.add_node(NODE)
    local = modelfiles.write_model(
        tmp_path / "local",
        config={"model_type": "llama"},
        tensors={"w": ("BF16", [2, 2])},
    )
    for name in ("gone", "kept"):
        kube_api.create(
            {
                "apiVersion": "ome.io/v1beta1",
                "kind": "ClusterBaseModel",
                "metadata": {"name": name},
                "spec": {"storage": {"storageUri": f"local://{local}"}},
            }
        )
    created = kube_api.resource_version
    values = {"node_name": NODE, "models_root_dir": str(tmp_path / "models"), "namespace": "ome"}
    (tmp_path / "models").mkdir()
    instance = agent.Agent(
        config=settings.resolve(values, {}), api=kube_client, repair_interval=0.5
    )
    await instance.start()
    try:
        await kube_api.wait_for(lambda: _entry_count(kube_api) == 2, 10)
        instance.submit("MODIFIED", kube_api.get("clusterbasemodels", "kept"))
        kube_api.delete("clusterbasemodels", "gone")  # no event reaches the agent
        await kube_api.wait_for(lambda: _entry_count(kube_api) == 1, 10)
    finally:
        await instance.stop()
    sweeps = [
        r
        for r in kube_api.requests
        if r.path.endswith("/clusterbasemodels") and not r.is_watch and "limit" not in r.query
    ]
    assert sweeps, "no sweep listed the models"
    assert all(r.query["resourceVersionMatch"] == "NotOlderThan" for r in sweeps)
    versions = [int(r.query["resourceVersion"]) for r in sweeps]
    assert versions[0] >= created and versions == sorted(versions)
    first = next(r for r in kube_api.requests if r.path.endswith("/clusterbasemodels"))
    assert first.query.get("limit") == "500"  # the start-up inventory is the only quorum read


def _entry_count(kube_api) -> int:
    cm = kube_api.get("configmaps", NODE, "ome") or {}
    return sum(1 for k in (cm.get("data") or {}) if "basemodel" in k)


async def test_per_key_write_state_shrinks_when_models_go_away(kube_api, kube_client):
    kube_api.add_node(NODE)
    cm = configmap.ConfigMapWriter(kube_client, namespace="ome", node_name=NODE)
    labeller = nodes.NodeClient(kube_client, node_name=NODE)
    await cm.ensure()
    keys = [f"clusterbasemodel.m{i}" for i in range(40)]
    await asyncio.gather(*(cm.write(k, '{"status": "Ready"}') for k in keys))
    await asyncio.gather(*(labeller.set_label(f"models.ome.io/{k}", "Ready") for k in keys))
    assert len(cm.keys) == 40 and len(labeller.keys) == 40
    await asyncio.gather(*(cm.write(k, None) for k in keys[:30]))
    await asyncio.gather(*(labeller.set_label(f"models.ome.io/{k}", None) for k in keys[:30]))
    assert len(cm.keys) == 10 and len(labeller.keys) == 10
    assert not cm.knows(keys[0]) and cm.knows(keys[-1])
    assert cm.pending == {} and labeller.pending == {}
    data = kube_api.get("configmaps", NODE, "ome")["data"]
    assert sorted(data) == sorted(keys[30:])
    patches = [r for r in kube_api.requests if r.method == "PATCH" and "/configmaps/" in r.path]
    assert len(patches) == 70  # one per key and change: each patch carries only its key


def test_kopf_is_tuned_without_scanning_and_with_jittered_relists_and_backoffs():
    kopf_settings = kopf.OperatorSettings()
    config_ = settings.resolve({"node_name": NODE, "relist_window": "30s"}, {})
    lifecycle.tune(kopf_settings, config_)
    assert kopf_settings.scanning.disabled
    assert kopf_settings.peering.standalone and not kopf_settings.posting.enabled
    assert kopf_settings.watching.server_timeout == 600
    delays = sorted(kopf_settings.watching.reconnect_backoff for _ in range(50))
    assert all(0.1 <= d <= 30.1 for d in delays)
    assert delays[-1] - delays[0] >= 10.0
    backoffs = kopf_settings.networking.error_backoffs
    assert len(backoffs) == 8  # type: ignore[arg-type]
    assert list(backoffs) != list(backoffs)  # type: ignore[arg-type]


@pytest.mark.parametrize("token_agent", ["node-x"])
async def test_the_fake_counts_requests_by_verb_resource_and_agent(kube_api, token_agent):
    kube_api.add_node(token_agent)
    api = await _client(kube_api.add_agent(token_agent))
    try:
        core = client.CoreV1Api(api)
        await core.read_node(token_agent)
        await core.list_node()
        await core.patch_node(token_agent, {"metadata": {"labels": {"a": "b"}}})
    finally:
        await api.close()
    hits = kube_api.counter.select(agents=[token_agent])
    assert [(h.verb, h.resource, h.status) for h in hits] == [
        ("get", "nodes", 200),
        ("list", "nodes", 200),
        ("patch", "nodes", 200),
    ]
    assert kube_api.counter.verbs_seen(agents=[token_agent]) == {
        ("nodes", "get"),
        ("nodes", "list"),
        ("nodes", "patch"),
    }
