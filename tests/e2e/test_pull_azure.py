"""`model-agent pull az://...` as a user runs it: a real subprocess with the node's connection
string (account key), against Azurite behind the fault proxy (served from a thread).

Aspects: a real model (config, safetensors shards, one uploaded as a block list with
``x-ms-blob-content-md5``) lands verified by Content-MD5, stdout is one JSON config, a rerun
downloads nothing; the ``{account}.blob.core.windows.net`` URI form; a private container read
anonymously exits 1 with one clear ``Unauthorized`` line.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from tests.harness import azure, modelfiles

PREFIX = "llama/3b"


def run(tmp_path: pathlib.Path, connection: str, uri: str, *args: str):
    environment = {
        **os.environ,
        "MODEL_AGENT_STATE_DIR": str(tmp_path / "state"),
        "AZURE_STORAGE_CONNECTION_STRING": connection,
    }
    command = [
        sys.executable, "-m", "model_agent.cli", "pull", uri, "--path", str(tmp_path / "model"),
        "--multipart-threshold", "256Ki", "--stall-timeout", "5s", *args,
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=90, env=environment, check=False
    )


def test_pull_places_a_verified_model_and_anonymous_is_unauthorized(
    azurite: azure.Azurite,
    azure_container: str,
    azure_proxy_in_thread: azure.AzureFaultProxy,
    tmp_path: pathlib.Path,
) -> None:
    source = tmp_path / "source"
    modelfiles.write_model(source, shards=2, tensors={"a": ("F32", [300_000])})
    files = {str(p.relative_to(source)): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    for index, (name, data) in enumerate(sorted(files.items())):
        if index == 0:
            azurite.put_blocks(azure_container, f"{PREFIX}/{name}", data, block=100_000, md5=True)
        else:
            azurite.put_blob(azure_container, f"{PREFIX}/{name}", data)
    connection = azurite.connection_string(f"{azure_proxy_in_thread.endpoint}/{azure.ACCOUNT}")
    uri = f"az://{azure.ACCOUNT}.blob.core.windows.net/{azure_container}/{PREFIX}"

    denied = run(tmp_path, connection, uri, "--param", "auth=anonymous")
    assert denied.returncode == 1
    assert "Unauthorized" in denied.stderr

    first = run(tmp_path, connection, uri)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["modelType"] == "llama"
    dest = tmp_path / "model"
    assert {
        str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()
    } == files
    state = json.loads(next((tmp_path / "state" / "manifests").glob("*.json")).read_text())
    assert all(e["checksum"].startswith("md5:") for e in state["files"])

    data_requests = len(azure_proxy_in_thread.log.matching(kind="data"))
    second = run(tmp_path, connection, uri)
    assert second.returncode == 0, second.stderr
    assert len(azure_proxy_in_thread.log.matching(kind="data")) == data_requests
