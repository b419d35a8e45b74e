"""`model-agent pull github://...` as a user runs it: a real subprocess against the local GitHub
REST API and CDN (served from a thread), the token from ``GITHUB_TOKEN``.

Aspects: a private repository's release lands verified by its asset digests, stdout is one JSON
config, a rerun downloads nothing, and the token never reaches the CDN; without the token the
same URI exits 1 with one clear ``Unauthorized`` line.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

from tests.harness import github as github_mod
from tests.harness import modelfiles

TOKEN = "ghp_testonlytoken0000000000000000000000"


def run(tmp_path: pathlib.Path, api: github_mod.LocalGitHub, uri: str, **env: str):
    environment = {
        **os.environ,
        "MODEL_AGENT_STATE_DIR": str(tmp_path / "state"),
        "GITHUB_API_URL": api.endpoint,
        **env,
    }
    command = [
        sys.executable, "-m", "model_agent.cli", "pull", uri, "--path", str(tmp_path / "model"),
        "--multipart-threshold", "256Ki", "--stall-timeout", "5s",
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=90, env=environment, check=False
    )


def test_a_private_release_lands_verified_and_without_a_token_fails_clearly(
    github_in_thread: github_mod.LocalGitHub, tmp_path: pathlib.Path
) -> None:
    source = tmp_path / "source"
    modelfiles.write_model(source, shards=2, tensors={"a": ("F32", [300_000])})
    files = {p.name: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    github_in_thread.add_release("acme/llama", "v1", files)
    github_in_thread.make_private("acme/llama", TOKEN)

    denied = run(tmp_path, github_in_thread, "github://acme/llama@v1")
    assert denied.returncode == 1
    assert "Unauthorized" in denied.stderr and "private" in denied.stderr

    first = run(tmp_path, github_in_thread, "github://acme/llama@v1", GITHUB_TOKEN=TOKEN)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["modelType"] == "llama"
    dest = tmp_path / "model"
    assert {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()} == files
    state = json.loads(next((tmp_path / "state" / "manifests").glob("*.json")).read_text())
    assert {e["path"]: e["checksum"] for e in state["files"]} == {
        n: f"sha256:{hashlib.sha256(d).hexdigest()}" for n, d in files.items()
    }
    assert not any("Authorization" in r.headers for r in github_in_thread.log.matching(kind="data"))

    data_requests = len(github_in_thread.log.matching(kind="data"))
    second = run(tmp_path, github_in_thread, "github://acme/llama@v1", GITHUB_TOKEN=TOKEN)
    assert second.returncode == 0, second.stderr
    assert len(github_in_thread.log.matching(kind="data")) == data_requests
