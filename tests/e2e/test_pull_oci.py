"""`model-agent pull oci://...` as a user runs it: a real subprocess, the real oci SDK, against
the local object store served from a thread, with UserPrincipal auth from a config file.

Aspects: a real model (config, safetensors shards, one uploaded in 5 MiB parts, tokenizer)
lands verified at ``<path>/<name minus the prefix>`` and stdout is one JSON config whose
``artifact.sha`` is the pinned listing digest; a rerun downloads nothing; the
``oci://{namespace}@{region}/...`` form with the endpoint and profile from the environment; the
TensorRT-LLM filter via ``--param modelFormat=tensorrtllm --shape H100``; a missing bucket, a
rejected key and an unknown ``auth`` each exit 1 with one distinct line.
"""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.harness import modelfiles, objectstore

BUCKET = "models"
PREFIX = "llama/3b"
MIB = 1024 * 1024


@pytest.fixture
def store() -> Iterator[objectstore.LocalObjectStore]:
    server = objectstore.LocalObjectStore()
    with server.serve_in_thread():
        yield server


def write_config(
    store: objectstore.LocalObjectStore, directory: pathlib.Path, profile: str = "DEFAULT"
) -> pathlib.Path:
    key_file = directory / "key.pem"
    key_file.write_text(store.config["key_content"])
    key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    config = directory / "config"
    fields = {k: store.config[k] for k in ("user", "fingerprint", "tenancy", "region")}
    body = "".join(f"{k}={v}\n" for k, v in fields.items())
    config.write_text(f"[{profile}]\n{body}key_file={key_file}\n")
    return config


def run(
    tmp_path: pathlib.Path, uri: str, dest: pathlib.Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "MODEL_AGENT_STATE_DIR": str(tmp_path / "state"),
        "OCI_CONFIG_FILE": str(tmp_path / "config"),
        **env,
    }
    command = [
        sys.executable, "-m", "model_agent.cli", "pull", uri, "--path", str(dest),
        "--multipart-threshold", "256Ki", "--stall-timeout", "5s", *args,
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=environment, check=False
    )


def upload(
    store: objectstore.LocalObjectStore, source: pathlib.Path, prefix: str = PREFIX
) -> dict[str, bytes]:
    files = {str(p.relative_to(source)): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    for name, data in files.items():
        part = 5 * MIB if len(data) > 5 * MIB else None
        store.add_object(BUCKET, f"{prefix}/{name}", data, multipart_part_size=part)
    return files


def test_pull_places_a_verified_model_and_prints_its_config(
    store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    source = tmp_path / "source"
    tensors = {"a": ("F32", [1_400_000]), "b": ("F32", [100_000])}  # ~6 MB shards: multipart
    modelfiles.write_model(source, shards=2, tensors=tensors)
    files = upload(store, source)
    assert any(len(d) > 5 * MIB for d in files.values())
    store.add_object(BUCKET, "llama/3b-instruct/model.safetensors", b"not this one")
    write_config(store, tmp_path)
    dest = tmp_path / "out" / "model"
    uri = f"oci://n/{store.namespace}/b/{BUCKET}/o/{PREFIX}"
    params = ("--param", "auth=UserPrincipal", "--param", f"endpoint={store.endpoint}")

    first = run(tmp_path, uri, dest, *params)

    assert first.returncode == 0, first.stderr
    config = json.loads(first.stdout)
    assert first.stdout.count("\n") == 1
    assert len(config["artifact"]["sha"]) == 64
    assert config["modelType"] == "llama"
    placed = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert placed == files
    assert not store.log.matching("*3b-instruct*")
    assert store.log.matching(kind="meta")  # the multipart shard was HEADed for its md5
    state = json.loads(next((tmp_path / "state" / "manifests").glob("*.json")).read_text())
    checksums = {e["path"]: e["checksum"] for e in state["files"]}
    assert all(checksums.values())  # every file verified by a digest, none size-only
    assert any(c.startswith("md5-parts:") for c in checksums.values())

    data_requests = len(store.log.matching(kind="data"))
    second = run(tmp_path, uri, dest, *params)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["artifact"]["sha"] == config["artifact"]["sha"]
    assert len(store.log.matching(kind="data")) == data_requests


def test_region_form_with_endpoint_and_profile_from_the_environment(
    store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    store.add_object(BUCKET, f"{PREFIX}/config.json", b'{"model_type": "gpt2"}')
    write_config(store, tmp_path, profile="MODELS")
    dest = tmp_path / "model"
    result = run(
        tmp_path,
        f"oci://{store.namespace}@us-chicago-1/{BUCKET}/{PREFIX}/",
        dest,
        "--param",
        "auth=UserPrincipal",
        OCI_OBJECT_STORAGE_ENDPOINT=store.endpoint,
        OCI_CONFIG_PROFILE="MODELS",
    )
    assert result.returncode == 0, result.stderr
    assert (dest / "config.json").read_bytes() == b'{"model_type": "gpt2"}'


def test_tensorrt_llm_pull_keeps_only_the_node_shape(
    store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    names = ["H100/rank0.engine", "A100-80G/rank0.engine", "config.json", "tokenizer.json"]
    for name in names:
        data = b'{"model_type": "llama"}' if name.endswith(".json") else name.encode() * 99
        store.add_object(BUCKET, f"{PREFIX}/{name}", data)
    write_config(store, tmp_path)
    dest = tmp_path / "model"
    result = run(
        tmp_path,
        f"oci://n/{store.namespace}/b/{BUCKET}/o/{PREFIX}",
        dest,
        "--param",
        "auth=UserPrincipal",
        "--param",
        f"endpoint={store.endpoint}",
        "--param",
        "modelFormat=tensorrtllm",
        "--shape",
        "H100",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "H100/rank0.engine",
        "config.json",
        "tokenizer.json",
    ], result.stderr


@pytest.mark.parametrize(
    ("bucket", "params", "expected"),
    [
        ("missing", ("auth=UserPrincipal",), "BucketNotFound"),
        (BUCKET, ("auth=Password",), "parameters.auth 'Password'"),
        (BUCKET, ("auth=UserPrincipal", "profile=NOPE"), "profile 'NOPE' not found"),
    ],
)
def test_failures_exit_1_with_one_clear_line(
    store: objectstore.LocalObjectStore,
    tmp_path: pathlib.Path,
    bucket: str,
    params: tuple[str, ...],
    expected: str,
) -> None:
    store.add_object(BUCKET, f"{PREFIX}/config.json", b"{}")
    write_config(store, tmp_path)
    args = [item for p in (*params, f"endpoint={store.endpoint}") for item in ("--param", p)]
    result = run(
        tmp_path, f"oci://n/{store.namespace}/b/{bucket}/o/{PREFIX}", tmp_path / "m", *args
    )
    assert result.returncode == 1
    failed = [line for line in result.stderr.splitlines() if "model-agent: Failed" in line]
    assert len(failed) == 1 and expected in failed[0], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
