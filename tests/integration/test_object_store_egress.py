"""The S3, GCS, GitHub and Azure backends follow the egress policy, listing and bytes alike.

Each store is addressed by a name only the test proxy (proxy.py) resolves
(``proxy_names``), with the proxy in the policy's ``HTTP_PROXY``: a pull that lands the file
proves that the listing client (botocore, or the backend's aiohttp session) and the engine both
went through the proxy; the proxy's access log shows both kinds of request.
"""

from __future__ import annotations

import pathlib

import pytest

from model_agent import pipeline, settings
from model_agent.egress import policy
from tests.harness import azure, forward_proxy, gcs, github, s3

NAME = "hub.egress.test"  # resolves to 127.0.0.1, through the proxy only


def named(endpoint: str) -> str:
    return endpoint.replace("127.0.0.1", NAME)


async def pull(uri: str, tmp_path: pathlib.Path, proxy: forward_proxy.ForwardProxy, **params):
    config = settings.Settings(egress=policy.build({"HTTP_PROXY": proxy.url}), stall_timeout=10)
    request = pipeline.PullRequest(
        uri=uri, destination=tmp_path / "model", parameters=params, analyse=False
    )
    return await pipeline.pull(request, config, state_dir=tmp_path / "state")


async def test_s3_lists_and_fetches_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, moto_s3: s3.MotoS3, s3_bucket: str, tmp_path: pathlib.Path
) -> None:
    moto_s3.client().put_object(Bucket=s3_bucket, Key="m/w.bin", Body=b"weights")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", named(moto_s3.endpoint))
    # moto (in this process) takes a dotted Host for a virtual-hosted bucket unless told
    monkeypatch.setenv("MOTO_S3_CUSTOM_ENDPOINTS", named(moto_s3.endpoint))
    with forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy:
        await pull(f"s3://{s3_bucket}/m", tmp_path, proxy)
        entries = proxy.wait_logged(3)
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"weights"
    assert any("list-type=2" in e for e in entries) and any(e.endswith("/m/w.bin") for e in entries)


async def test_gcs_lists_and_fetches_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
    gcs_emulator: gcs.GCSEmulator,
    gcs_bucket: str,
    tmp_path: pathlib.Path,
) -> None:
    gcs_emulator.upload(gcs_bucket, "m/w.bin", b"weights")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", named(gcs_emulator.endpoint))
    with forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy:
        await pull(f"gs://{gcs_bucket}/m", tmp_path, proxy, auth="anonymous")
        entries = proxy.wait_logged(2)
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"weights"
    assert any("/storage/v1/b/" in e for e in entries) and any("/download/" in e for e in entries)


async def test_github_lists_and_fetches_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, github_in_thread: github.LocalGitHub, tmp_path: pathlib.Path
) -> None:
    github_in_thread.add_release("acme/llama", "v1", {"w.bin": b"weights"})
    monkeypatch.setenv("GITHUB_API_URL", named(github_in_thread.endpoint))
    with forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy:
        await pull("github://acme/llama@v1", tmp_path, proxy)
        entries = proxy.wait_logged(3)
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"weights"
    assert any("/releases/tags/v1" in e for e in entries)


async def test_azure_lists_and_fetches_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
    azurite: azure.Azurite,
    azure_container: str,
    tmp_path: pathlib.Path,
) -> None:
    azurite.put_blob(azure_container, "m/w.bin", b"weights")
    connection = azurite.connection_string(named(azurite.endpoint))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
    with forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy:
        await pull(f"az://{azure.ACCOUNT}/{azure_container}/m", tmp_path, proxy)
        entries = proxy.wait_logged(2)
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"weights"
    assert any("comp=list" in e for e in entries) and any(e.endswith("/m/w.bin") for e in entries)
