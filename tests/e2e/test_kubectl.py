"""The user's path driven by the real ``kubectl`` against the fake API server, with the real
agent processes.

Aspects: ``kubectl apply -f`` of the examples (default validation) and the agents make them
Ready on the selected nodes; ``kubectl get cm <node> -n ome -o jsonpath=...`` reads the
entry; ``kubectl model-agent status`` (the kubectl plugin) shows the rollout over two agents,
in progress and done; relabelling a node with ``kubectl label`` drops the model there; a
changed spec applied client-side and then server-side (a conflict with the client-side
manager until ``--force-conflicts``) is followed by the agents; ``kubectl delete`` removes
files, labels and entries; ``kopf run -m handlers --standalone -A`` (the local-development
path) does the same. Also what kubectl asks of the server: validation rejects an unknown
field, ``kubectl explain``, printer columns, ``kubectl apply --dry-run=server -k manifests/``
and server-side apply conflicts.

Every test skips, saying so, where ``kubectl`` is not on PATH (docs/kubectl.md says how to
get it).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.harness import modelfiles
from tests.harness.kube import FakeKube
from tests.harness.operator import agent_process, free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests" / "examples"
HF_REPO = "sentence-transformers/all-MiniLM-L6-v2"
KEY, LABEL = "default.basemodel.minilm", "models.ome.io/default.basemodel.minilm"
DEADLINE = 60.0
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def kubectl_bin() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not on PATH: install kubectl 1.31 or newer (docs/kubectl.md)")
    return found


class Kubectl:
    """``kubectl --kubeconfig <the fake's>``, with the venv's bin on PATH (for the plugin)."""

    def __init__(self, binary: str, kube: FakeKube) -> None:
        self.binary, self.kube = binary, kube
        bin_dir = str(pathlib.Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("KUBECONFIG", None)

    def command(self, args: tuple[str, ...]) -> list[str]:
        # a plugin takes kubectl's flags after its name, and reads --kubeconfig itself
        return [self.binary, *args, "--kubeconfig", self.kube.kubeconfig]

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            self.command(args),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout if check else result.stdout + result.stderr

    def fails(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            self.command(args),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0, result.stdout
        return result.stderr


def example(name: str) -> str:
    """An example as a user applies it, its ``storage.path`` left to the agent's
    ``--models-root-dir`` (the test's agents keep their files under their own temp roots)."""
    text = (EXAMPLES / name).read_text()
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("path:"))


def entry(kube: FakeKube, node: str) -> dict | None:
    cm = kube.get("configmaps", node, "ome")
    text = ((cm or {}).get("data") or {}).get(KEY)
    return json.loads(text) if text else None


def label(kube: FakeKube, node: str) -> str | None:
    return (kube.get("nodes", node)["metadata"].get("labels") or {}).get(LABEL)


def ready(kube: FakeKube, node: str) -> bool:
    return (entry(kube, node) or {}).get("status") == "Ready" and label(kube, node) == "Ready"


def gone(kube: FakeKube, node: str) -> bool:
    return entry(kube, node) is None and label(kube, node) is None


def agent(kube: FakeKube, node: str, hub, tmp_path: pathlib.Path):
    return agent_process(
        kube,
        node,
        args=("--config-map-sync-interval", "0.2", "--download-retry", "1"),
        env={"HF_ENDPOINT": hub.endpoint},
        workdir=tmp_path / node,
        timeout=60,
    )


def setup_cluster(k: Kubectl, hub, tmp_path: pathlib.Path, *, big: bool = False) -> None:
    extra = {"tokenizer.model": os.urandom(4 * 1024 * 1024)} if big else None
    hub.add_repo(HF_REPO, modelfiles.tiny_llama_files(tmp_path / "src", extra=extra))
    for node in ("gpu-a", "gpu-b"):
        k.kube.add_node(node, {"models.example.com/pool": "embeddings"})
    k.kube.add_node("cpu-c")
    k.run("create", "secret", "generic", "hf-token", "-n", "default", "--from-literal=token=hf_x")


