"""Peer distribution between real ``model-agent run`` processes (issue 15).

Three agents, each its own Node, models root and loopback address (127.0.0.11-13, the same
peer port), share one fake API server and one local hub whose data path is throttled, so a
node that fetched everything from the origin would be visible in the hub's byte count. In
module order:

- nodes that start together: every node ends with the exact bytes, and the origin served
  about one copy (not three); peer bytes show in the metrics;
- a hostile node advertises that it holds a model and serves flipped bytes: it is dropped as
  corrupt, every node still ends with the exact bytes;
- a node that holds another revision is never asked for a file;
- a node killed while others fetch from it costs a retry: the others are Ready with exact
  bytes, and the killed one resumes after a restart;
- requests without the token (or with another), for a model not placed, for a file outside
  the manifest, or for another revision are refused by a real agent's peer server.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.harness import hub
from tests.harness.fleet import Fleet
from tests.harness.kube import FakeKube
from tests.harness.operator import free_port

pytestmark = pytest.mark.timeout(420)

AGENTS = 3
TOKEN = "peer-token-" + "x" * 32
MiB = 1024**2


def cluster_model(name: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {"modelFormat": {"name": "safetensors"}, "storage": {"storageUri": uri}},
    }


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


class World:
    def __init__(self, kube: FakeKube, fleet: Fleet, local_hub: hub.LocalHub, port: int):
        self.kube, self.fleet, self.hub, self.port = kube, fleet, local_hub, port

    def key(self, name: str) -> str:
        return f"clusterbasemodel.{name}"

    def status(self, node: str, name: str) -> str | None:
        value = self.fleet.entries(node).get(self.key(name))
        return json.loads(value)["status"] if value else None

    def ready_on(self, nodes: list[str], name: str) -> bool:
        return all(self.status(n, name) == "Ready" for n in nodes)

    def files(self, node: str, name: str) -> dict[str, str]:
        agent = self.fleet.agents[self.fleet.names.index(node)]
        root = agent.models_root / self.key(name)
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    def peer_url(self, index: int) -> str:
        return f"http://127.0.0.{index + 11}:{self.port}"

    def metric(self, index: int, name: str, **labels: str) -> float:
        agent = self.fleet.agents[index]
        with urllib.request.urlopen(f"{agent.health_url}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def publish(self, repo: str, files: dict[str, bytes]) -> str:
        self.hub.add_repo(repo, files, lfs_threshold=1024)
        return self.hub.commit_of(repo)

    def expected(self, files: dict[str, bytes]) -> dict[str, str]:
        return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("peers")
    token_file = work / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    with FakeKube() as kube, hub.LocalHub().serve_in_thread() as local_hub:
        fleet = Fleet(
            kube,
            AGENTS,
            work / "agents",
            args=(
                *("--peer-port", str(port), "--peer-token-file", str(token_file)),
                *("--config-map-sync-interval", "1s"),  # progress shows while it moves
            ),
            per_agent_args={i: ("--peer-address", f"127.0.0.{i + 11}") for i in range(AGENTS)},
            env={"HF_ENDPOINT": local_hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"},
            stagger=0.3,
            timeout=180,
        )
        with fleet:
            world = World(kube, fleet, local_hub, port)
            fleet.wait(lambda: all(_advertised(kube, n) for n in fleet.names), 60)
            yield world
        assert not kube.server_errors, kube.server_errors


def _advertised(kube: FakeKube, node: str) -> bool:
    cm = kube.get("configmaps", node, "ome") or {}
    return "models.ome.io/peer-address" in ((cm.get("metadata") or {}).get("annotations") or {})


def test_each_agent_advertises_its_peer_address_on_its_configmap(world):
    for index, node in enumerate(world.fleet.names):
        cm = world.kube.get("configmaps", node, "ome")
        annotations = cm["metadata"]["annotations"]
        assert annotations["models.ome.io/peer-address"] == world.peer_url(index)


def test_nodes_that_start_together_split_the_origin_and_hold_exact_bytes(world):
    files = {
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "model-1.safetensors": payload(1, 40 * MiB),
        "model-2.safetensors": payload(2, 24 * MiB),
    }
    world.publish("org/shared", files)
    size = sum(len(v) for v in files.values())
    world.hub.faults.throttle(16 * MiB)
    before = world.hub.bytes_served()
    sources: set[str] = set()

    def ready_watching_progress() -> bool:
        for node in world.fleet.names:
            value = world.fleet.entries(node).get(world.key("shared"))
            progress = json.loads(value).get("progress", {}) if value else {}
            sources.update(progress.get("bytesBySource", {}))
        return world.ready_on(world.fleet.names, "shared")

    try:
        world.kube.create(cluster_model("shared", "hf://org/shared"))
        world.fleet.wait(ready_watching_progress, 180, interval=0.05)
    finally:
        world.hub.faults.throttle(None)
    origin = world.hub.bytes_served() - before
    for node in world.fleet.names:
        assert world.files(node, "shared") == world.expected(files), node
    # Without peering each node takes a whole copy from the origin: 3x the model.
    assert origin <= 1.5 * size, (origin, size)
    from_peers = sum(
        world.metric(i, "model_agent_download_bytes_total", source="peer") for i in range(AGENTS)
    )
    assert from_peers >= size, from_peers  # most of the other two copies came from peers
    served = sum(world.metric(i, "model_agent_peer_served_bytes_total") for i in range(AGENTS))
    assert served >= from_peers
    assert "peer" in sources  # the ConfigMap progress showed bytes by source while Updating


class HostilePeer:
    """A node that claims to hold a model (right or wrong revision) and serves flipped bytes."""

    def __init__(self, files: dict[str, bytes], revision: str, *, corrupt: bool = True):
        self.files, self.revision, self.corrupt = files, revision, corrupt
        self.file_requests = 0
        self.port = free_port()
        self._loop_thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def holding(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "state": "ready",
            "received": sum(len(v) for v in self.files.values()),
            "files": {
                name: {
                    "identity": f"{len(data)}:sha256:{hashlib.sha256(data).hexdigest()}",
                    "size": len(data),
                    "ranges": [[0, len(data)]],
                }
                for name, data in self.files.items()
            },
        }

    async def _holding(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.holding())

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self.file_requests += 1
        data = self.files[request.match_info["path"]]
        start, last = (int(v) for v in request.headers["Range"][6:].split("-"))
        body = bytes(b ^ 0xFF for b in data[start : last + 1]) if self.corrupt else b""
        return web.Response(
            status=206,
            body=body,
            headers={
                "Content-Range": f"bytes {start}-{last}/{len(data)}",
                "X-Model-Agent-Identity": request.headers.get("X-Model-Agent-Identity", ""),
            },
        )

    def __enter__(self) -> HostilePeer:
        import asyncio

        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/peer/v1/models/{key}", self._holding)
        app.router.add_get("/peer/v1/models/{key}/files/{path:.+}", self._file)
        self._runner = web.AppRunner(app)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.9", self.port).start())
        self._loop = loop
        self._loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
        self._loop_thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import asyncio

        assert self._runner is not None and self._loop_thread is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(5)
        self._loop.close()

    def advertise(self, kube: FakeKube, key: str, node: str = "hostile-node") -> None:
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": node,
                    "namespace": "ome",
                    "labels": {"models.ome/basemodel-status": "true"},
                    "annotations": {
                        "models.ome.io/node-name": node,
                        "models.ome.io/peer-address": f"http://127.0.0.9:{self.port}",
                    },
                },
                "data": {key: json.dumps({"name": key.split(".", 1)[1], "status": "Ready"})},
            }
        )


def test_a_peer_serving_corrupted_ranges_is_dropped_and_nodes_hold_exact_bytes(world):
    files = {
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "weights.safetensors": payload(3, 20 * MiB),
    }
    revision = world.publish("org/tainted", files)
    with HostilePeer(files, revision) as hostile:
        hostile.advertise(world.kube, world.key("tainted"), "hostile-a")
        world.kube.create(cluster_model("tainted", "hf://org/tainted"))
        world.fleet.wait(lambda: world.ready_on(world.fleet.names, "tainted"), 180)
    for node in world.fleet.names:
        assert world.files(node, "tainted") == world.expected(files), node
    assert hostile.file_requests >= 1  # it was asked, and its bytes were caught
    rejected = sum(
        world.metric(i, "model_agent_peer_rejections_total", reason="corrupt")
        for i in range(AGENTS)
    )
    assert rejected >= 1
    logs = "".join(agent.log_text() for agent in world.fleet.agents)
    assert "stopped fetching clusterbasemodel.tainted from peer hostile-a (corrupt)" in logs


def test_a_peer_with_another_revision_is_never_asked_for_a_file(world):
    files = {
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "weights.safetensors": payload(4, 8 * MiB),
    }
    world.publish("org/revised", files)
    with HostilePeer(files, "0" * 40, corrupt=True) as other:
        other.advertise(world.kube, world.key("revised"), "old-revision")
        world.kube.create(cluster_model("revised", "hf://org/revised"))
        world.fleet.wait(lambda: world.ready_on(world.fleet.names, "revised"), 180)
    assert other.file_requests == 0
    for node in world.fleet.names:
        assert world.files(node, "revised") == world.expected(files), node


def test_a_real_node_holding_an_older_revision_serves_nothing_of_the_new_one(world):
    older, newer = world.fleet.names[1], world.fleet.names[2]
    first = {"config.json": b'{"model_type": "llama"}', "weights.safetensors": payload(6, 8 * MiB)}
    second = {"config.json": b'{"model_type": "llama"}', "weights.safetensors": payload(7, 8 * MiB)}
    world.publish("org/drift", first)
    world.kube.patch("nodes", older, {"metadata": {"labels": {"drift": "yes"}}})
    model = cluster_model("drift", "hf://org/drift")
    model["spec"]["storage"]["nodeSelector"] = {"drift": "yes"}
    world.kube.create(model)
    world.fleet.wait(lambda: world.ready_on([older], "drift"), 120)
    world.publish("org/drift", second)  # main moves on: the next node pins the new commit
    served = world.metric(1, "model_agent_peer_served_bytes_total")
    before = world.hub.bytes_served()
    world.kube.patch("nodes", newer, {"metadata": {"labels": {"drift": "yes"}}})
    world.fleet.wait(lambda: world.ready_on([older, newer], "drift"), 120)
    assert world.files(newer, "drift") == world.expected(second)
    assert world.files(older, "drift") == world.expected(first)
    assert world.metric(1, "model_agent_peer_served_bytes_total") == served
    assert world.hub.bytes_served() - before == sum(len(v) for v in second.values())


def test_a_peer_killed_mid_transfer_costs_a_retry_not_a_failure(world):
    files = {
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "weights.safetensors": payload(5, 48 * MiB),
    }
    world.publish("org/killed", files)
    victim = world.fleet.agents[0]
    world.hub.faults.throttle(8 * MiB)
    try:
        world.kube.create(cluster_model("killed", "hf://org/killed"))

        def victim_serves() -> bool:
            return world.metric(0, "model_agent_peer_served_bytes_total") > 0

        world.fleet.wait(victim_serves, 120, interval=0.1)
        assert victim.proc is not None
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        others = world.fleet.names[1:]
        world.fleet.wait(lambda: world.ready_on(others, "killed"), 180)
    finally:
        world.hub.faults.throttle(None)
    for node in others:
        assert world.files(node, "killed") == world.expected(files), node
    victim.returncode, victim.proc = None, None
    victim.start()
    world.fleet.wait(lambda: world.ready_on(world.fleet.names, "killed"), 180)
    assert world.files(world.fleet.names[0], "killed") == world.expected(files)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """The status and body of a GET; status 0 when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError:
        return 0, b""


