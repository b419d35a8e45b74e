"""The S3 backend and the pull pipeline through botocore and aiohttp against moto's S3 server
(``moto_s3``) behind the fault proxy (``s3_proxy``), with credentials from the real AWS chain.

Aspects covered:
- a model of single-part and multipart objects pulls with SigV4-signed ranged GETs; each file is
  verified by the strongest checksum S3 offers for it and the manifest and the verification
  metric say which (x-amz-checksum-sha256, composite sha256 of parts, the ETag MD5, the
  multipart ETag); a sibling prefix (``llama-v2/``) is never listed into the plan or fetched;
  the listing is read across pages;
- faults: a corrupted byte (once: recovered; always: fails and never lands); ``503 SlowDown``
  with ``Retry-After`` on a listing and on data parts; a 200 answer to a Range request and a
  cut body are recovered;
- credentials: environment keys; a shared-credentials-file profile; web identity (IRSA) through
  moto's STS; a private bucket read anonymously is a clear ``Unauthorized`` after one request
  (no retry loop); no credentials at all fails before any request; an endpoint named by the
  model's spec that the admin did not configure never receives the node's credentials;
- an object replaced after pinning is refused; a prefix naming one object pulls that object.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import aiohttp
import botocore.config
import prometheus_client
import pytest

from model_agent import errors, metrics, pipeline, settings, verify
from model_agent.storage import base
from model_agent.storage.s3 import backend as s3_backend
from tests.harness import s3

PREFIX = "models/llama"
LABELS = metrics.ModelLabels("ClusterBaseModel", "", "llama")
MIB = 1024 * 1024


def blob(seed: int, size: int) -> bytes:
    unit = hashlib.sha256(str(seed).encode()).digest()
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, s3_proxy: s3.S3FaultProxy) -> s3.S3FaultProxy:
    """The node's AWS environment: keys in the environment, the admin endpoint = the proxy."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_proxy.endpoint)
    return s3_proxy


def upload_multipart(client: Any, bucket: str, key: str, data: bytes, part: int, **extra: Any):
    upload = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
    parts = []
    for number, offset in enumerate(range(0, len(data), part), 1):
        answer = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[offset : offset + part],
            **extra,
        )
        done = {"PartNumber": number, "ETag": answer["ETag"]}
        if "ChecksumSHA256" in answer:
            done["ChecksumSHA256"] = answer["ChecksumSHA256"]
        parts.append(done)
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


def make_settings(**overrides: Any) -> settings.Settings:
    values: dict[str, Any] = {
        "multipart_threshold": 256 * 1024,
        "multipart_concurrency": 3,
        "concurrency": 2,
        "download_retry": 1,
        "stall_timeout": 5.0,
    }
    values.update(overrides)
    return settings.Settings(**values)


async def pull(
    bucket: str,
    tmp_path: pathlib.Path,
    *,
    prefix: str = PREFIX,
    params: Mapping[str, str] | None = None,
    recorder: metrics.Metrics | None = None,
) -> pipeline.PullResult:
    request = pipeline.PullRequest(
        uri=f"s3://{bucket}/{prefix}",
        destination=tmp_path / "model",
        parameters=dict(params or {}),
        metrics_labels=LABELS,
        analyse=False,
    )
    return await pipeline.pull(
        request, make_settings(), state_dir=tmp_path / "state", metrics=recorder
    )


def manifest_entries(tmp_path: pathlib.Path) -> dict[str, Any]:
    (path,) = (tmp_path / "state" / "manifests").glob("*.json")
    return {e["path"]: e for e in json.loads(path.read_text())["files"]}


