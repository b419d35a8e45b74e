"""The API budget of real ``model-agent run`` processes, measured by the fake API server.

Four agents (the 2-core test machine cannot hold the 50 of ``benchmarks/api_budget.py`` in the
suite's time; the 50-agent relist spread is proven in process by
tests/integration/test_api_budget.py), each with its own Node, models root and token, so the
fake counts every request by verb, resource and agent. In module order:

- idle for a minute (readiness probed meanwhile): at most one request per agent per minute
  beyond the three watches each holds (basemodels, clusterbasemodels, its Node), which stay
  open; /readyz costs no request;
- a model selected on no node costs those nodes zero writes (and zero requests);
- a model selected on every node costs each agent a bounded number of writes;
- after every watch is dropped and the history compacted, each agent relists each kind
  once (the node from the watch cache) and holds its three watches again;
- least privilege: every (resource, verb) granted by manifests/rbac-*.yaml is one the agents
  were seen using, but the models' ``update`` kept for OME's sake (an hf:// model of each
  kind with a token Secret exercises secrets get and the spec write-back's get and patch).
"""

from __future__ import annotations

import json
import pathlib
import time
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from tests.harness import hub, modelfiles
from tests.harness.fleet import MODEL_WATCHES, Fleet, drop_all_watches
from tests.harness.kube import FakeKube
from tests.harness.operator import free_port

pytestmark = pytest.mark.timeout(420)
AGENTS = 4
MANIFESTS = pathlib.Path(__file__).resolve().parents[2] / "manifests"
#: Granted though the agent never sends it: OME's verb for the spec write-back, kept so that a
#: cluster switching agents needs no RBAC change (manifests/rbac-cluster.yaml says so).
KEPT_FOR_OME = {("basemodels", "update"), ("clusterbasemodels", "update")}


def cluster_model(name: str, uri: str, **storage: object) -> dict:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {"modelFormat": {"name": "safetensors"}, "storage": {"storageUri": uri, **storage}},
    }


