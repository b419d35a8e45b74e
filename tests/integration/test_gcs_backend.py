"""The GCS backend and the pull pipeline through google-auth and aiohttp against
gcp-storage-emulator behind the fault proxy (``gcs_proxy``), with Application Default
Credentials from a real service-account key file whose token endpoint is local.

Aspects covered:
- a model of plain and composed objects pulls with bearer-token ranged GETs pinned to each
  object's generation; plain objects are verified by ``md5Hash``, composed ones (no md5Hash) by
  ``crc32c``, and the manifest and the metric say which; a sibling prefix is never fetched; the
  listing is read across pages; the token went to the token endpoint and the store only;
- faults: a corrupted byte (once: recovered; always: fails and never lands); 503 with
  ``Retry-After`` on a listing and on data; a 200 answer to a Range request; a cut body;
- a private bucket read anonymously is a clear ``Unauthorized`` with no retry loop; no ADC at
  all fails before any request; an endpoint named by the spec gets no token;
- a prefix naming one object pulls it; a missing prefix is NotFound.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import prometheus_client
import pytest

from model_agent import errors, metrics, pipeline, settings, verify
from model_agent.storage.gcs import backend as gcs_backend
from tests.harness import gcs

PREFIX = "models/llama"
LABELS = metrics.ModelLabels("ClusterBaseModel", "", "llama")
MIB = 1024 * 1024


def blob(seed: int, size: int) -> bytes:
    unit = hashlib.sha256(str(seed).encode()).digest()
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture
def gcp_env(
    monkeypatch: pytest.MonkeyPatch,
    gcs_proxy: gcs.GCSFaultProxy,
    token_server: gcs.TokenServer,
    tmp_path: pathlib.Path,
) -> gcs.GCSFaultProxy:
    key = gcs.write_key_file(tmp_path / "key.json", token_server.url)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_proxy.endpoint)
    return gcs_proxy


def make_settings() -> settings.Settings:
    return settings.Settings(
        multipart_threshold=256 * 1024,
        multipart_concurrency=3,
        concurrency=2,
        download_retry=1,
        stall_timeout=5.0,
    )


async def pull(
    bucket: str,
    tmp_path: pathlib.Path,
    *,
    prefix: str = PREFIX,
    params: dict[str, str] | None = None,
    recorder: metrics.Metrics | None = None,
) -> pipeline.PullResult:
    request = pipeline.PullRequest(
        uri=f"gs://{bucket}/{prefix}",
        destination=tmp_path / "model",
        parameters=params or {},
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


async def test_a_model_pulls_verified_by_md5_or_crc32c_with_adc_and_never_the_sibling(
    gcp_env: gcs.GCSFaultProxy,
    gcs_emulator: gcs.GCSEmulator,
    gcs_bucket: str,
    token_server: gcs.TokenServer,
    tmp_path: pathlib.Path,
) -> None:
    sources = {"config.json": b'{"model_type": "llama"}', "weights/a.bin": blob(1, 700_000)}
    for name, data in sources.items():
        gcs_emulator.upload(gcs_bucket, f"{PREFIX}/{name}", data)
    halves = [blob(2, 400_000), blob(3, 300_001)]
    for index, half in enumerate(halves):
        gcs_emulator.upload(gcs_bucket, f"parts/{index}", half)
    gcs_emulator.compose(gcs_bucket, f"{PREFIX}/weights/composed.bin", ["parts/0", "parts/1"])
    gcp_env.composite.add(f"{PREFIX}/weights/composed.bin")
    sources["weights/composed.bin"] = b"".join(halves)
    gcs_emulator.upload(gcs_bucket, f"{PREFIX}-v2/config.json", b"not this one")
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())

    await pull(gcs_bucket, tmp_path, recorder=recorder)

    assert files_under(tmp_path / "model") == sources
    algorithms = {p: e["checksum"].split(":")[0] for p, e in manifest_entries(tmp_path).items()}
    assert algorithms == {
        "config.json": "md5",
        "weights/a.bin": "md5",
        "weights/composed.bin": "crc32c",
    }
    sample = recorder.registry.get_sample_value(
        "model_agent_verification_checksums_total",
        {"model_type": "ClusterBaseModel", "namespace": "", "name": "llama", "algorithm": "crc32c"},
    )
    assert sample == 1
    assert not gcp_env.log.matching("*llama-v2*")
    data = gcp_env.log.matching(kind="data")
    assert data and all(r.status == 206 and r.range for r in data)
    assert all(r.headers["Authorization"] == f"Bearer {gcs.TokenServer.TOKEN}" for r in data)
    assert token_server.grants == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]


async def test_the_listing_is_read_across_pages(
    gcp_env: gcs.GCSFaultProxy, gcs_emulator: gcs.GCSEmulator, gcs_bucket: str
) -> None:
    for index in range(5):
        gcs_emulator.upload(gcs_bucket, f"{PREFIX}/f{index}.bin", blob(index, 10))
    backend = gcs_backend.GCSBackend(f"gs://{gcs_bucket}/{PREFIX}", page_size=2)
    try:
        plan = await backend.pin()
    finally:
        await backend.close()
    assert [f.path for f in plan.files] == [f"f{i}.bin" for i in range(5)]
    assert len([r for r in gcp_env.log if r.kind == "api"]) == 3
    assert all(f.checksum is not None and f.checksum.algorithm == "md5" for f in plan.files)


async def test_a_corrupted_byte_once_is_recovered_and_always_fails_without_landing(
    gcp_env: gcs.GCSFaultProxy, gcs_emulator: gcs.GCSEmulator, gcs_bucket: str, tmp_path
) -> None:
    data = blob(7, 600_000)
    gcs_emulator.upload(gcs_bucket, f"{PREFIX}/w.bin", data)
    gcp_env.faults.corrupt("*w.bin", count=1)
    await pull(gcs_bucket, tmp_path / "once")
    assert (tmp_path / "once" / "model" / "w.bin").read_bytes() == data
    gcp_env.faults.corrupt("*w.bin")
    with pytest.raises(verify.ChecksumFailedError, match="md5"):
        await pull(gcs_bucket, tmp_path / "always")
    assert not (tmp_path / "always" / "model" / "w.bin").exists()


async def test_503_with_retry_after_range_ignored_and_cut_bodies_are_recovered(
    gcp_env: gcs.GCSFaultProxy, gcs_emulator: gcs.GCSEmulator, gcs_bucket: str, tmp_path
) -> None:
    data = blob(8, 900_000)
    gcs_emulator.upload(gcs_bucket, f"{PREFIX}/w.bin", data)
    gcp_env.faults.fail_next(1, 503, retry_after=0.2, kind="api")
    gcp_env.faults.fail_next(2, 503, retry_after=0.2, kind="data")
    gcp_env.faults.ignore_range(1)
    gcp_env.faults.cut_short(1, 50_000)
    await pull(gcs_bucket, tmp_path)
    assert (tmp_path / "model" / "w.bin").read_bytes() == data
    statuses = [r.status for r in gcp_env.log.matching(kind="data")]
    assert statuses.count(503) == 2 and 200 in statuses
    assert [r.status for r in gcp_env.log if r.kind == "api"][:2] == [503, 200]


async def test_a_private_bucket_read_anonymously_is_unauthorized_after_one_request(
    gcp_env: gcs.GCSFaultProxy, gcs_emulator: gcs.GCSEmulator, gcs_bucket: str, tmp_path
) -> None:
    gcs_emulator.upload(gcs_bucket, f"{PREFIX}/w.bin", b"private")
    gcp_env.private = True
    with pytest.raises(errors.AuthError, match="401") as info:
        await pull(gcs_bucket, tmp_path, params={"auth": "anonymous"})
    assert info.value.reason == "Unauthorized"
    assert len(gcp_env.log) == 1
    await pull(gcs_bucket, tmp_path / "with-adc")  # the same bucket with the node's ADC
    assert (tmp_path / "with-adc" / "model" / "w.bin").read_bytes() == b"private"


async def test_no_adc_anywhere_fails_before_any_request(
    monkeypatch: pytest.MonkeyPatch, gcs_proxy: gcs.GCSFaultProxy, gcs_bucket: str, tmp_path
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_proxy.endpoint)
    with pytest.raises(errors.AuthError, match="Application Default Credentials"):
        await pull(gcs_bucket, tmp_path)
    assert len(gcs_proxy.log) == 0


async def test_an_endpoint_the_spec_names_never_receives_the_nodes_token(
    monkeypatch: pytest.MonkeyPatch,
    gcs_emulator: gcs.GCSEmulator,
    gcs_proxy: gcs.GCSFaultProxy,
    token_server: gcs.TokenServer,
    gcs_bucket: str,
    tmp_path: pathlib.Path,
) -> None:
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS",
        str(gcs.write_key_file(tmp_path / "key.json", token_server.url)),
    )
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)  # the admin's
    gcs_emulator.upload(gcs_bucket, f"{PREFIX}/w.bin", b"public")
    await pull(gcs_bucket, tmp_path, params={"endpoint": gcs_proxy.endpoint})
    assert gcs_proxy.log
    assert not any("Authorization" in r.headers for r in gcs_proxy.log)
    assert token_server.grants == []


async def test_a_prefix_naming_one_object_pulls_it_and_a_missing_one_is_not_found(
    gcp_env: gcs.GCSFaultProxy, gcs_emulator: gcs.GCSEmulator, gcs_bucket: str, tmp_path
) -> None:
    gcs_emulator.upload(gcs_bucket, "gguf/model.Q4.gguf", b"gguf")
    await pull(gcs_bucket, tmp_path, prefix="gguf/model.Q4.gguf")
    assert files_under(tmp_path / "model") == {"model.Q4.gguf": b"gguf"}
    with pytest.raises(errors.NotFoundError, match="no objects under"):
        await pull(gcs_bucket, tmp_path / "none", prefix="absent")