def files_under(root: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def checksum_count(recorder: metrics.Metrics, algorithm: str) -> float:
    value = recorder.registry.get_sample_value(
        "model_agent_verification_checksums_total",
        {
            "model_type": "ClusterBaseModel",
            "namespace": "",
            "name": "llama",
            "algorithm": algorithm,
        },
    )
    return value or 0.0


async def test_a_model_pulls_verified_by_the_strongest_checksum_and_never_the_sibling(
    aws_env: s3.S3FaultProxy, moto_s3: s3.MotoS3, s3_bucket: str, tmp_path: pathlib.Path
) -> None:
    plain = moto_s3.client(
        config=botocore.config.Config(request_checksum_calculation="when_required")
    )
    client = moto_s3.client()
    sources = {
        "config.json": b'{"model_type": "llama"}',
        "weights/a.bin": blob(1, 700_000),
        "weights/big.bin": blob(2, 11 * MIB + 123),
        "weights/plain-multipart.bin": blob(3, 10 * MIB + 7),
    }
    plain.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/config.json", Body=sources["config.json"])
    client.put_object(
        Bucket=s3_bucket, Key=f"{PREFIX}/weights/a.bin", Body=sources["weights/a.bin"],
        ChecksumAlgorithm="SHA256",
    )  # fmt: skip
    upload_multipart(
        client, s3_bucket, f"{PREFIX}/weights/big.bin", sources["weights/big.bin"], 5 * MIB,
        ChecksumAlgorithm="SHA256",
    )  # fmt: skip
    upload_multipart(
        plain, s3_bucket, f"{PREFIX}/weights/plain-multipart.bin",
        sources["weights/plain-multipart.bin"], 8 * MIB,
    )  # fmt: skip
    plain.put_object(Bucket=s3_bucket, Key=f"{PREFIX}-v2/config.json", Body=b"not this one")
    plain.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/", Body=b"")  # a folder marker
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())

    result = await pull(s3_bucket, tmp_path, recorder=recorder)

    assert files_under(tmp_path / "model") == sources
    assert result.files == 4
    entries = manifest_entries(tmp_path)
    algorithms = {path: entry["checksum"].split(":")[0] for path, entry in entries.items()}
    assert algorithms == {
        "config.json": "md5",
        "weights/a.bin": "sha256",
        "weights/big.bin": "sha256-parts",
        "weights/plain-multipart.bin": "md5-parts",
    }
    assert entries["weights/a.bin"]["checksum"] == (
        "sha256:" + hashlib.sha256(sources["weights/a.bin"]).hexdigest()
    )
    for algorithm, count in (("md5", 1), ("sha256", 1), ("sha256-parts", 1), ("md5-parts", 1)):
        assert checksum_count(recorder, algorithm) == count
    assert not aws_env.log.matching("*llama-v2*")
    data = aws_env.log.matching(kind="data")
    assert data and all(r.range and r.status == 206 for r in data)
    assert all(
        r.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={s3.ACCESS_KEY}/")
        for r in data
    )
    assert len(aws_env.log.matching("*/weights/big.bin", kind="data")) >= 3  # ranged parts
    heads = aws_env.log.matching(kind="meta")
    assert all(r.headers.get("x-amz-checksum-mode") == "ENABLED" for r in heads)


async def test_the_listing_is_read_across_pages(
    aws_env: s3.S3FaultProxy, moto_s3: s3.MotoS3, s3_bucket: str
) -> None:
    client = moto_s3.client()
    for index in range(5):
        client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/f{index}.bin", Body=blob(index, 10))
    client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}x/g.bin", Body=b"sibling")
    backend = s3_backend.S3Backend(f"s3://{s3_bucket}/{PREFIX}", page_size=2)
    try:
        plan = await backend.pin()
    finally:
        await backend.close()
    assert [f.path for f in plan.files] == [f"f{i}.bin" for i in range(5)]
    listings = [r for r in aws_env.log if r.kind == "api" and r.method == "GET"]
    assert len(listings) == 3
    assert all(f.identity.startswith("etag:") and f.checksum for f in plan.files)


async def test_a_corrupted_byte_once_is_recovered_and_always_fails_without_landing(
    aws_env: s3.S3FaultProxy, moto_s3: s3.MotoS3, s3_bucket: str, tmp_path: pathlib.Path
) -> None:
    data = blob(7, 600_000)
    moto_s3.client().put_object(
        Bucket=s3_bucket, Key=f"{PREFIX}/w.bin", Body=data, ChecksumAlgorithm="SHA256"
    )
    aws_env.faults.corrupt("*w.bin", count=1)
    await pull(s3_bucket, tmp_path / "once")
    assert (tmp_path / "once" / "model" / "w.bin").read_bytes() == data

    aws_env.faults.corrupt("*w.bin")
    with pytest.raises(verify.ChecksumFailedError, match="sha256"):
        await pull(s3_bucket, tmp_path / "always")
    assert not (tmp_path / "always" / "model" / "w.bin").exists()


async def test_slowdown_with_retry_after_range_ignored_and_cut_bodies_are_recovered(
    aws_env: s3.S3FaultProxy, moto_s3: s3.MotoS3, s3_bucket: str, tmp_path: pathlib.Path
) -> None:
    data = blob(8, 900_000)
    moto_s3.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/w.bin", Body=data)
    aws_env.faults.fail_next(1, 503, retry_after=0.2, kind="api")
    aws_env.faults.fail_next(2, 503, retry_after=0.2, kind="data")
    aws_env.faults.ignore_range(1)
    aws_env.faults.cut_short(1, 50_000)

    await pull(s3_bucket, tmp_path)

    assert (tmp_path / "model" / "w.bin").read_bytes() == data
    statuses = [r.status for r in aws_env.log.matching(kind="data")]
    assert statuses.count(503) == 2 and 200 in statuses
    assert [r.status for r in aws_env.log if r.kind == "api"][:2] == [503, 200]


async def test_a_private_bucket_read_anonymously_is_unauthorized_after_one_request(
    aws_env: s3.S3FaultProxy, moto_s3: s3.MotoS3, s3_bucket: str, tmp_path: pathlib.Path
) -> None:
    moto_s3.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/w.bin", Body=b"private")
    with pytest.raises(errors.AuthError, match="403") as info:
        await pull(s3_bucket, tmp_path, params={"auth": "anonymous"})
    assert info.value.reason == "Unauthorized"
    assert "403 Forbidden" in str(info.value)
    requests = [(r.method, r.path) for r in aws_env.log]
    assert len(requests) == len(set(requests)) <= 2  # the listing, one HEAD: never retried
    assert not any("Authorization" in r.headers for r in aws_env.log)