class World:
    def __init__(self, kube: FakeKube, fleet: Fleet, local: pathlib.Path, hub_: hub.LocalHub):
        self.kube, self.fleet, self.local, self.hub = kube, fleet, local, hub_

    def ready_everywhere(self, key: str) -> bool:
        return all('"Ready"' in self.fleet.entries(n).get(key, "") for n in self.fleet.names)

    def models_known(self) -> list[int]:
        """Each agent's count of known models, from its Kopf liveness probe (no API call)."""
        counts = []
        for agent in self.fleet.agents:
            with urllib.request.urlopen(agent.liveness_url, timeout=5) as answer:
                counts.append(json.loads(answer.read())["agent"]["models"])
        return counts


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("api-budget")
    local = modelfiles.write_model(
        work / "local",
        config={"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
        tensors={"model.embed_tokens.weight": ("BF16", [4, 4])},
    )
    token = work / "peer-token"
    token.write_text("api-budget-peer-token-0123456789")
    with FakeKube() as kube, hub.LocalHub().serve_in_thread() as local_hub:
        kube.create(cluster_model("base", f"local://{local}", nodeSelector={"pool": "sim"}))
        fleet = Fleet(
            kube,
            AGENTS,
            work / "agents",
            # Peering on, as manifests/daemonset.yaml runs the agent: it costs nothing at idle.
            args=(
                *("--relist-window", "8s", "--config-map-sync-interval", "1s"),
                *("--peer-port", str(free_port()), "--peer-token-file", str(token)),
            ),
            per_agent_args={i: ("--peer-address", f"127.0.0.{i + 11}") for i in range(AGENTS)},
            env={"HF_ENDPOINT": local_hub.endpoint},
            labels={"pool": "sim"},
            stagger=0.5,
            timeout=180,
        )
        with fleet:
            world = World(kube, fleet, local, local_hub)
            fleet.wait(lambda: world.ready_everywhere("clusterbasemodel.base"), 120)
            yield world
        assert not kube.server_errors, kube.server_errors


def test_idle_agents_send_at_most_one_request_per_minute_beyond_their_watches(world):
    kube, fleet = world.kube, world.fleet
    time.sleep(3)  # the start-up writes are answered
    began = time.monotonic()
    while time.monotonic() - began < 61:
        for agent in fleet.agents:  # readiness probes, as the kubelet sends them
            with urllib.request.urlopen(f"{agent.health_url}/readyz", timeout=5) as answer:
                assert answer.status == 200
        time.sleep(5)
    ended = time.monotonic()
    minutes = (ended - began) / 60
    idle = kube.counter.select(since=began, until=ended, agents=fleet.names)
    for name in fleet.names:
        plain = [h for h in idle if h.agent == name and h.verb != "watch"]
        assert len(plain) / minutes <= 1.0, (name, plain)
        reopened = [h for h in idle if h.agent == name and h.verb == "watch"]
        assert reopened == [], (name, reopened)
    held = kube.counter.open_watches()
    for name in fleet.names:
        assert held[name] == dict.fromkeys(MODEL_WATCHES, 1), (name, held[name])


def test_a_model_selected_on_no_node_costs_those_nodes_zero_writes(world):
    kube, fleet = world.kube, world.fleet
    known = world.models_known()
    began = time.monotonic()
    kube.create(cluster_model("nowhere", f"local://{world.local}", nodeSelector={"pool": "x"}))
    fleet.wait(lambda: all(n > k for n, k in zip(world.models_known(), known, strict=True)), 60)
    time.sleep(2)  # anything the agents were going to send has been sent
    sent = kube.counter.select(since=began, agents=fleet.names)
    assert [h for h in sent if h.is_write] == []
    assert sent == []  # not a read either
    assert all("clusterbasemodel.nowhere" not in fleet.entries(n) for n in fleet.names)


def test_a_model_selected_on_every_node_costs_each_a_bounded_number_of_writes(world):
    kube, fleet = world.kube, world.fleet
    began = time.monotonic()
    kube.create(cluster_model("everywhere", f"local://{world.local}"))
    fleet.wait(lambda: world.ready_everywhere("clusterbasemodel.everywhere"), 60)
    time.sleep(2)
    writes = [h for h in kube.counter.select(since=began, agents=fleet.names) if h.is_write]
    for name in fleet.names:
        mine = kube.counter.by_verb_and_resource(h for h in writes if h.agent == name)
        # the entry and the label (Updating, Ready), at most one progress write, two Events,
        # at most one spec write-back patch
        assert sum(mine.values()) <= 8, (name, mine)
        assert mine.get(("patch", "configmaps"), 0) >= 1
        assert mine.get(("patch", "nodes"), 0) >= 1


def test_after_every_watch_is_dropped_each_agent_relists_once_and_watches_again(world):
    kube, fleet = world.kube, world.fleet
    began = time.monotonic()
    drop_all_watches(kube)
    fleet.wait(fleet.all_watching, 90)
    fleet.wait(
        lambda: all(
            {h.resource for h in kube.counter.select(since=began, agents=[n], verbs=["list"])}
            == set(MODEL_WATCHES)
            for n in fleet.names
        ),
        60,
    )
    time.sleep(2)
    lists = kube.counter.select(since=began, agents=fleet.names, verbs=["list"])
    per = kube.counter.by_verb_and_resource(lists)
    assert per == {("list", r): AGENTS for r in MODEL_WATCHES}, per
    node_lists = [
        r
        for r in list(kube.requests)
        if r.path == "/api/v1/nodes" and not r.is_watch and r.query.get("resourceVersionMatch")
    ]
    assert len(node_lists) >= AGENTS
    assert all(r.query["resourceVersionMatch"] == "NotOlderThan" for r in node_lists)


def test_every_rbac_verb_in_the_manifests_is_one_the_agents_use(world, tmp_path):
    kube, fleet = world.kube, world.fleet
    world.hub.add_repo(
        "org/private", modelfiles.tiny_llama_files(tmp_path / "src"), private=True, token="tk"
    )
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf", "namespace": "default"},
            "data": {"token": "dGs="},
        }
    )
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf", "namespace": "ome"},
            "data": {"token": "dGs="},
        }
    )
    only_first = {"kubernetes.io/hostname": fleet.names[0]}
    kube.create(cluster_model("private", "hf://org/private", key="hf", nodeSelector=only_first))
    namespaced = cluster_model("private", "hf://org/private", key="hf", nodeSelector=only_first)
    namespaced["kind"] = "BaseModel"
    namespaced["metadata"]["namespace"] = "default"
    kube.create(namespaced)
    first = fleet.names[0]
    fleet.wait(
        lambda: all(
            '"Ready"' in fleet.entries(first).get(k, "")
            for k in ("clusterbasemodel.private", "default.basemodel.private")
        ),
        120,
    )
    if not kube.counter.select(agents=fleet.names, verbs=["list"], resource="nodes"):
        drop_all_watches(kube)  # the node list happens only on 410 (run alone: force one)
        fleet.wait(
            lambda: kube.counter.select(agents=fleet.names, verbs=["list"], resource="nodes"),
            60,
        )
    time.sleep(2)
    seen = kube.counter.verbs_seen(agents=fleet.names)
    granted = _granted() - KEPT_FOR_OME
    assert granted - seen == set(), f"granted but never used: {sorted(granted - seen)}"
    assert seen - granted == set(), f"used but not granted: {sorted(seen - granted)}"


def _granted() -> set[tuple[str, str]]:
    pairs = set()
    for path in sorted(MANIFESTS.glob("rbac-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("Role", "ClusterRole"):
                for rule in doc.get("rules") or []:
                    for resource in rule.get("resources") or []:
                        for verb in rule.get("verbs") or []:
                            pairs.add((resource, verb))
    return pairs
