"""`model-agent pull gs://...` as a user runs it: a real subprocess with Application Default
Credentials from a service-account key file (local token endpoint), against
gcp-storage-emulator behind the fault proxy (served from a thread).

Aspects: a real model (config, safetensors shards, one of them composed from two objects)
lands verified, stdout is one JSON config, the manifest names md5 or crc32c for every file
(none size-only) and a rerun downloads nothing; a private bucket read anonymously and a missing
prefix each exit 1 with one clear line.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from tests.harness import gcs, modelfiles

PREFIX = "llama/3b"


def run(
    tmp_path: pathlib.Path, proxy: gcs.GCSFaultProxy, key: pathlib.Path, uri: str, *args: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "MODEL_AGENT_STATE_DIR": str(tmp_path / "state"),
        "GOOGLE_APPLICATION_CREDENTIALS": str(key),
        "STORAGE_EMULATOR_HOST": proxy.endpoint,
    }
    command = [
        sys.executable, "-m", "model_agent.cli", "pull", uri, "--path", str(tmp_path / "model"),
        "--multipart-threshold", "256Ki", "--stall-timeout", "5s", *args,
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=90, env=environment, check=False
    )


def test_pull_places_a_verified_model_and_a_rerun_downloads_nothing(
    gcs_emulator: gcs.GCSEmulator, gcs_bucket: str, gcs_proxy_in_thread: gcs.GCSFaultProxy, tmp_path
) -> None:
    proxy = gcs_proxy_in_thread
    source = tmp_path / "source"
    modelfiles.write_model(source, shards=2, tensors={"a": ("F32", [300_000])})
    files = {str(p.relative_to(source)): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    names = sorted(n for n in files if n.endswith(".safetensors"))
    for name, data in files.items():
        if name != names[0]:
            gcs_emulator.upload(gcs_bucket, f"{PREFIX}/{name}", data)
    half = len(files[names[0]]) // 2
    gcs_emulator.upload(gcs_bucket, "parts/0", files[names[0]][:half])
    gcs_emulator.upload(gcs_bucket, "parts/1", files[names[0]][half:])
    gcs_emulator.compose(gcs_bucket, f"{PREFIX}/{names[0]}", ["parts/0", "parts/1"])
    proxy.composite.add(f"{PREFIX}/{names[0]}")
    gcs_emulator.upload(gcs_bucket, "llama/3b-instruct/model.safetensors", b"not this one")
    with gcs.TokenServer().serve_in_thread() as tokens:
        key = gcs.write_key_file(tmp_path / "key.json", tokens.url)
        uri = f"gs://{gcs_bucket}/{PREFIX}"
        first = run(tmp_path, proxy, key, uri)
        assert first.returncode == 0, first.stderr
        config = json.loads(first.stdout)
        assert config["modelType"] == "llama"
        dest = tmp_path / "model"
        placed = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
        assert placed == files
        assert not proxy.log.matching("*3b-instruct*")
        state = json.loads(next((tmp_path / "state" / "manifests").glob("*.json")).read_text())
        checksums = {e["path"]: e["checksum"] for e in state["files"]}
        assert checksums[names[0]].startswith("crc32c:")
        assert all(c.startswith(("md5:", "crc32c:")) for c in checksums.values())

        data_requests = len(proxy.log.matching(kind="data"))
        second = run(tmp_path, proxy, key, uri)
        assert second.returncode == 0, second.stderr
        assert len(proxy.log.matching(kind="data")) == data_requests


def test_unauthorized_and_missing_prefix_exit_1_with_one_clear_line(
    gcs_emulator: gcs.GCSEmulator, gcs_bucket: str, gcs_proxy_in_thread: gcs.GCSFaultProxy, tmp_path
) -> None:
    gcs_emulator.upload(gcs_bucket, f"{PREFIX}/config.json", b"{}")
    gcs_proxy_in_thread.private = True
    key = tmp_path / "unused.json"
    private = run(
        tmp_path,
        gcs_proxy_in_thread,
        key,
        f"gs://{gcs_bucket}/{PREFIX}",
        "--param",
        "auth=anonymous",
    )
    assert private.returncode == 1
    assert "GCS denied access (401)" in private.stderr and "Unauthorized" in private.stderr
    gcs_proxy_in_thread.private = False
    missing = run(
        tmp_path, gcs_proxy_in_thread, key, f"gs://{gcs_bucket}/absent", "--param", "auth=anonymous"
    )
    assert missing.returncode == 1
    assert "no objects under 'absent/'" in missing.stderr
