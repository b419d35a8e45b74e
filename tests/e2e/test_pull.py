"""`model-agent pull` as a user runs it: a real subprocess against the local hub served from a
thread (``serve_in_thread``).

Aspects: stdout is exactly one JSON object (the ConfigMap ``config`` with ``artifact``), every
file lands at ``<path>/<path in repo>`` with its sha256, and nothing temporary is left inside or
beside ``--path``; kill -9 at ~40% then a rerun completes, asks only for the missing ranges
(requests that do not start at byte 0) and serves < 1.35x the model in total; persistent
corruption exits 1 with one line naming the file and both digests and the file never appears;
bad usage exits 2; a rerun on a complete model downloads nothing; the token never reaches
stdout, stderr or the CDN.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.harness import hub, modelfiles

REPO = "org/model"
TOKEN = "hf_e2eSecretToken1234"


@pytest.fixture
def local_hub() -> Iterator[hub.LocalHub]:
    server = hub.LocalHub()
    with server.serve_in_thread():
        yield server


def make_model(directory: pathlib.Path, floats_per_shard: int) -> dict[str, pathlib.Path]:
    tensors = {"a": ("F32", [floats_per_shard]), "b": ("F32", [floats_per_shard])}
    modelfiles.write_model(directory, shards=2, tensors=tensors)
    return {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*")) if p.is_file()}


def command(local_hub: hub.LocalHub, dest: pathlib.Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "model_agent.cli", "pull", f"hf://{REPO}", "--path", str(dest),
        "--param", f"endpoint={local_hub.endpoint}", "--multipart-threshold", "256Ki",
        "--stall-timeout", "2s", *extra,
    ]  # fmt: skip


def environment(tmp_path: pathlib.Path) -> dict[str, str]:
    return {**os.environ, "MODEL_AGENT_STATE_DIR": str(tmp_path / "state")}


def run(args: list[str], tmp_path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, env=environment(tmp_path), check=False
    )


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_pulled(source: dict[str, pathlib.Path], dest: pathlib.Path) -> None:
    assert {str(p.relative_to(dest)) for p in dest.rglob("*")} == set(source)
    for name, path in source.items():
        assert sha256(dest / name) == sha256(path), name
    assert os.listdir(dest.parent) == [dest.name]  # nothing beside --path either


def test_pull_prints_one_json_config_and_places_every_verified_file(
    local_hub: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    source = make_model(tmp_path / "source", 150_000)
    sha = local_hub.add_repo(REPO, source, private=True, token=TOKEN)
    dest = tmp_path / "out" / "model"
    result = run(command(local_hub, dest, "--param", f"token={TOKEN}"), tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert result.stdout.count("\n") == 1
    assert config["artifact"] == {"sha": sha, "parentPath": {}, "childrenPaths": []}
    assert config["modelType"] == "llama"
    assert_pulled(source, dest)
    assert "downloading file" in result.stderr and "verification" in result.stderr
    assert TOKEN not in result.stderr + result.stdout
    assert not local_hub.cdn_saw_authorization()

    served = len(local_hub.log)
    again = run(command(local_hub, dest, "--param", f"token={TOKEN}"), tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout) == config
    assert len(local_hub.log) == served  # no request at all


def test_kill_9_mid_pull_then_rerun_fetches_only_missing_ranges(
    local_hub: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    source = make_model(tmp_path / "source", 750_000)  # two 3 MB shards
    local_hub.add_repo(REPO, source)
    total = sum(p.stat().st_size for p in source.values())
    dest = tmp_path / "out" / "model"
    local_hub.faults.throttle(1_000_000)
    process = subprocess.Popen(
        command(local_hub, dest),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment(tmp_path),
    )
    try:
        deadline = time.monotonic() + 30
        while local_hub.bytes_served() < 0.4 * total:
            assert process.poll() is None, "pull ended before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert not any((dest / name).exists() for name in source if name.endswith(".safetensors"))
    first_run = len(local_hub.log)
    local_hub.faults.throttle(None)
    result = run(command(local_hub, dest), tmp_path)
    assert result.returncode == 0, result.stderr
    assert_pulled(source, dest)
    resumed = [r.range for r in local_hub.log[first_run:] if r.range and r.status == 206]
    assert any(not r.startswith("bytes=0-") for r in resumed), resumed
    assert local_hub.bytes_served() < 1.35 * total


def test_persistent_corruption_exits_1_naming_the_file_and_digests(
    local_hub: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    source = make_model(tmp_path / "source", 100_000)
    local_hub.add_repo(REPO, source)
    name = "model-00001-of-00002.safetensors"
    local_hub.faults.corrupt(name)
    dest = tmp_path / "out" / "model"
    result = run(command(local_hub, dest, "--download-retry", "1"), tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert name in last and sha256(source[name]) in last and "got " in last
    assert "ERROR" in result.stderr and "Traceback" not in result.stderr
    assert not (dest / name).exists()


@pytest.mark.parametrize(
    "extra", [["--param", "nonsense"], ["--param", "colour=blue"], ["--concurrency", "0"]]
)
def test_usage_errors_exit_2(
    local_hub: hub.LocalHub, tmp_path: pathlib.Path, extra: list[str]
) -> None:
    result = run(command(local_hub, tmp_path / "model", *extra), tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_invalid_uri_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    args = [sys.executable, "-m", "model_agent.cli", "pull", "hf://", "--path", str(tmp_path)]
    result = run(args, tmp_path)
    assert result.returncode == 2
    assert "hf://" in result.stderr