def test_the_peer_server_refuses_what_it_must_not_serve(world):
    base = world.peer_url(1)
    key = world.key("shared")
    name = "model-2.safetensors"
    holding_url = f"{base}/peer/v1/models/{key}"
    file_url = f"{holding_url}/files/{name}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    good, body = _get(holding_url, auth)
    assert good == 200
    held = json.loads(body)
    identity = held["files"][name]["identity"]
    revision = held["revision"]
    exact = {**auth, "X-Model-Agent-Revision": revision, "X-Model-Agent-Identity": identity}
    status, data = _get(file_url, {**exact, "Range": "bytes=0-1023"})
    assert status == 206 and data == payload(2, 24 * MiB)[:1024]
    # No token, another token, a token in the wrong scheme: 401 before any lookup.
    assert _get(file_url, {"Range": "bytes=0-9"})[0] == 401
    assert _get(holding_url)[0] == 401
    assert _get(file_url, {**exact, "Authorization": "Bearer wrong-token-xxxxxxxx"})[0] == 401
    assert _get(file_url, {**exact, "Authorization": f"Basic {TOKEN}"})[0] == 401
    # A model this node does not hold, a file outside the manifest, another revision.
    assert _get(f"{base}/peer/v1/models/clusterbasemodel.nothing", auth)[0] == 404
    for outside in ("../agent.log", "..%2F..%2Fagent.log", "%2e%2e/%2e%2e/agent.log", "x/../../y"):
        assert _get(f"{holding_url}/files/{outside}", {**exact, "Range": "bytes=0-0"})[0] in (
            404,
            400,
        ), outside
    other = {**exact, "X-Model-Agent-Revision": "0" * 40}
    assert _get(file_url, {**other, "Range": "bytes=0-9"})[0] == 409
    wrong = {**exact, "X-Model-Agent-Identity": "10:sha256:" + "0" * 64}
    assert _get(file_url, {**wrong, "Range": "bytes=0-9"})[0] == 409
    assert _get(file_url, {**exact, "Range": "bytes=0-9,20-29"})[0] == 416
    unauthorized = world.metric(1, "model_agent_peer_requests_total", result="unauthorized")
    assert unauthorized >= 4


def test_an_agent_with_peering_on_stops_cleanly_on_sigterm(world):
    # Last in the module: it stops one of the agents. Its peer server closes with the agent.
    agent = world.fleet.agents[2]
    began = time.monotonic()
    code, log = agent.stop(grace=15)
    assert code == 0, log[-2000:]
    assert time.monotonic() - began < 15
    assert "agent stopped" in log
    assert _get(f"{world.peer_url(2)}/peer/v1/models/x", {})[0] == 0
