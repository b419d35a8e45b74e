"""The OCI backend and the pull pipeline through the real oci SDK and aiohttp against the local
object store (``oci_store``), with UserPrincipal auth from a real config file in tmp_path.

Aspects covered:
- a multi-object model whose objects exceed the (small) multipart threshold pulls in ranged,
  signed parts across several listing pages; every md5 is verified; the prefix is a folder
  (``models/llama`` never pulls ``models/llama-v2/``); both URI forms; the endpoint override
  from the environment; object names that need percent-encoding are signed correctly;
- checksum policy: content-md5; a multipart object verified by recomputing its part md5s
  (with the part size guessed from the count); one with ``opc-meta-md5``; one with neither
  verifiable is ``size_only`` in the manifest, the metric and the log; HEAD only where the
  listing's md5 is not enough;
- bodies cut short resume at the missing byte with a signed Range; a 429 on the
  listing is waited out;
- corrupted bytes (plain and multipart objects): retried, and when they persist the pull fails
  and the file never reaches its final path; a transient corruption is recovered;
- a prefix that names one object (not a folder) pulls that object under its base name;
- errors: 404 bucket, 401 (another key), empty prefix, missing config file and profile, an
  unknown ``parameters.auth`` each raise their own class and message; a 500 on a listing page is
  retried; an object replaced after pinning is refused by ``check_response``;
- auth dispatch: InstancePrincipal is the default, the other modes reach the signer factory
  (a test factory: the real instance/workload signers are never built here);
- the TensorRT-LLM filter keeps only the H100 files and the shared ones.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import stat
from collections.abc import Mapping
from typing import Any

import aiohttp
import prometheus_client
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from model_agent import errors, metrics, pipeline, settings, verify
from model_agent.storage import base, oci_auth, oci_checksums
from model_agent.storage import oci as oci_backend
from tests.harness import objectstore

BUCKET = "models-bucket"
PREFIX = "models/llama"
LABELS = metrics.ModelLabels("ClusterBaseModel", "", "llama")
MIB = 1024 * 1024


def blob(seed: int, size: int) -> bytes:
    """Deterministic, non-repeating-ish bytes (corruption must change every md5)."""
    unit = hashlib.sha256(str(seed).encode()).digest()
    return (unit * (size // len(unit) + 1))[:size]


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def write_config(
    store: objectstore.LocalObjectStore,
    directory: pathlib.Path,
    *,
    profile: str = "DEFAULT",
    key_content: str | None = None,
) -> pathlib.Path:
    """A real OCI config file and PEM key file (0600) for the store's throw-away key."""
    key_file = directory / "oci_api_key.pem"
    key_file.write_text(key_content or store.config["key_content"])
    key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    config = directory / "oci_config"
    config.write_text(
        f"[{profile}]\n"
        f"user={store.config['user']}\n"
        f"fingerprint={store.config['fingerprint']}\n"
        f"tenancy={store.config['tenancy']}\n"
        f"region={store.config['region']}\n"
        f"key_file={key_file}\n"
    )
    return config


def make_settings(config_file: pathlib.Path, **overrides: Any) -> settings.Settings:
    values: dict[str, Any] = {
        "oci_config_file": str(config_file),
        "multipart_threshold": 64 * 1024,
        "multipart_concurrency": 3,
        "concurrency": 2,
        "download_retry": 1,
        "stall_timeout": 5.0,
    }
    values.update(overrides)
    return settings.Settings(**values)


def user_params(store: objectstore.LocalObjectStore, **extra: str) -> dict[str, str]:
    return {"auth": "UserPrincipal", "endpoint": store.endpoint, **extra}


def uri(store: objectstore.LocalObjectStore, prefix: str = PREFIX, bucket: str = BUCKET) -> str:
    return f"oci://n/{store.namespace}/b/{bucket}/o/{prefix}"


async def pull(
    store: objectstore.LocalObjectStore,
    tmp_path: pathlib.Path,
    *,
    params: Mapping[str, str] | None = None,
    source: str | None = None,
    recorder: metrics.Metrics | None = None,
    **request_fields: Any,
) -> pipeline.PullResult:
    config = tmp_path / "oci_config"
    if not config.exists():
        write_config(store, tmp_path)
    request = pipeline.PullRequest(
        uri=source or uri(store),
        destination=tmp_path / "model",
        parameters=dict(params if params is not None else user_params(store)),
        metrics_labels=LABELS,
        analyse=False,
        **request_fields,
    )
    return await pipeline.pull(
        request, make_settings(config), state_dir=tmp_path / "state", metrics=recorder
    )


