"""The Azure backend and the pull pipeline through aiohttp against Azurite (the Azure Storage
emulator, started from npm) behind the fault proxy (``azure_proxy``).

Aspects covered:
- with a connection string (account key: every request Shared Key-signed, and Azurite checks
  each signature), a model of Put Blob blobs and block-list uploads pulls with ranged GETs;
  Content-MD5 verifies what has it (the manifest and the metric say md5) and a block upload
  without it is size-only and says so; a sibling prefix is never fetched; the listing is read
  across pages; the key never leaves the configured endpoint;
- the account key can come as ``AZURE_STORAGE_ACCOUNT``/``AZURE_STORAGE_KEY`` too;
- faults: a corrupted byte (once: recovered; always: fails, never lands); 503 ServerBusy with
  ``Retry-After`` on the listing and on data; a cut body (a proxy cannot drop the signed Range
  header to provoke a 200, so that engine check is covered by the other stores' tests);
- a private container read anonymously is a clear ``Unauthorized`` with no retry loop; a
  public one reads anonymously; an endpoint named by the spec gets no key;
- workload identity: the federated token is exchanged at the (local) Entra endpoint for a
  Storage token that the listing carries as a bearer token.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

import prometheus_client
import pytest

from model_agent import errors, metrics, pipeline, settings, verify
from model_agent.storage.azure import backend as azure_backend
from tests.harness import azure

PREFIX = "models/llama"
LABELS = metrics.ModelLabels("ClusterBaseModel", "", "llama")


def blob(seed: int, size: int) -> bytes:
    unit = hashlib.sha256(str(seed).encode()).digest()
    return (unit * (size // len(unit) + 1))[:size]


def proxied(azurite: azure.Azurite, proxy: azure.AzureFaultProxy) -> str:
    return f"{proxy.endpoint}/{azure.ACCOUNT}"


@pytest.fixture
def keyed(
    monkeypatch: pytest.MonkeyPatch, azurite: azure.Azurite, azure_proxy: azure.AzureFaultProxy
) -> azure.AzureFaultProxy:
    """The node's connection string, whose BlobEndpoint is the proxy."""
    endpoint = proxied(azurite, azure_proxy)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string(endpoint))
    return azure_proxy


async def pull(
    container: str,
    tmp_path: pathlib.Path,
    *,
    prefix: str = PREFIX,
    params: dict[str, str] | None = None,
    recorder: metrics.Metrics | None = None,
) -> pipeline.PullResult:
    request = pipeline.PullRequest(
        uri=f"az://{azure.ACCOUNT}/{container}/{prefix}",
        destination=tmp_path / "model",
        parameters=params or {},
        metrics_labels=LABELS,
        analyse=False,
    )
    config = settings.Settings(
        multipart_threshold=256 * 1024, multipart_concurrency=3, concurrency=2,
        download_retry=1, stall_timeout=5.0,
    )  # fmt: skip
    return await pipeline.pull(request, config, state_dir=tmp_path / "state", metrics=recorder)


def manifest_entries(tmp_path: pathlib.Path) -> dict[str, Any]:
    (path,) = (tmp_path / "state" / "manifests").glob("*.json")
    return {e["path"]: e for e in json.loads(path.read_text())["files"]}


def files_under(root: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_a_model_pulls_with_the_account_key_verified_by_content_md5(
    keyed: azure.AzureFaultProxy, azurite: azure.Azurite, azure_container: str, tmp_path
) -> None:
    sources = {
        "config.json": b'{"model_type": "llama"}',
        "weights/a.bin": blob(1, 700_000),
        "weights/blocks-md5.bin": blob(2, 900_000),
        "weights/blocks.bin": blob(3, 500_000),
    }
    azurite.put_blob(azure_container, f"{PREFIX}/config.json", sources["config.json"])
    azurite.put_blob(azure_container, f"{PREFIX}/weights/a.bin", sources["weights/a.bin"])
    azurite.put_blocks(
        azure_container, f"{PREFIX}/weights/blocks-md5.bin", sources["weights/blocks-md5.bin"],
        block=256 * 1024, md5=True,
    )  # fmt: skip
    azurite.put_blocks(
        azure_container, f"{PREFIX}/weights/blocks.bin", sources["weights/blocks.bin"],
        block=256 * 1024, md5=False,
    )  # fmt: skip
    azurite.put_blob(azure_container, f"{PREFIX}-v2/config.json", b"not this one")
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())

    await pull(azure_container, tmp_path, recorder=recorder)

    assert files_under(tmp_path / "model") == sources
    checksums = {p: e["checksum"] for p, e in manifest_entries(tmp_path).items()}
    assert checksums["weights/blocks.bin"] is None  # size only, and the manifest says so
    assert all(checksums[p].startswith("md5:") for p in sources if p != "weights/blocks.bin")
    labels = {"model_type": "ClusterBaseModel", "namespace": "", "name": "llama"}
    get = recorder.registry.get_sample_value
    assert get("model_agent_verification_checksums_total", {**labels, "algorithm": "md5"}) == 3
    assert get("model_agent_verifications_total", {**labels, "result": "size_only"}) == 1
    assert not keyed.log.matching("*llama-v2*")
    data = keyed.log.matching(kind="data")
    assert data and all(r.status == 206 and r.range for r in data)
    assert all(
        r.headers["Authorization"].startswith(f"SharedKey {azure.ACCOUNT}:") for r in keyed.log
    )


