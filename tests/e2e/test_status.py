"""``model-agent status`` as a user runs it: through kubectl's plugin mechanism and directly,
against the fake API server.

Aspects: ``kubectl plugin list`` finds ``kubectl-model_agent``; ``kubectl model-agent status``
honours ``--kubeconfig``, ``--context`` (and that context's namespace), ``-n`` and ``-A``;
``-o json`` parses; ``--watch`` prints one plain frame after another off a terminal and
redraws in place on one (a pty); an unreachable API server is one line and exit 1.
"""

from __future__ import annotations

import json
import os
import pathlib
import pty
import select
import shutil
import subprocess
import sys
import time

import pytest

from tests.harness.kube import FakeKube

BIN = pathlib.Path(sys.executable).parent
KEY_A, KEY_B = "team-a.basemodel.m1", "team-b.basemodel.m2"


def model(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "BaseModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"storage": {"storageUri": "hf://o/r"}},
    }


def populate(kube: FakeKube) -> None:
    for n in ("n1", "n2"):
        kube.add_node(n)
    kube.create(model("m1", "team-a"))
    kube.create(model("m2", "team-b"))
    progress = {
        "phase": "downloading",
        "totalBytes": 2 * 1024**3,
        "completedBytes": 1024**3,
        "totalFiles": 2,
        "completedFiles": 1,
        "speedBytesPerSec": 64 * 1024**2,
    }
    entries = {
        "n1": {KEY_A: {"name": "m1", "status": "Ready"}, KEY_B: {"name": "m2", "status": "Ready"}},
        "n2": {
            KEY_A: {"name": "m1", "status": "Updating", "progress": progress},
            KEY_B: {"name": "m2", "status": "Failed", "reason": "NotFound", "message": "no repo"},
        },
    }
    for node, data in entries.items():
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": node,
                    "namespace": "ome",
                    "labels": {"models.ome/basemodel-status": "true", "node": node},
                },
                "data": {k: json.dumps(v) for k, v in data.items()},
            }
        )


def with_context(kube: FakeKube, path: pathlib.Path) -> pathlib.Path:
    """The fake's kubeconfig plus a context ``team-b`` whose default namespace is team-b."""
    config = json.loads(pathlib.Path(kube.kubeconfig).read_text())
    config["contexts"].append(
        {"name": "team-b", "context": {"cluster": "fake", "user": "fake", "namespace": "team-b"}}
    )
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def kubectl_bin() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not on PATH: install kubectl 1.31 or newer (docs/kubectl.md)")
    return found


def env() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return environ


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, env=env(), timeout=60)


def test_kubectl_finds_the_plugin_and_it_honours_kubeconfig_context_and_namespaces(
    kube_api, kubectl_bin, tmp_path
):
    populate(kube_api)
    listed = run(kubectl_bin, "plugin", "list")
    assert str(BIN / "kubectl-model_agent") in listed.stdout, listed.stdout + listed.stderr
    config = str(with_context(kube_api, tmp_path / "config"))

    def status(*args: str) -> str:
        result = run(kubectl_bin, "model-agent", "status", "--kubeconfig", config, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    default = status()  # the current context has no namespace: "default" holds nothing
    assert "m1" not in default and "m2" not in default
    team_a = status("-n", "team-a")
    assert "BaseModel/team-a/m1" in team_a and "m2" not in team_a
    assert "ETA 16s" in team_a and "1.0 GiB / 2.0 GiB" in team_a
    team_b = status("--context", "team-b")
    assert "BaseModel/team-b/m2" in team_b and "NotFound: no repo" in team_b
    every = status("-A")
    rows = [line.split() for line in every.splitlines() if line.startswith("BaseModel/")]
    assert rows == [
        ["BaseModel/team-a/m1", "1", "1", "0", "2"],
        ["BaseModel/team-b/m2", "1", "0", "1", "2"],
    ]
    doc = json.loads(status("-A", "-o", "json"))
    assert [m["nodes"]["ready"] for m in doc["models"]] == [1, 1]


def test_watch_prints_plain_frames_off_a_terminal(kube_api):
    populate(kube_api)
    command = [str(BIN / "model-agent"), "status", "-A", "--watch", "--interval", "0.2"]
    command += ["--kubeconfig", kube_api.kubeconfig]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env()) as proc:
        assert proc.stdout is not None
        frames = 0
        try:
            while frames < 2:
                line = proc.stdout.readline()
                assert line, "status --watch ended early"
                assert "\x1b" not in line
                frames += line.startswith("--- ")
        finally:
            proc.terminate()


def test_watch_redraws_in_place_on_a_terminal(kube_api):
    populate(kube_api)
    command = [str(BIN / "model-agent"), "status", "-A", "--watch", "--interval", "0.2"]
    command += ["--kubeconfig", kube_api.kubeconfig]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, stdout=follower, stderr=follower, env=env())
    os.close(follower)
    screen = b""
    try:
        deadline = time.monotonic() + 30
        while screen.count(b"\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
            if select.select([leader], [], [], 1.0)[0]:
                screen += os.read(leader, 65536)
    finally:
        proc.terminate()
        proc.wait(10)
        os.close(leader)
    assert screen.count(b"\x1b[H\x1b[2J") >= 2, screen
    last = screen.split(b"\x1b[H\x1b[2J")[-1].decode()
    assert "Every 0.2s" in last and "BaseModel/team-b/m2" in last


def test_an_unreachable_api_server_is_one_line_and_exit_1(tmp_path):
    with FakeKube() as kube:
        config = pathlib.Path(kube.kubeconfig).read_text()
    (tmp_path / "config").write_text(config)
    result = run(str(BIN / "model-agent"), "status", "--kubeconfig", str(tmp_path / "config"))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_kubeconfig_is_a_usage_error(tmp_path):
    result = run(str(BIN / "model-agent"), "status", "--kubeconfig", str(tmp_path / "absent"))
    assert result.returncode == 2 and "kubeconfig" in result.stderr
