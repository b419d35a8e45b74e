"""The operator end to end: the real ``model-agent run`` process against the fake API server
and the local hub.

Aspects: a BaseModel selected by nodeSelector downloads and its ConfigMap key becomes Ready
with the analysis config and its node label Ready; a ClusterBaseModel not selected gets
nothing until the Node's labels change; deleting removes files, label and key; the agent
writes a model CR only to fill its empty spec fields; /healthz, /readyz, /livez and /metrics
answer on --port; two agents on one API server keep their own ConfigMap and labels; a delete
during a download cancels it within 2 s and leaves no files; a restart with 3 Ready models asks
the hub for no model bytes and the labels never leave Ready; 409s and 500s on ConfigMap and
Node patches converge without losing entries (another writer's keys included); an update of
the revision keeps the old files until the new ones are verified; SIGTERM stops the agent
within 15 s during a download, places nothing half-written, and the restarted agent resumes;
``kopf run -m handlers --standalone -A`` runs the same operator; an agent whose Node does not
exist exits with a clear error.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.harness import modelfiles
from tests.harness.operator import agent_process, free_port

DEADLINE = 60.0
pytestmark = pytest.mark.timeout(240)


def repo_files(tmp_path: pathlib.Path, name: str = "src", **config) -> dict[str, bytes]:
    return modelfiles.tiny_llama_files(tmp_path / name, **config)


def model(kind: str, name: str, uri: str, namespace: str = "default", **storage) -> dict:
    metadata = {"name": name} | ({"namespace": namespace} if kind == "BaseModel" else {})
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"modelFormat": {"name": "safetensors"}, "storage": {"storageUri": uri, **storage}},
    }


class View:
    """Test-side reads of what the agents reported."""

    def __init__(self, kube) -> None:
        self.kube = kube

    def entry(self, node: str, key: str) -> dict | None:
        cm = self.kube.get("configmaps", node, "ome")
        text = ((cm or {}).get("data") or {}).get(key)
        return json.loads(text) if text else None

    def status(self, node: str, key: str) -> str | None:
        return (self.entry(node, key) or {}).get("status")

    def label(self, node: str, key: str) -> str | None:
        return (self.kube.get("nodes", node)["metadata"].get("labels") or {}).get(key)

    def wait(self, predicate, deadline: float = DEADLINE) -> None:
        self.kube.wait_for_sync(predicate, timeout=deadline)

    def ready(self, node: str, key: str, label: str) -> None:
        self.wait(lambda: self.status(node, key) == "Ready" and self.label(node, label) == "Ready")


def agent(kube_api, node: str, hub, tmp_path: pathlib.Path, *args: str):
    return agent_process(
        kube_api,
        node,
        args=("--config-map-sync-interval", "0.2", "--download-retry", "1", *args),
        env={"HF_ENDPOINT": hub.endpoint},
        workdir=tmp_path / node,
        timeout=60,
    )


def file_requests(hub) -> int:
    """Requests for model files (resolve URLs on the hub, anything on the CDN host)."""
    return sum(1 for r in list(hub.log) if "/resolve/" in r.path or r.host.startswith(hub.cdn_host))


def cr_writes(kube_api) -> list:
    return [
        r
        for r in list(kube_api.requests)
        if r.method in ("PATCH", "PUT", "POST", "DELETE") and "basemodels" in r.path
    ]


def test_selection_download_ready_relabel_and_delete_through_the_real_process(
    kube_api, hf_hub_in_thread, tmp_path
):
    hub, view = hf_hub_in_thread, View(kube_api)
    hub.add_repo("org/llama", repo_files(tmp_path))
    kube_api.add_node("node-a", {"gpu": "h100"})
    kube_api.add_node("node-b", {"gpu": "a100"})
    with (
        agent(kube_api, "node-a", hub, tmp_path) as a,
        agent(kube_api, "node-b", hub, tmp_path) as b,
    ):
        kube_api.create(model("BaseModel", "llama", "hf://org/llama", nodeSelector={"gpu": "h100"}))
        kube_api.create(
            model("ClusterBaseModel", "big", "hf://org/llama", nodeSelector={"pool": "big"})
        )
        key, label = "default.basemodel.llama", "models.ome.io/default.basemodel.llama"
        view.ready("node-a", key, label)
        entry = view.entry("node-a", key)
        assert entry["config"]["modelType"] == "llama"
        assert (
            entry["config"]["maxTokens"] == 4096 or "decodedModelConfiguration" in entry["config"]
        )
        files = a.models_root / key
        assert (files / "model.safetensors").is_file()
        # node-b is not selected: its own ConfigMap exists but holds nothing of llama
        view.wait(lambda: kube_api.get("configmaps", "node-b", "ome") is not None)
        assert view.entry("node-b", key) is None
        assert view.label("node-b", label) is None
        assert view.entry("node-a", "clusterbasemodel.big") is None
        # the cluster model waits for the node labels
        kube_api.patch("nodes", "node-b", {"metadata": {"labels": {"pool": "big"}}})
        view.ready("node-b", "clusterbasemodel.big", "models.ome.io/clusterbasemodel.big")
        assert view.entry("node-a", "clusterbasemodel.big") is None
        assert (b.models_root / "clusterbasemodel.big" / "config.json").is_file()
        # delete removes files, label and key
        kube_api.delete("basemodels", "llama", "default")
        view.wait(lambda: view.entry("node-a", key) is None and view.label("node-a", label) is None)
        view.wait(lambda: not files.exists())
        # the only CR writes are the spec write-back's merge patches (one per model)
        assert {r.method for r in cr_writes(kube_api)} <= {"PATCH"}
        assert len(cr_writes(kube_api)) <= 2
        for path in ("/healthz", "/readyz", "/livez"):
            with urllib.request.urlopen(a.health_url + path, timeout=10) as answer:
                assert answer.status == 200, path
        with urllib.request.urlopen(a.health_url + "/metrics", timeout=10) as answer:
            exposition = answer.read().decode()
        assert 'model_agent_configmap_operations_total{operation="update",result="success"}' in (
            exposition
        )
        assert "model_agent_downloads_success_total" in exposition
        code, log = a.stop()
        assert code == 0, log
        assert "configmap update" in log
    assert "hf_" not in a.log


def test_a_delete_during_a_download_cancels_it_within_two_seconds(
    kube_api, hf_hub_in_thread, tmp_path
):
    hub, view = hf_hub_in_thread, View(kube_api)
    files = repo_files(tmp_path)
    files["big.dat"] = b"z" * 2_000_000
    hub.add_repo("org/slow", files)
    hub.faults.throttle(100_000)
    kube_api.add_node("node-a")
    with agent(kube_api, "node-a", hub, tmp_path) as a:
        kube_api.create(model("BaseModel", "slow", "hf://org/slow"))
        key = "default.basemodel.slow"
        view.wait(lambda: hub.bytes_served("*big.dat") > 0)
        assert view.status("node-a", key) == "Updating"
        kube_api.delete("basemodels", "slow", "default")
        view.wait(
            lambda: (
                view.entry("node-a", key) is None
                and view.label("node-a", f"models.ome.io/{key}") is None
            ),
            deadline=10,
        )
        # at 100 kB/s big.dat needs 20 s: the delete cancelled the transfer mid-way
        assert hub.bytes_served("*big.dat") < 2_000_000
        left = sorted(str(p) for p in (a.models_root / key).rglob("*"))
        assert not (a.models_root / key).exists(), (left, a.log_text()[-4000:])


def test_a_restart_with_three_ready_models_downloads_nothing_and_keeps_labels_ready(
    kube_api, hf_hub_in_thread, tmp_path
):
    hub, view = hf_hub_in_thread, View(kube_api)
    hub.add_repo("org/m", repo_files(tmp_path))
    kube_api.add_node("node-a")
    names = ("m1", "m2", "m3")
    labels = [f"models.ome.io/default.basemodel.{n}" for n in names]
    workdir = tmp_path / "node-a"
    with agent(kube_api, "node-a", hub, tmp_path) as first:
        for name in names:
            kube_api.create(model("BaseModel", name, "hf://org/m"))
        for name, label in zip(names, labels, strict=True):
            view.ready("node-a", f"default.basemodel.{name}", label)
        first.stop()
    data_requests = file_requests(hub)
    served = hub.bytes_served()
    seen: set[str | None] = set()
    stop = threading.Event()

    def watch_labels() -> None:
        while not stop.is_set():
            node_labels = kube_api.get("nodes", "node-a")["metadata"].get("labels") or {}
            seen.update(node_labels.get(label) for label in labels)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch_labels, daemon=True)
    watcher.start()
    node_patches_before = sum(
        1 for r in kube_api.requests if r.method == "PATCH" and "/nodes/" in r.path
    )
    try:
        with agent_process(
            kube_api,
            "node-a",
            args=("--config-map-sync-interval", "0.2"),
            env={"HF_ENDPOINT": hub.endpoint},
            workdir=workdir,
            timeout=60,
        ) as second:
            view.wait(lambda: "agent started" in second.log_text())
            for name in names:
                assert view.status("node-a", f"default.basemodel.{name}") == "Ready"
    finally:
        stop.set()
        watcher.join(5)
    assert seen == {"Ready"}
    assert file_requests(hub) == data_requests
    assert hub.bytes_served() == served
    node_patches = sum(1 for r in kube_api.requests if r.method == "PATCH" and "/nodes/" in r.path)
    assert node_patches == node_patches_before


def test_conflicts_and_server_errors_on_patches_converge_without_losing_entries(
    kube_api, hf_hub_in_thread, tmp_path
):
    hub, view = hf_hub_in_thread, View(kube_api)
    hub.add_repo("org/m", repo_files(tmp_path))
    kube_api.add_node("node-a")
    kube_api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "node-a", "namespace": "ome"},
            "data": {"other-writer.key": "keep"},
        }
    )
    with agent(kube_api, "node-a", hub, tmp_path) as a:
        kube_api.fail_next(6, method="PATCH", path_contains="configmaps", status=409)
        kube_api.fail_next(4, method="PATCH", path_contains="configmaps", status=500)
        kube_api.fail_next(3, method="PATCH", path_contains="/nodes/", status=409)
        kube_api.fail_next(2, method="PATCH", path_contains="/nodes/", status=500)
        for i in range(4):
            kube_api.create(model("BaseModel", f"c{i}", "hf://org/m"))
        try:
            for i in range(4):
                view.ready(
                    "node-a", f"default.basemodel.c{i}", f"models.ome.io/default.basemodel.c{i}"
                )
        except TimeoutError:
            state = (kube_api.get("configmaps", "node-a", "ome"), kube_api.get("nodes", "node-a"))
            raise AssertionError((state, a.log_text()[-6000:])) from None
        kube_api.patch("configmaps", "node-a", {"data": {"other-writer.late": "also"}}, "ome")
        kube_api.delete("basemodels", "c0", "default")
        view.wait(lambda: view.entry("node-a", "default.basemodel.c0") is None)
        data = kube_api.get("configmaps", "node-a", "ome")["data"]
        assert data["other-writer.key"] == "keep"
        assert data["other-writer.late"] == "also"
        assert {k for k in data if ".basemodel." in k} == {
            f"default.basemodel.c{i}" for i in (1, 2, 3)
        }


def test_a_revision_update_keeps_the_old_files_until_the_new_ones_are_verified(
    kube_api, hf_hub_in_thread, tmp_path
):
    hub, view = hf_hub_in_thread, View(kube_api)
    old = hub.add_repo("org/u", repo_files(tmp_path, "v1"))
    kube_api.add_node("node-a")
    key, label = "default.basemodel.u", "models.ome.io/default.basemodel.u"
    with agent(kube_api, "node-a", hub, tmp_path) as a:
        kube_api.create(model("BaseModel", "u", f"hf://org/u@{old}"))
        view.ready("node-a", key, label)
        files = repo_files(tmp_path, "v2", max_position_embeddings=8192)
        files["extra.dat"] = b"n" * 300_000
        new = hub.add_repo("org/u", files)
        hub.faults.throttle(200_000)
        kube_api.patch(
            "basemodels", "u", {"spec": {"storage": {"storageUri": f"hf://org/u@{new}"}}}
        )
        view.wait(lambda: hub.bytes_served("*extra.dat") > 0)
        config = json.loads((a.models_root / key / "config.json").read_text())
        assert config["max_position_embeddings"] == 4096
        assert view.label("node-a", label) == "Ready"
        view.wait(
            lambda: (
                ((view.entry("node-a", key) or {}).get("config") or {})
                .get("artifact", {})
                .get("sha")
                == new
            )
        )
        config = json.loads((a.models_root / key / "config.json").read_text())
        assert config["max_position_embeddings"] == 8192
        assert (a.models_root / key / "extra.dat").stat().st_size == 300_000
        assert view.label("node-a", label) == "Ready"


def test_sigterm_stops_the_agent_within_fifteen_seconds_during_a_download(
    kube_api, hf_hub_in_thread, tmp_path
):
    hub = hf_hub_in_thread
    files = repo_files(tmp_path)
    files["big.dat"] = b"q" * 2_000_000
    hub.add_repo("org/slow", files)
    hub.faults.throttle(400_000)
    kube_api.add_node("node-a")
    with agent(kube_api, "node-a", hub, tmp_path) as a:
        kube_api.create(model("BaseModel", "slow", "hf://org/slow"))
        View(kube_api).wait(lambda: hub.bytes_served("*big.dat") > 800_000)
        code, log = a.stop()
        # 0, not -9: it exited on SIGTERM before agent_process's 15 s SIGKILL
        assert code == 0, log[-3000:]
        destination = a.models_root / "default.basemodel.slow"
        assert not (destination / "big.dat").exists()  # nothing half-placed
    # the restarted agent resumes: it asks only for the bytes it does not have yet
    first_run = hub.bytes_served("*big.dat")
    hub.faults.throttle(None)
    view = View(kube_api)
    with agent(kube_api, "node-a", hub, tmp_path):
        view.ready("node-a", "default.basemodel.slow", "models.ome.io/default.basemodel.slow")
    assert (destination / "big.dat").stat().st_size == 2_000_000
    assert hub.bytes_served("*big.dat") - first_run < 2_000_000


def test_kopf_run_with_the_handlers_module_works_the_same(kube_api, hf_hub_in_thread, tmp_path):
    hub, view = hf_hub_in_thread, View(kube_api)
    hub.add_repo("org/k", repo_files(tmp_path))
    kube_api.add_node("node-k")
    root = tmp_path / "models"
    root.mkdir()
    env = {
        **os.environ,
        "KUBECONFIG": kube_api.kubeconfig,
        "NODE_NAME": "node-k",
        "MODELS_ROOT_DIR": str(root),
        "MODEL_AGENT_PORT": str(free_port()),
        "MODEL_AGENT_METRICS_PORT": str(free_port()),
        "MODEL_AGENT_CONFIG_MAP_SYNC_INTERVAL": "0.2",
        "HF_ENDPOINT": hub.endpoint,
    }
    log_path = tmp_path / "kopf.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "-m", "handlers", "--standalone", "-A"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        view.wait(lambda: kube_api.watching("basemodels") > 0 or proc.poll() is not None)
        assert proc.poll() is None, log_path.read_text()
        kube_api.create(model("ClusterBaseModel", "via-kopf", "hf://org/k"))
        view.ready("node-k", "clusterbasemodel.via-kopf", "models.ome.io/clusterbasemodel.via-kopf")
        assert (root / "clusterbasemodel.via-kopf" / "config.json").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, log_path.read_text()[-3000:]


def test_an_agent_on_a_node_that_does_not_exist_exits_with_a_clear_error(kube_api, tmp_path):
    proc = agent_process(kube_api, "no-such-node", workdir=tmp_path / "x", timeout=30)
    with pytest.raises(RuntimeError) as failed:
        proc.start()
    message = str(failed.value)
    assert "agent cannot start" in message and "no-such-node" in message
    assert proc.returncode not in (0, None)