async def test_the_listing_is_read_across_pages_with_account_and_key_variables(
    azurite: azure.Azurite,
    azure_proxy: azure.AzureFaultProxy,
    azure_container: str,
) -> None:
    for index in range(5):
        azurite.put_blob(azure_container, f"{PREFIX}/f{index}.bin", blob(index, 10))
    environ = {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(proxied(azurite, azure_proxy))
    }
    backend = azure_backend.AzureBackend(
        f"az://{azure.ACCOUNT}/{azure_container}/{PREFIX}", environ=environ, page_size=2
    )
    try:
        plan = await backend.pin()
    finally:
        await backend.close()
    assert [f.path for f in plan.files] == [f"f{i}.bin" for i in range(5)]
    assert len([r for r in azure_proxy.log if r.kind == "api"]) == 3
    # AZURE_STORAGE_ACCOUNT/KEY alone, against the emulator's own (configured) endpoint:
    # without a BlobEndpoint the agent would address the account on Azure, so give it one.
    plain = azure_backend.AzureBackend(
        f"az://{azure.ACCOUNT}/{azure_container}/{PREFIX}",
        environ={"AZURE_STORAGE_ACCOUNT": azure.ACCOUNT, "AZURE_STORAGE_KEY": azure.KEY},
    )
    assert plain.mode == "the account key"


async def test_an_endpoint_the_spec_names_never_receives_the_key(
    keyed: azure.AzureFaultProxy,
    azurite: azure.Azurite,
    azure_container: str,
    tmp_path: pathlib.Path,
) -> None:
    azurite.put_blob(azure_container, f"{PREFIX}/w.bin", b"private")
    other = azure.AzureFaultProxy(azurite.endpoint.rsplit("/", 1)[0])
    async with other:
        with pytest.raises(errors.AuthError):
            await pull(
                azure_container, tmp_path, params={"endpoint": f"{other.endpoint}/{azure.ACCOUNT}"}
            )
        assert other.log
        assert not any("Authorization" in r.headers for r in other.log)


async def test_a_corrupted_byte_once_is_recovered_and_always_fails_without_landing(
    keyed: azure.AzureFaultProxy, azurite: azure.Azurite, azure_container: str, tmp_path
) -> None:
    data = blob(7, 600_000)
    azurite.put_blob(azure_container, f"{PREFIX}/w.bin", data)
    keyed.faults.corrupt("*w.bin", count=1)
    await pull(azure_container, tmp_path / "once")
    assert (tmp_path / "once" / "model" / "w.bin").read_bytes() == data
    keyed.faults.corrupt("*w.bin")
    with pytest.raises(verify.ChecksumFailedError, match="md5"):
        await pull(azure_container, tmp_path / "always")
    assert not (tmp_path / "always" / "model" / "w.bin").exists()


async def test_server_busy_with_retry_after_range_ignored_and_cut_bodies_are_recovered(
    keyed: azure.AzureFaultProxy, azurite: azure.Azurite, azure_container: str, tmp_path
) -> None:
    data = blob(8, 900_000)
    azurite.put_blob(azure_container, f"{PREFIX}/w.bin", data)
    keyed.faults.fail_next(1, 503, retry_after=0.2, kind="api")
    keyed.faults.fail_next(2, 503, retry_after=0.2, kind="data")
    keyed.faults.cut_short(1, 50_000)  # (no ignore_range: dropping Range breaks the signature)
    await pull(azure_container, tmp_path)
    assert (tmp_path / "model" / "w.bin").read_bytes() == data
    statuses = [r.status for r in keyed.log.matching(kind="data")]
    assert statuses.count(503) == 2
    assert [r.status for r in keyed.log if r.kind == "api"][:2] == [503, 200]


async def test_private_container_anonymously_is_unauthorized_and_a_public_one_reads(
    keyed: azure.AzureFaultProxy, azurite: azure.Azurite, azure_container: str, tmp_path
) -> None:
    azurite.put_blob(azure_container, f"{PREFIX}/w.bin", b"private")
    with pytest.raises(errors.AuthError) as info:
        await pull(azure_container, tmp_path, params={"auth": "anonymous"})
    assert info.value.reason == "Unauthorized"
    assert len(keyed.log) == 1
    assert "Authorization" not in keyed.log[0].headers
    public = f"public-{azure_container}"
    azurite.create_container(public, public=True)
    azurite.put_blob(public, f"{PREFIX}/w.bin", b"public")
    await pull(public, tmp_path / "public", params={"auth": "anonymous"})
    assert (tmp_path / "public" / "model" / "w.bin").read_bytes() == b"public"


async def test_workload_identity_exchanges_the_federated_token_for_a_bearer_token(
    monkeypatch: pytest.MonkeyPatch,
    azurite: azure.Azurite,
    azure_proxy: azure.AzureFaultProxy,
    entra: azure.TokenEndpoint,
    azure_container: str,
    tmp_path: pathlib.Path,
) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.federated.sig")
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", entra.authority)
    azurite.put_blob(azure_container, f"{PREFIX}/w.bin", b"weights")
    backend = azure_backend.AzureBackend(
        f"az://{azure.ACCOUNT}/{azure_container}/{PREFIX}",
        environ={
            **os.environ,
            "AZURE_STORAGE_CONNECTION_STRING": (
                f"BlobEndpoint={proxied(azurite, azure_proxy)};AccountName={azure.ACCOUNT}"
            ),
        },
    )
    try:
        with pytest.raises(errors.AuthError):  # Azurite accepts OAuth only over HTTPS
            await backend.pin()
    finally:
        await backend.close()
    (form,) = entra.forms
    assert form["client_assertion"] == "eyJhbGciOiJSUzI1NiJ9.federated.sig"
    assert form["scope"] == "https://storage.azure.com/.default"
    assert form["tenant"] == "tenant-1"
    (listing,) = azure_proxy.log
    assert listing.headers["Authorization"] == f"Bearer {azure.TokenEndpoint.TOKEN}"
