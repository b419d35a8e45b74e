"""The GitHub releases backend and the pull pipeline through aiohttp against the local GitHub
REST API and its CDN (``github``).

Aspects covered:
- the latest release or a tag pulls every asset, verified by the asset's sha256 ``digest``
  (the manifest and the metric say so); an asset without a digest is size-only and says so;
  another release (``v1.1`` next to ``v1``) is never fetched; the asset list is read across
  pages; the token goes to the API host only, never to the CDN the API redirects to;
- faults: a corrupted byte (once: recovered; always: fails and never lands); 503 with
  ``Retry-After`` on the API and on the CDN; a 200 answer to a Range request; a cut body;
- a private repository without a token is a clear ``Unauthorized`` after one request (no retry
  loop); a wrong token is 401; the node's ``GITHUB_TOKEN`` is never sent to an endpoint the
  model's spec names; the model's own Secret token is;
- a release with no assets and a missing tag are clear errors.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import prometheus_client
import pytest

from model_agent import errors, metrics, pipeline, settings, verify
from model_agent.storage.github import backend as github_backend
from tests.harness import github as github_mod

LABELS = metrics.ModelLabels("ClusterBaseModel", "", "llama")
TOKEN = "ghp_testonlytoken0000000000000000000000"


def blob(seed: int, size: int) -> bytes:
    unit = hashlib.sha256(str(seed).encode()).digest()
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, github: github_mod.LocalGitHub) -> github_mod.LocalGitHub:
    monkeypatch.setenv("GITHUB_API_URL", github.endpoint)
    return github


async def pull(
    uri: str,
    tmp_path: pathlib.Path,
    *,
    params: dict[str, str] | None = None,
    token: str | None = None,
    recorder: metrics.Metrics | None = None,
) -> pipeline.PullResult:
    request = pipeline.PullRequest(
        uri=uri,
        destination=tmp_path / "model",
        parameters=params or {},
        token=token,
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


async def test_a_release_pulls_verified_by_asset_digests_and_the_token_stays_on_the_api(
    monkeypatch: pytest.MonkeyPatch, api: github_mod.LocalGitHub, tmp_path: pathlib.Path
) -> None:
    sources = {"config.json": b'{"model_type": "llama"}', "model.safetensors": blob(1, 900_000)}
    api.add_release("acme/llama", "v1", sources)
    api.add_release("acme/llama", "v1.1", {"config.json": b"not this one"})
    api.make_private("acme/llama", TOKEN)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())

    await pull("github://acme/llama@v1", tmp_path, recorder=recorder)

    assert files_under(tmp_path / "model") == sources
    checksums = {p: e["checksum"] for p, e in manifest_entries(tmp_path).items()}
    assert checksums == {n: f"sha256:{hashlib.sha256(d).hexdigest()}" for n, d in sources.items()}
    sample = recorder.registry.get_sample_value(
        "model_agent_verification_checksums_total",
        {"model_type": "ClusterBaseModel", "namespace": "", "name": "llama", "algorithm": "sha256"},
    )
    assert sample == 2
    data = api.log.matching(kind="data")
    assert data and all(r.status == 206 and r.range for r in data)
    assert all(r.host.startswith(github_mod.CDN_HOST) for r in data)
    assert not any("Authorization" in r.headers for r in data)  # never to the CDN
    assert all(
        r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in api.log if r.kind != "data"
    )
    assert not any(r.file == "config.json" and r.bytes_sent == 12 for r in data)  # not v1.1


async def test_the_latest_release_and_paginated_assets_and_a_missing_digest(
    api: github_mod.LocalGitHub, tmp_path: pathlib.Path
) -> None:
    api.add_release("acme/llama", "v1", {"old.bin": b"old"})
    files = {f"f{i}.bin": blob(i, 10) for i in range(5)}
    api.add_release("acme/llama", "v2", files, digest=False)
    backend = github_backend.GitHubBackend("github://acme/llama", per_page=2)
    try:
        plan = await backend.pin()
    finally:
        await backend.close()
    assert sorted(f.path for f in plan.files) == sorted(files)
    assert all(f.checksum is None for f in plan.files)
    assert backend.sources["f0.bin"] == "size-only"
    assert len([r for r in api.log if r.path.endswith("/assets")]) == 3


async def test_a_corrupted_byte_once_is_recovered_and_always_fails_without_landing(
    api: github_mod.LocalGitHub, tmp_path: pathlib.Path
) -> None:
    data = blob(7, 600_000)
    api.add_release("acme/llama", "v1", {"w.bin": data})
    api.faults.corrupt("w.bin", count=1)
    await pull("github://acme/llama@v1", tmp_path / "once")
    assert (tmp_path / "once" / "model" / "w.bin").read_bytes() == data
    api.faults.corrupt("w.bin")
    with pytest.raises(verify.ChecksumFailedError, match="sha256"):
        await pull("github://acme/llama@v1", tmp_path / "always")
    assert not (tmp_path / "always" / "model" / "w.bin").exists()


async def test_503_with_retry_after_range_ignored_and_cut_bodies_are_recovered(
    api: github_mod.LocalGitHub, tmp_path: pathlib.Path
) -> None:
    data = blob(8, 900_000)
    api.add_release("acme/llama", "v1", {"w.bin": data})
    api.faults.fail_next(1, 503, retry_after=0.2, kind="api")
    api.faults.fail_next(2, 503, retry_after=0.2, kind="data")
    api.faults.ignore_range(1)
    api.faults.cut_short(1, 50_000)
    await pull("github://acme/llama@v1", tmp_path)
    assert (tmp_path / "model" / "w.bin").read_bytes() == data
    statuses = [r.status for r in api.log.matching(kind="data")]
    assert statuses.count(503) == 2 and 200 in statuses
    assert [r.status for r in api.log if r.kind == "api"][:2] == [503, 200]


async def test_a_private_repository_without_a_token_is_unauthorized_after_one_request(
    api: github_mod.LocalGitHub, tmp_path: pathlib.Path
) -> None:
    api.add_release("acme/secret", "v1", {"w.bin": b"private"})
    api.make_private("acme/secret", TOKEN)
    with pytest.raises(errors.AuthError, match="private") as info:
        await pull("github://acme/secret@v1", tmp_path)
    assert info.value.reason == "Unauthorized"
    assert len(api.log) == 1
    with pytest.raises(errors.AuthError, match="401 Bad credentials"):
        await pull("github://acme/secret@v1", tmp_path / "wrong", token="ghp_wrong")
    await pull("github://acme/secret@v1", tmp_path / "secret", token=TOKEN)  # storage.key
    assert (tmp_path / "secret" / "model" / "w.bin").read_bytes() == b"private"


async def test_the_nodes_token_never_goes_to_an_endpoint_the_spec_names(
    monkeypatch: pytest.MonkeyPatch, github: github_mod.LocalGitHub, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)  # the admin's endpoint stays api.github.com
    github.add_release("acme/llama", "v1", {"w.bin": b"public"})
    await pull("github://acme/llama@v1", tmp_path, params={"endpoint": github.endpoint})
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"public"
    assert not any("Authorization" in r.headers for r in github.log)


async def test_a_release_without_assets_and_a_missing_tag_are_clear_errors(
    api: github_mod.LocalGitHub, tmp_path: pathlib.Path
) -> None:
    api.add_release("acme/llama", "v1", {})
    with pytest.raises(errors.NotFoundError, match="has no assets"):
        await pull("github://acme/llama@v1", tmp_path, token=TOKEN)
    with pytest.raises(errors.NotFoundError, match="not found"):
        await pull("github://acme/llama@v9", tmp_path / "v9", token=TOKEN)