def test_apply_ready_status_relabel_reapply_and_delete_with_kubectl(
    kube_api, hf_hub_in_thread, tmp_path, kubectl_bin
):
    hub, k = hf_hub_in_thread, Kubectl(kubectl_bin, kube_api)
    setup_cluster(k, hub, tmp_path, big=True)
    hub.faults.throttle(400_000)  # slow enough to see the rollout in progress
    with (
        agent(kube_api, "gpu-a", hub, tmp_path) as a,
        agent(kube_api, "gpu-b", hub, tmp_path) as b,
        agent(kube_api, "cpu-c", hub, tmp_path),
    ):
        assert "basemodel.ome.io/minilm created" in k.run(
            "apply", "-f", "-", stdin=example("basemodel-hf.yaml")
        )
        kube_api.wait_for_sync(
            lambda: all(
                (entry(kube_api, n) or {}).get("progress", {}).get("completedBytes", 0) > 0
                for n in ("gpu-a", "gpu-b")
            ),
            timeout=DEADLINE,
        )
        rollout = k.run("model-agent", "status")
        assert "BaseModel/default/minilm" in rollout
        assert "Updating" in rollout and "ETA" in rollout and "MiB" in rollout, rollout
        assert "cpu-c" not in rollout  # not selected, reports nothing
        hub.faults.throttle(None)
        kube_api.wait_for_sync(lambda: ready(kube_api, "gpu-a"), timeout=DEADLINE)
        kube_api.wait_for_sync(lambda: ready(kube_api, "gpu-b"), timeout=DEADLINE)

        path = "{.data.default\\.basemodel\\.minilm}"
        value = json.loads(k.run("get", "cm", "gpu-a", "-n", "ome", "-o", f"jsonpath={path}"))
        assert value["status"] == "Ready" and value["config"]["modelType"] == "llama"
        done = k.run("model-agent", "status", "-n", "default")
        row = next(line for line in done.splitlines() if "minilm" in line)
        assert row.split()[1:] == ["2", "0", "0", "2"], done  # ready, updating, failed, selected
        listed = k.run("get", "basemodels")
        assert "VENDOR" in listed.splitlines()[0] and "sentence-transformers" in listed

        # relabel: gpu-b stops being selected, its agent drops the model
        k.run("label", "node", "gpu-b", "models.example.com/pool-")
        kube_api.wait_for_sync(lambda: gone(kube_api, "gpu-b"), timeout=DEADLINE)
        assert ready(kube_api, "gpu-a")

        # a changed spec, client-side: the model now wants the other pool
        moved = example("basemodel-hf.yaml").replace("pool: embeddings", "pool: other")
        assert "configured" in k.run("apply", "-f", "-", stdin=moved)
        kube_api.wait_for_sync(lambda: gone(kube_api, "gpu-a"), timeout=DEADLINE)
        k.run("label", "node", "gpu-b", "models.example.com/pool=other")
        kube_api.wait_for_sync(lambda: ready(kube_api, "gpu-b"), timeout=DEADLINE)

        # and back, server-side: kubectl's client-side manager owns the field
        original = example("basemodel-hf.yaml")
        conflict = k.fails("apply", "--server-side", "-f", "-", stdin=original)
        assert "conflict" in conflict and ".spec.storage.nodeSelector" in conflict
        assert "serverside-applied" in k.run(
            "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=original
        )
        kube_api.wait_for_sync(lambda: ready(kube_api, "gpu-a"), timeout=DEADLINE)
        kube_api.wait_for_sync(lambda: gone(kube_api, "gpu-b"), timeout=DEADLINE)

        k.run("delete", "-f", "-", stdin=original)
        kube_api.wait_for_sync(lambda: gone(kube_api, "gpu-a"), timeout=DEADLINE)
        assert kube_api.get("basemodels", "minilm", "default") is None
        assert not (a.models_root / KEY).exists() and not (b.models_root / KEY).exists()
        assert "No models found." in k.run("model-agent", "status")


