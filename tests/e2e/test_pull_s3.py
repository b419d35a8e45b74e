"""`model-agent pull s3://...` as a user runs it: a real subprocess, botocore's credential chain
from the environment, against moto's S3 server behind the fault proxy (served from a thread).

Aspects: a real model (config, safetensors shards, one uploaded in 5 MiB parts with SHA-256
checksums, tokenizer) lands verified at ``<path>/<name minus the prefix>``, stdout is one JSON
config, the manifest names a checksum for every file (none size-only) and a rerun downloads
nothing; the ``s3://{bucket}@{region}/...`` form; a private bucket read anonymously and a
missing bucket each exit 1 with one clear line.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from tests.harness import modelfiles, s3

PREFIX = "llama/3b"
MIB = 1024 * 1024


def run(
    tmp_path: pathlib.Path, proxy: s3.S3FaultProxy, uri: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "MODEL_AGENT_STATE_DIR": str(tmp_path / "state"),
        "AWS_ACCESS_KEY_ID": s3.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": s3.SECRET_KEY,
        "AWS_ENDPOINT_URL_S3": proxy.endpoint,
        **env,
    }
    command = [
        sys.executable, "-m", "model_agent.cli", "pull", uri, "--path", str(tmp_path / "model"),
        "--multipart-threshold", "256Ki", "--stall-timeout", "5s", *args,
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=90, env=environment, check=False
    )


def upload(client, bucket: str, source: pathlib.Path) -> dict[str, bytes]:
    files = {str(p.relative_to(source)): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    for name, data in files.items():
        key = f"{PREFIX}/{name}"
        if len(data) <= 5 * MIB:
            client.put_object(Bucket=bucket, Key=key, Body=data)
            continue
        upload = client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")
        parts = []
        for number, offset in enumerate(range(0, len(data), 5 * MIB), 1):
            answer = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number,
                Body=data[offset : offset + 5 * MIB], ChecksumAlgorithm="SHA256",
            )  # fmt: skip
            parts.append(
                {
                    "PartNumber": number,
                    "ETag": answer["ETag"],
                    "ChecksumSHA256": answer["ChecksumSHA256"],
                }
            )
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
    return files


def test_pull_places_a_verified_model_and_a_rerun_downloads_nothing(
    moto_s3: s3.MotoS3, s3_bucket: str, s3_proxy_in_thread: s3.S3FaultProxy, tmp_path
) -> None:
    proxy = s3_proxy_in_thread
    source = tmp_path / "source"
    tensors = {"a": ("F32", [1_400_000]), "b": ("F32", [100_000])}  # ~6 MB shards: multipart
    modelfiles.write_model(source, shards=2, tensors=tensors)
    client = moto_s3.client()
    files = upload(client, s3_bucket, source)
    client.put_object(Bucket=s3_bucket, Key="llama/3b-instruct/model.safetensors", Body=b"no")
    uri = f"s3://{s3_bucket}@us-east-1/{PREFIX}"

    first = run(tmp_path, proxy, uri)

    assert first.returncode == 0, first.stderr
    config = json.loads(first.stdout)
    assert config["modelType"] == "llama"
    dest = tmp_path / "model"
    placed = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert placed == files
    assert not proxy.log.matching("*3b-instruct*")
    state = json.loads(next((tmp_path / "state" / "manifests").glob("*.json")).read_text())
    checksums = {e["path"]: e["checksum"] for e in state["files"]}
    assert all(checksums.values())
    assert any(c.startswith("sha256-parts:") for c in checksums.values())

    data_requests = len(proxy.log.matching(kind="data"))
    second = run(tmp_path, proxy, uri)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["artifact"]["sha"] == config["artifact"]["sha"]
    assert len(proxy.log.matching(kind="data")) == data_requests


def test_unauthorized_and_missing_bucket_exit_1_with_one_clear_line(
    moto_s3: s3.MotoS3, s3_bucket: str, s3_proxy_in_thread: s3.S3FaultProxy, tmp_path
) -> None:
    moto_s3.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/config.json", Body=b"{}")
    private = run(
        tmp_path, s3_proxy_in_thread, f"s3://{s3_bucket}/{PREFIX}", "--param", "auth=anonymous"
    )
    assert private.returncode == 1
    assert "403 Forbidden" in private.stderr and "Unauthorized" in private.stderr
    missing = run(tmp_path, s3_proxy_in_thread, "s3://no-such-bucket-e2e/x")
    assert missing.returncode == 1
    assert "NoSuchBucket" in missing.stderr
