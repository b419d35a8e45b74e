"""`model-agent run` start-up failures are one clear exit, not a hang.

Aspects: a --port already in use stops the agent with a non-zero exit and a message naming
--port, before the agent touches its ConfigMap or Node.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

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