def test_kopf_run_standalone_makes_a_kubectl_applied_model_ready(
    kube_api, hf_hub_in_thread, tmp_path, kubectl_bin
):
    hub, k = hf_hub_in_thread, Kubectl(kubectl_bin, kube_api)
    setup_cluster(k, hub, tmp_path)
    root = tmp_path / "models"
    root.mkdir()
    env = {
        **os.environ,
        "KUBECONFIG": kube_api.kubeconfig,
        "NODE_NAME": "gpu-a",
        "MODELS_ROOT_DIR": str(root),
        "MODEL_AGENT_PORT": str(free_port()),
        "MODEL_AGENT_METRICS_PORT": str(free_port()),
        "MODEL_AGENT_CONFIG_MAP_SYNC_INTERVAL": "0.2",
        "HF_ENDPOINT": hub.endpoint,
    }
    kopf = pathlib.Path(sys.executable).parent / "kopf"
    command = [str(kopf), "run", "-m", "handlers", "--standalone", "-A"]
    command += ["--liveness", f"http://127.0.0.1:{free_port()}/healthz"]
    with (tmp_path / "kopf.log").open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        k.run("apply", "-f", "-", stdin=example("basemodel-hf.yaml"))
        kube_api.wait_for_sync(lambda: ready(kube_api, "gpu-a"), timeout=DEADLINE)
        assert (root / KEY / "model.safetensors").is_file()
        k.run("delete", "basemodel", "minilm")
        kube_api.wait_for_sync(lambda: gone(kube_api, "gpu-a"), timeout=DEADLINE)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
    log_text = (tmp_path / "kopf.log").read_text()
    assert "CERTIFICATE_VERIFY_FAILED" not in log_text and "Unauthorized" not in log_text


def test_kubectl_validates_explains_and_prints_columns(kube_api, kubectl_bin):
    k = Kubectl(kubectl_bin, kube_api)
    bogus = example("basemodel-hf.yaml").replace("  vendor:", "  bogus: 1\n  vendor:")
    assert 'unknown field "spec.bogus"' in k.fails("apply", "-f", "-", stdin=bogus)
    assert kube_api.get("basemodels", "minilm", "default") is None
    explained = k.run("explain", "basemodel.spec.storage")
    assert "storageUri" in explained and "nodeSelector" in explained
    for name in ("basemodel-hf.yaml", "basemodel-oci.yaml", "clusterbasemodel-affinity.yaml"):
        k.run("apply", "-f", str(EXAMPLES / name))
    header, *rows = k.run("get", "basemodels", "-A").splitlines()
    assert header.split()[:5] == ["NAMESPACE", "NAME", "DISABLED", "VERSION", "VENDOR"]
    assert any(r.split()[1:4] == ["llama-3-1-8b-instruct", "3.1", "meta"] for r in rows), rows
    clustered = k.run("get", "clusterbasemodels")
    assert "llama-3-3-70b-instruct-trtllm" in clustered and "tensorrtllm" in clustered
    wide = k.run("get", "basemodel", "minilm", "-o", "custom-columns=URI:.spec.storage.storageUri")
    assert f"hf://{HF_REPO}@main" in wide


def test_kubectl_server_dry_run_of_the_manifests_stores_nothing_then_applies(kube_api, kubectl_bin):
    k = Kubectl(kubectl_bin, kube_api)
    dry = k.run("apply", "--dry-run=server", "-k", str(REPO / "manifests"))
    assert "daemonset.apps/ome-model-agent-daemonset created (server dry run)" in dry
    assert kube_api.list("daemonsets", "ome") == [] and kube_api.list("clusterroles") == []
    k.run("apply", "-k", str(REPO / "manifests"))
    assert [d["metadata"]["name"] for d in kube_api.list("daemonsets", "ome")] == [
        "ome-model-agent-daemonset"
    ]
    assert "unchanged" in k.run("apply", "-k", str(REPO / "manifests"))


def test_server_side_apply_conflicts_name_the_field_and_force_takes_it_over(kube_api, kubectl_bin):
    k = Kubectl(kubectl_bin, kube_api)
    original = example("basemodel-hf.yaml")
    assert "serverside-applied" in k.run("apply", "--server-side", "-f", "-", stdin=original)
    changed = original.replace("  vendor:", '  version: "2"\n  vendor:')
    # no conflict: no manager owns spec.version yet
    k.run("apply", "--server-side", "--field-manager=other", "-f", "-", stdin=changed)
    mine = changed.replace('version: "2"', 'version: "3"')
    message = k.fails("apply", "--server-side", "-f", "-", stdin=mine)
    assert 'conflict with "other"' in message and ".spec.version" in message
    k.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=mine)
    stored = kube_api.get("basemodels", "minilm", "default")
    assert stored["spec"]["version"] == "3"
    owners = {m["manager"]: m for m in stored["metadata"]["managedFields"]}
    assert "f:version" in owners["kubectl"]["fieldsV1"]["f:spec"]
    assert "f:version" not in owners["other"]["fieldsV1"].get("f:spec", {})
