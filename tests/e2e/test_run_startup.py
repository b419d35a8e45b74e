"""`model-agent run` start-up failures are one clear exit, not a hang.

Aspects: a --port already in use stops the agent with a non-zero exit and a message naming
--port, before the agent touches its ConfigMap or Node; the test harness restarts an agent whose
randomly chosen port was taken meanwhile.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.harness import operator

pytestmark = pytest.mark.timeout(120)


def test_a_port_in_use_stops_the_agent_with_a_message_naming_the_flag(kube_api, tmp_path):
    kube_api.add_node("node-a")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            liveness = spare.getsockname()[1]
        env = {**os.environ, "KUBECONFIG": str(kube_api.kubeconfig), "NODE_NAME": "node-a"}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "model_agent.cli",
                "run",
                "--port",
                str(port),
                "--metrics-port",
                str(port),
                "--models-root-dir",
                str(tmp_path / "models"),
                "--liveness-endpoint",
                f"http://127.0.0.1:{liveness}/healthz",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert result.returncode != 0, result.stderr[-2000:]
    assert f"--port {port}" in result.stderr
    assert kube_api.get("configmaps", "node-a", "ome") is None  # never started the agent


def test_the_harness_restarts_an_agent_whose_free_port_was_taken_meanwhile(kube_api, monkeypatch):
    """free_port() releases the port it found; another socket may take it before the agent
    binds it. The agent exits at once (above), and agent_process retries with fresh ports."""
    kube_api.add_node("node-b")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        first = [taken.getsockname()[1]]
        fresh = operator.free_port
        monkeypatch.setattr(operator, "free_port", lambda: first.pop() if first else fresh())
        with operator.agent_process(kube_api, "node-b") as agent:
            assert agent.port != taken.getsockname()[1]
            assert kube_api.get("configmaps", "node-b", "ome") is not None