def manifest_entries(tmp_path: pathlib.Path) -> dict[str, Any]:
    (path,) = (tmp_path / "state" / "manifests").glob("*.json")
    return {e["path"]: e for e in json.loads(path.read_text())["files"]}


def verified_count(recorder: metrics.Metrics, result: str) -> float:
    value = recorder.registry.get_sample_value(
        "model_agent_verifications_total",
        {"model_type": "ClusterBaseModel", "namespace": "", "name": "llama", "result": result},
    )
    return value or 0.0


def files_under(root: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_multi_object_model_pulls_with_user_principal_across_listing_pages(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    model = {
        "config.json": b'{"model_type": "llama"}',
        "model-00001-of-00002.safetensors": blob(1, 300_000),
        "model-00002-of-00002.safetensors": blob(2, 250_001),
        "tokenizer/tokenizer.json": blob(3, 90_000),
    }
    for name, data in model.items():
        oci_store.add_object(BUCKET, f"{PREFIX}/{name}", data)
    oci_store.add_object(BUCKET, "models/llama-v2/model.safetensors", b"other model")
    oci_store.add_object(BUCKET, f"{PREFIX}/", b"")  # a console-made folder marker
    oci_store.page_limit = 2
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())

    result = await pull(oci_store, tmp_path, recorder=recorder)

    assert files_under(tmp_path / "model") == model
    assert result.files == 4 and result.bytes_downloaded == sum(map(len, model.values()))
    listings = [r for r in oci_store.log if r.kind == "api" and r.path.endswith("/o")]
    assert len(listings) >= 2 and all(r.status == 200 for r in listings)
    ranged = oci_store.log.matching("*model-00001-of-00002.safetensors", kind="data")
    assert len(ranged) >= 3 and all(r.range and r.status == 206 for r in ranged)
    assert all(r.headers.get("Authorization", "").startswith("Signature ") for r in oci_store.log)
    assert not oci_store.log.matching("*llama-v2*")
    assert not oci_store.log.matching(kind="meta")  # every listed md5 sufficed: no HEAD
    entries = manifest_entries(tmp_path)
    for name, data in model.items():
        assert entries[name]["checksum"] == "md5:" + hashlib.md5(data).hexdigest()
    assert verified_count(recorder, "success") == 4
    assert verified_count(recorder, "size_only") == 0


async def test_namespace_at_region_form_with_endpoint_from_the_environment(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    oci_store.add_object(BUCKET, f"{PREFIX}/weights.bin", blob(4, 1000))
    config = write_config(oci_store, tmp_path, profile="ALT")
    backend = oci_backend.OCIBackend(
        f"oci://{oci_store.namespace}@us-phoenix-1/{BUCKET}/{PREFIX}",
        parameters={"auth": "UserPrincipal"},
        config_file=str(config),
        environ={"OCI_OBJECT_STORAGE_ENDPOINT": oci_store.endpoint, "OCI_CONFIG_PROFILE": "ALT"},
    )
    try:
        plan = await backend.pin()
    finally:
        await backend.close()
    assert [f.path for f in plan.files] == ["weights.bin"]
    assert backend.endpoint == oci_store.endpoint
    assert len(plan.revision) == 64


async def test_object_names_that_need_encoding_are_signed_and_fetched(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    odd = {
        "a b+c%d.bin": blob(5, 70_000),
        "ünï/çødé#1.json": b"{}",
        "x=y&z?.txt": b"q",
        "q'()*!,;:@~$.bin": b"r",
    }
    for name, data in odd.items():
        oci_store.add_object(BUCKET, f"{PREFIX}/{name}", data)
    await pull(oci_store, tmp_path)
    assert files_under(tmp_path / "model") == odd
    assert all(r.status in (200, 206) for r in oci_store.log)


async def test_multipart_object_is_verified_by_recomputing_its_part_md5s(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    big = blob(6, 11 * MIB + 123)  # 3 parts of the 5 MiB S3-tool default
    small = blob(7, 40_000)  # one part: any part size gives the same digest
    oci_store.add_object(BUCKET, f"{PREFIX}/big.bin", big, multipart_part_size=5 * MIB)
    oci_store.add_object(BUCKET, f"{PREFIX}/small.bin", small, multipart_part_size=8 * MIB)
    oci_store.add_object(BUCKET, f"{PREFIX}/plain.json", b"{}")
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())

    await pull(oci_store, tmp_path, recorder=recorder)

    entries = manifest_entries(tmp_path)
    stored = oci_store.object(BUCKET, f"{PREFIX}/big.bin").multipart_md5
    assert stored is not None and stored.endswith("-3")
    expected_hex = base64.b64decode(stored.split("-")[0]).hex()
    assert entries["big.bin"]["checksum"] == f"md5-parts:{expected_hex}-3"
    assert entries["small.bin"]["checksum"].startswith("md5-parts:")
    assert entries["plain.json"]["checksum"].startswith("md5:")
    assert verified_count(recorder, "success") == 3
    heads = {r.file for r in oci_store.log.matching(kind="meta")}
    assert heads == {f"{PREFIX}/big.bin", f"{PREFIX}/small.bin"}  # HEAD only where needed
    assert (tmp_path / "model" / "big.bin").read_bytes() == big


async def test_opc_meta_md5_verifies_a_multipart_object_and_the_unverifiable_one_is_size_only(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path, caplog: Any
) -> None:
    with_meta = blob(8, 50_000)
    opaque = blob(9, 5_000)
    oci_store.add_object(
        BUCKET,
        f"{PREFIX}/with-meta.bin",
        with_meta,
        multipart_part_size=1_000,  # 50 parts of 1000 bytes: no known part size fits
        metadata={"md5": b64md5(with_meta)},
    )
    oci_store.add_object(BUCKET, f"{PREFIX}/opaque.bin", opaque, multipart_part_size=1_000)
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())

    await pull(oci_store, tmp_path, recorder=recorder)

    entries = manifest_entries(tmp_path)
    assert entries["with-meta.bin"]["checksum"] == "md5:" + hashlib.md5(with_meta).hexdigest()
    assert entries["opaque.bin"]["checksum"] is None  # the manifest says: size only
    assert verified_count(recorder, "success") == 1
    assert verified_count(recorder, "size_only") == 1
    assert any(
        "opaque.bin" in r.getMessage() and "size_only" in r.getMessage() for r in caplog.records
    )
    assert (tmp_path / "model" / "opaque.bin").read_bytes() == opaque


@pytest.mark.parametrize("multipart", [None, 5 * MIB], ids=["content-md5", "multipart-md5"])
async def test_persistently_corrupted_object_is_retried_then_fails_and_never_lands(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path, multipart: int | None
) -> None:
    data = blob(10, 11 * MIB if multipart else 200_000)
    oci_store.add_object(BUCKET, f"{PREFIX}/model.bin", data, multipart_part_size=multipart)
    oci_store.add_object(BUCKET, f"{PREFIX}/config.json", b"{}")
    oci_store.faults.corrupt(f"{PREFIX}/model.bin")
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())

    with pytest.raises(verify.ChecksumFailedError, match=r"model\.bin") as caught:
        await pull(oci_store, tmp_path, recorder=recorder)

    assert "after 2 downloads" in str(caught.value)
    assert not (tmp_path / "model" / "model.bin").exists()
    assert verified_count(recorder, "failure") == 2
    served = oci_store.log.bytes_served(f"{PREFIX}/model.bin")
    assert served >= 2 * len(data)


async def test_transient_corruption_is_recovered_by_a_fresh_download(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    data = blob(11, 30_000)  # below the threshold: one request per download
    oci_store.add_object(BUCKET, f"{PREFIX}/model.bin", data)
    oci_store.faults.corrupt(f"{PREFIX}/model.bin", count=1)
    await pull(oci_store, tmp_path)
    assert (tmp_path / "model" / "model.bin").read_bytes() == data


async def test_missing_bucket_and_rejected_key_are_distinct_clear_errors(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    oci_store.add_object(BUCKET, f"{PREFIX}/a.bin", b"a")
    with pytest.raises(errors.NotFoundError, match="BucketNotFound") as missing:
        await pull(oci_store, tmp_path, source=uri(oci_store, bucket="no-such-bucket"))
    assert not isinstance(missing.value, errors.AuthError)

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    write_config(oci_store, tmp_path, key_content=pem)
    with pytest.raises(errors.AuthError, match="401") as rejected:
        await pull(oci_store, tmp_path)
    assert "UserPrincipal" in str(rejected.value)
    assert "BEGIN" not in str(rejected.value)


async def test_empty_prefix_is_not_found_and_a_listing_500_is_retried(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    oci_store.add_object(BUCKET, "models/llama-v2/a.bin", b"a")
    with pytest.raises(errors.NotFoundError, match="no objects under 'models/llama/'"):
        await pull(oci_store, tmp_path)
    oci_store.add_object(BUCKET, f"{PREFIX}/a.bin", b"a")
    oci_store.faults.fail_next(1, 500, kind="api")
    await pull(oci_store, tmp_path)
    assert (tmp_path / "model" / "a.bin").read_bytes() == b"a"
    assert [r.status for r in oci_store.log if r.kind == "api"][-2:] == [500, 200]


async def test_cut_bodies_resume_with_signed_ranges_and_a_429_listing_is_waited_out(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    data = blob(16, 600_000)
    oci_store.add_object(BUCKET, f"{PREFIX}/model.bin", data)
    oci_store.faults.cut_short(2, after_bytes=50_000)
    oci_store.faults.fail_next(1, 429, retry_after=0.05, kind="api")
    await pull(oci_store, tmp_path)
    assert (tmp_path / "model" / "model.bin").read_bytes() == data
    assert oci_store.log.bytes_served(f"{PREFIX}/model.bin") < 1.3 * len(data)
    gets = oci_store.log.matching(f"{PREFIX}/model.bin", kind="data")
    resumed = [
        r for r in gets if r.range and not r.range.startswith("bytes=0-") and r.status == 206
    ]
    assert len(gets) >= 5 and resumed
    assert all(r.headers.get("Authorization", "").startswith("Signature ") for r in gets)
    assert [r.status for r in oci_store.log if r.kind == "api"][:2] == [429, 200]


async def test_a_prefix_naming_one_object_pulls_that_object_by_its_base_name(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    data = blob(15, 100_000)
    oci_store.add_object(BUCKET, "gguf/model.Q4.gguf", data, multipart_part_size=8 * MIB)
    oci_store.add_object(BUCKET, "gguf/model.Q4.gguf.sig", b"x")
    await pull(oci_store, tmp_path, source=uri(oci_store, prefix="gguf/model.Q4.gguf"))
    assert files_under(tmp_path / "model") == {"model.Q4.gguf": data}
    assert manifest_entries(tmp_path)["model.Q4.gguf"]["checksum"].startswith("md5-parts:")


async def test_missing_config_file_and_profile_are_config_errors(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    oci_store.add_object(BUCKET, f"{PREFIX}/a.bin", b"a")
    config = write_config(oci_store, tmp_path)
    missing = oci_backend.OCIBackend(
        uri(oci_store),
        parameters=user_params(oci_store),
        config_file=str(tmp_path / "nope"),
        environ={},
    )
    with pytest.raises(errors.ConfigError, match="OCI_CONFIG_FILE"):
        await missing.pin()
    wrong_profile = oci_backend.OCIBackend(
        uri(oci_store),
        parameters=user_params(oci_store, profile="PROD"),
        config_file=str(config),
        environ={},
    )
    with pytest.raises(errors.ConfigError, match="'PROD'"):
        await wrong_profile.pin()
    assert not oci_store.log  # nothing was sent unsigned or half-configured


async def test_unknown_auth_names_the_parameter_and_the_allowed_values(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(errors.InvalidSpecError) as caught:
        await pull(oci_store, tmp_path, params={"auth": "ApiKey", "endpoint": oci_store.endpoint})
    message = str(caught.value)
    assert "parameters.auth" in message and "'ApiKey'" in message
    assert all(mode in message for mode in oci_auth.AUTH_MODES)


@pytest.mark.parametrize(
    ("given", "mode"),
    [
        (None, "InstancePrincipal"),
        ("ResourcePrincipal", "ResourcePrincipal"),
        ("okeworkloadidentity", "OkeWorkloadIdentity"),
        ("InstancePrincipal", "InstancePrincipal"),
    ],
)
async def test_auth_modes_reach_the_signer_factory(
    oci_store: objectstore.LocalObjectStore, given: str | None, mode: str
) -> None:
    """A test factory stands in for the token signers (they would call 169.254.169.254); it
    signs with the store's API key, so the listing is real."""
    oci_store.add_object(BUCKET, f"{PREFIX}/a.bin", b"a")
    seen: list[oci_auth.AuthRequest] = []

    def factory(request: oci_auth.AuthRequest) -> oci_auth.Credentials:
        seen.append(request)
        import oci

        cfg = oci_store.config
        signer = oci.signer.Signer(
            cfg["tenancy"], cfg["user"], cfg["fingerprint"], None, None, cfg["key_content"]
        )
        return oci_auth.Credentials(signer=signer, config=dict(cfg), region=None)

    params = {"region": "eu-frankfurt-1", "endpoint": oci_store.endpoint}
    if given is not None:
        params["auth"] = given
    backend = oci_backend.OCIBackend(
        uri(oci_store), parameters=params, environ={}, signer_factory=factory
    )
    try:
        plan = await backend.pin()
    finally:
        await backend.close()
    assert [r.mode for r in seen] == [mode]
    assert seen[0].region == "eu-frankfurt-1"
    assert [f.path for f in plan.files] == ["a.bin"]


async def test_object_replaced_after_pinning_is_refused(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    oci_store.add_object(BUCKET, f"{PREFIX}/a.bin", b"first")
    config = write_config(oci_store, tmp_path)
    backend = oci_backend.OCIBackend(
        uri(oci_store), parameters=user_params(oci_store), config_file=str(config), environ={}
    )
    try:
        (file,) = (await backend.pin()).files
        oci_store.add_object(BUCKET, f"{PREFIX}/a.bin", b"other")
        request = await backend.request(file, start=0, end=file.size)
        async with aiohttp.ClientSession() as session:
            async with session.get(request.url, headers=dict(request.headers)) as response:
                assert response.status == 206
                with pytest.raises(errors.ServerError, match="changed since it was pinned"):
                    backend.check_response(file, response.headers)
    finally:
        await backend.close()


async def test_tensorrt_llm_filter_keeps_only_this_shape_and_shared_files(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    names = {
        "H100/rank0.engine": blob(12, 1000),
        "H100/config.json": b"{}",
        "A100-80G/rank0.engine": blob(13, 1000),
        "A100-80G/config.json": b"{}",
        "tokenizer.json": b"{}",
        "tokenizer_config.json": b"{}",
    }
    for name, data in names.items():
        oci_store.add_object(BUCKET, f"{PREFIX}/{name}", data)
    await pull(oci_store, tmp_path, model_format="tensorrtllm", shape="H100")
    assert sorted(files_under(tmp_path / "model")) == [
        "H100/config.json",
        "H100/rank0.engine",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert not oci_store.log.matching("*A100-80G*", kind="data")


async def test_tensorrt_llm_prefix_ending_in_the_shape_folder_keeps_everything_as_ome(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    """OME keeps an object when ``/<alias>/`` occurs anywhere in its name: a URI pointing at
    the shape folder itself downloads everything below it."""
    names = {"rank0.engine": blob(15, 500), "config.json": b"{}", "sub/rank1.engine": b"e"}
    for name, data in names.items():
        oci_store.add_object(BUCKET, f"trt/llama/H100/{name}", data)
    await pull(
        oci_store,
        tmp_path,
        source=uri(oci_store, prefix="trt/llama/H100"),
        model_format="tensorrtllm",
        shape="H100",
    )
    assert sorted(files_under(tmp_path / "model")) == sorted(names)


async def test_tensorrt_llm_instance_type_map_aliases_are_shape_folders_not_shared_files(
    oci_store: objectstore.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    """A folder named after an INSTANCE_TYPE_MAP alias this agent has no built-in name for
    is another shape's folder (OME keeps only /<alias>/ objects), not a shape-agnostic file."""
    names = {"H100/rank0.engine": b"h", "XPU-9000/rank0.engine": b"x", "tokenizer.json": b"{}"}
    for name, data in names.items():
        oci_store.add_object(BUCKET, f"custom/{name}", data)
    config = write_config(oci_store, tmp_path)
    request = pipeline.PullRequest(
        uri=uri(oci_store, prefix="custom"),
        destination=tmp_path / "model",
        parameters=user_params(oci_store),
        analyse=False,
        model_format="tensorrtllm",
        shape="H100",
    )
    shaped = make_settings(config, instance_type_map={"BM.XPU.9000": "XPU-9000"})
    await pipeline.pull(request, shaped, state_dir=tmp_path / "state")
    assert sorted(files_under(tmp_path / "model")) == ["H100/rank0.engine", "tokenizer.json"]


def test_multipart_md5_is_a_checksum_ranked_below_md5_and_hashed_by_its_own_hasher(
    tmp_path: pathlib.Path,
) -> None:
    data = blob(14, 3 * 1000 + 7)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    parts = [hashlib.md5(data[i : i + 1000]).digest() for i in range(0, len(data), 1000)]
    wire = objectstore.multipart_md5(parts)
    promised = oci_checksums.promise(
        len(data), wire, {"opc-multipart-md5": wire}, known=(999, 1000)
    )
    (expected,) = promised.digests
    plain = base.RemoteFile(path="f", size=1, identity="x", key="f", digests=(expected,))
    assert plain.checksum == expected
    assert verify.hash_file(path, expected, len(data)) == expected.value
    path.write_bytes(data[:-1] + b"\0")
    assert verify.hash_file(path, expected, len(data)) != expected.value