async def test_no_credentials_anywhere_fails_before_any_request(
    monkeypatch: pytest.MonkeyPatch, s3_proxy: s3.S3FaultProxy, s3_bucket: str, tmp_path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_proxy.endpoint)
    with pytest.raises(errors.AuthError, match="no AWS credentials found"):
        await pull(s3_bucket, tmp_path)
    assert len(s3_proxy.log) == 0


async def test_an_endpoint_the_spec_names_never_receives_the_nodes_credentials(
    monkeypatch: pytest.MonkeyPatch,
    moto_s3: s3.MotoS3,
    s3_proxy: s3.S3FaultProxy,
    s3_bucket: str,
    tmp_path: pathlib.Path,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3.endpoint)  # what the admin configured
    moto_s3.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/w.bin", Body=b"private")
    with pytest.raises(errors.AuthError):
        await pull(s3_bucket, tmp_path, params={"endpoint": s3_proxy.endpoint})
    assert s3_proxy.log
    assert not any("Authorization" in r.headers or "X-Amz-Date" in r.headers for r in s3_proxy.log)


async def test_a_shared_credentials_profile_signs_the_requests(
    monkeypatch: pytest.MonkeyPatch,
    moto_s3: s3.MotoS3,
    s3_proxy: s3.S3FaultProxy,
    s3_bucket: str,
    tmp_path: pathlib.Path,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[models]\naws_access_key_id = AKIAPROFILE000000000\n"
        "aws_secret_access_key = profile-secret-for-tests\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_proxy.endpoint)
    moto_s3.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/w.bin", Body=b"weights")
    await pull(s3_bucket, tmp_path, params={"profile": "models"})
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"weights"
    (data,) = s3_proxy.log.matching(kind="data")
    assert "Credential=AKIAPROFILE000000000/" in data.headers["Authorization"]
    with pytest.raises(errors.ConfigError, match="'absent'"):
        await pull(s3_bucket, tmp_path / "other", params={"profile": "absent"})


async def test_web_identity_irsa_credentials_come_from_sts(
    monkeypatch: pytest.MonkeyPatch,
    moto_s3: s3.MotoS3,
    s3_proxy: s3.S3FaultProxy,
    s3_bucket: str,
    tmp_path: pathlib.Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/model-agent")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_s3.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_proxy.endpoint)
    moto_s3.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/w.bin", Body=b"weights")
    await pull(s3_bucket, tmp_path)
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"weights"
    (data,) = s3_proxy.log.matching(kind="data")
    assert "X-Amz-Security-Token" in data.headers  # temporary credentials from STS
    assert f"Credential={s3.ACCESS_KEY}" not in data.headers["Authorization"]


async def test_an_object_replaced_after_pinning_is_refused(
    aws_env: s3.S3FaultProxy, moto_s3: s3.MotoS3, s3_bucket: str
) -> None:
    client = moto_s3.client()
    client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/a.bin", Body=b"first")
    backend = s3_backend.S3Backend(f"s3://{s3_bucket}/{PREFIX}")
    try:
        (file,) = (await backend.pin()).files
        client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/a.bin", Body=b"other")
        request = await backend.request(file, start=0, end=file.size)
        async with aiohttp.ClientSession() as session:
            async with session.get(request.url, headers=dict(request.headers)) as response:
                assert response.status == 206
                with pytest.raises(errors.ServerError, match="changed since it was pinned"):
                    backend.check_response(file, response.headers)
    finally:
        await backend.close()


async def test_a_prefix_naming_one_object_pulls_it_and_a_missing_one_is_not_found(
    aws_env: s3.S3FaultProxy, moto_s3: s3.MotoS3, s3_bucket: str, tmp_path: pathlib.Path
) -> None:
    moto_s3.client().put_object(Bucket=s3_bucket, Key="gguf/model.Q4.gguf", Body=b"gguf")
    await pull(s3_bucket, tmp_path, prefix="gguf/model.Q4.gguf")
    assert files_under(tmp_path / "model") == {"model.Q4.gguf": b"gguf"}
    with pytest.raises(errors.NotFoundError, match="no objects under"):
        await pull(s3_bucket, tmp_path / "none", prefix="absent")
    with pytest.raises(errors.NotFoundError, match="NoSuchBucket"):
        await pull("no-such-bucket-here", tmp_path / "nobucket")


async def test_an_unknown_auth_mode_names_the_parameter() -> None:
    with pytest.raises(errors.InvalidSpecError, match=r"parameters\.auth 'Instance'"):
        s3_backend.S3Backend("s3://bucket/x", parameters={"auth": "Instance"})


def test_plan_files_carry_the_etag_identity() -> None:
    file = base.RemoteFile(path="a", size=1, identity="etag:abc", key="k")
    backend = s3_backend.S3Backend("s3://bucket/x", environ={})
    backend.check_response(file, {"ETag": '"abc"'})
    with pytest.raises(errors.ServerError):
        backend.check_response(file, {"ETag": '"abd"'})
