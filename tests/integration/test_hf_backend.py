"""The pull pipeline through huggingface_hub and aiohttp against the local hub (``hf_hub``).

Aspects: a multi-file model whose LFS shards exceed the (small) multipart threshold pulls in
ranged parts, every file's sha256 matches, nothing temporary remains, the token never reaches
the CDN host; a complete model reruns with zero bytes downloaded and zero bytes hashed; 401,
403, 404 (repo), 404 (revision) and gated repos raise distinct errors; 500s, 429 with
Retry-After, 200 to a Range request, a short body and a stall are each recovered; corrupted
bytes are retried, and when they persist the pull fails naming the file and both digests and
the file never appears at its final path; a revision that moves mid-pull does not mix commits;
unsafe remote names are rejected before anything is written; allow/ignore params; --temp-dir
on another directory; metrics are recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib
import socket
import tempfile
from collections.abc import AsyncIterator

import prometheus_client
import pytest
from aiohttp import web

from model_agent import errors, manifest, metrics, pipeline, settings, verify
from model_agent.download import staging
from model_agent.storage import huggingface
from tests.harness import hub, modelfiles

REPO = "org/tiny"
CDN = "127.0.0.2"
LABELS = metrics.ModelLabels("ClusterBaseModel", "", "tiny")


def model_files(directory: pathlib.Path, *, shard_floats: int = 60_000) -> dict[str, pathlib.Path]:
    """A real model folder (config.json, 2 safetensors shards of ~240 KB, tokenizer)."""
    tensors = {"a": ("F32", [shard_floats]), "b": ("F32", [shard_floats])}
    modelfiles.write_model(directory, shards=2, tensors=tensors)
    return {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*")) if p.is_file()}


def config(hf: hub.LocalHub, **overrides: object) -> settings.Settings:
    values: dict[str, object] = {
        "hf_endpoint": hf.endpoint,
        "multipart_threshold": 64 * 1024,
        "stall_timeout": 0.5,
        "download_retry": 2,
    }
    values.update(overrides)
    return settings.Settings(**values)  # type: ignore[arg-type]


def all_files(root: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def source(tmp_path: pathlib.Path) -> dict[str, pathlib.Path]:
    return model_files(tmp_path / "source")


async def do_pull(
    hf: hub.LocalHub,
    tmp_path: pathlib.Path,
    *,
    uri: str = f"hf://{REPO}",
    recorder: metrics.Metrics | None = None,
    **kwargs: object,
) -> pipeline.PullResult:
    request_fields = {k: kwargs.pop(k) for k in ("token", "parameters") if k in kwargs}
    request = pipeline.PullRequest(
        uri=uri,
        destination=tmp_path / "dest",
        metrics_labels=LABELS,
        **request_fields,  # type: ignore[arg-type]
    )
    return await pipeline.pull(
        request, config(hf, **kwargs), state_dir=tmp_path / "state", metrics=recorder
    )


def assert_identical(source: dict[str, pathlib.Path], dest: pathlib.Path) -> None:
    placed = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert placed == set(source)
    for name, path in source.items():
        assert sha256(dest / name) == sha256(path), name


async def test_multi_file_model_pulls_in_parts_with_every_sha256_matching(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    sha = hf_hub.add_repo(REPO, source, private=True, token="hf_secret_token_123")
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())
    result = await do_pull(hf_hub, tmp_path, token="hf_secret_token_123", recorder=recorder)
    dest = tmp_path / "dest"
    assert_identical(source, dest)
    assert result.revision == sha and result.config["artifact"]["sha"] == sha
    assert result.config["modelType"]
    shard = "model-00001-of-00002.safetensors"
    ranges = [r.range for r in hf_hub.log if r.host.startswith("127.0.0.2") and shard in r.path]
    assert len(ranges) >= 3 and all(r and r.startswith("bytes=") for r in ranges)
    assert not hf_hub.cdn_saw_authorization()
    # Data requests are built by huggingface_hub itself (hf_hub_url, build_hf_headers): the
    # library's user agent on the hub's resolve requests, as its own downloads send.
    resolves = [r for r in hf_hub.log if "/resolve/" in r.path and not r.host.startswith(CDN)]
    assert resolves
    for record in resolves:
        agent = {k.lower(): v for k, v in record.headers.items()}.get("user-agent", "")
        assert agent.startswith("model-agent/") and "hf_hub/" in agent, agent
    assert not (dest / staging.STAGING_NAME).exists()
    assert not [p for p in all_files(tmp_path) if "incomplete" in p.name or p.suffix == ".part"]
    registry = recorder.registry
    got = registry.get_sample_value
    assert got("model_agent_downloads_success_total", dict(LABELS._asdict())) == 1
    origin = {**LABELS._asdict(), "source": "origin"}
    assert got("model_agent_download_bytes_total", origin) == sum(
        p.stat().st_size for p in source.values()
    )
    assert got("model_agent_verifications_total", {**LABELS._asdict(), "result": "success"}) == len(
        source
    )
    size = {"model_type": LABELS.model_type}
    assert got("model_agent_model_size_bytes_count", size) == 1  # every placed model observed
    assert got("model_agent_model_size_bytes_sum", size) == sum(
        p.stat().st_size for p in source.values()
    )


async def test_complete_model_reruns_with_nothing_downloaded_or_hashed(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    hf_hub.add_repo(REPO, source)
    first = await do_pull(hf_hub, tmp_path)
    requests = len(hf_hub.log)
    again = await do_pull(hf_hub, tmp_path)
    assert (again.bytes_downloaded, again.bytes_hashed) == (0, 0)
    assert again.config == first.config
    assert len(hf_hub.log) == requests
    stored = manifest.load(tmp_path / "dest", state_dir=tmp_path / "state")
    assert stored is not None and manifest.matches_disk(stored)
    assert stored.config == first.config


async def test_files_already_in_place_are_hashed_not_downloaded(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    hf_hub.add_repo(REPO, source)
    await do_pull(hf_hub, tmp_path)
    manifest.forget(tmp_path / "dest", state_dir=tmp_path / "state")
    again = await do_pull(hf_hub, tmp_path)
    assert again.bytes_downloaded == 0 and again.bytes_hashed > 0


@pytest.mark.parametrize(
    ("setup", "token", "error", "text"),
    [
        ("private", None, errors.AuthError, "401 Unauthorized"),
        ("private", "wrong", errors.AuthError, "token was rejected"),
        ("forbidden", "hf_x", errors.AuthError, "403 Forbidden"),
        ("missing", "hf_x", errors.NotFoundError, r"not found \(404\)"),
        ("gated", None, huggingface.GatedRepoError, "gated"),
        ("revision", None, errors.NotFoundError, "revision 'nope' not found"),
    ],
)
async def test_access_failures_each_give_a_distinct_clear_error(
    hf_hub: hub.LocalHub,
    tmp_path: pathlib.Path,
    source: dict[str, pathlib.Path],
    setup: str,
    token: str | None,
    error: type[Exception],
    text: str,
) -> None:
    uri = f"hf://{REPO}"
    if setup == "private":
        hf_hub.add_repo(REPO, source, private=True, token="right")
    elif setup == "gated":
        hf_hub.add_repo(REPO, source, gated=True)
    elif setup == "forbidden":
        hf_hub.add_repo(REPO, source)
        hf_hub.faults.fail_next(5, status=403, kind="api")
    elif setup == "revision":
        hf_hub.add_repo(REPO, source)
        uri = f"hf://{REPO}@nope"
    with pytest.raises(error, match=text) as caught:
        await do_pull(hf_hub, tmp_path, uri=uri, token=token)
    assert not caught.value.retryable  # type: ignore[attr-defined]
    assert "right" not in str(caught.value) and "hf_x" not in str(caught.value)
    assert not (tmp_path / "dest" / "config.json").exists()


@pytest.mark.parametrize("fault", ["500", "429", "ignore_range", "cut_short", "stall"])
async def test_transfer_faults_are_recovered(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path], fault: str
) -> None:
    hf_hub.add_repo(REPO, source)
    faults = hf_hub.faults
    glob = "*.safetensors"
    if fault == "500":
        faults.fail_next(3, status=500, path_glob=glob)
    elif fault == "429":
        faults.fail_next(2, status=429, retry_after=0.2, path_glob=glob)
    elif fault == "ignore_range":
        faults.ignore_range(2, path_glob=glob)
    elif fault == "cut_short":
        faults.cut_short(2, after_bytes=1000, path_glob=glob)
    else:
        faults.stall(1, seconds=3, path_glob=glob)
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())
    await do_pull(hf_hub, tmp_path, recorder=recorder)
    assert_identical(source, tmp_path / "dest")
    if fault == "429":
        waited = recorder.registry.get_sample_value(
            "model_agent_rate_limit_total", dict(LABELS._asdict())
        )
        assert waited == 2


async def test_corrupted_bytes_are_downloaded_again(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    hf_hub.add_repo(REPO, source)
    hf_hub.faults.corrupt("config.json", count=1)
    await do_pull(hf_hub, tmp_path)
    assert_identical(source, tmp_path / "dest")


async def test_persistent_corruption_fails_naming_the_file_and_both_digests(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    hf_hub.add_repo(REPO, source)
    name = "model-00002-of-00002.safetensors"
    hf_hub.faults.corrupt(name)
    recorder = metrics.Metrics(prometheus_client.CollectorRegistry())
    with pytest.raises(verify.ChecksumFailedError) as caught:
        await do_pull(hf_hub, tmp_path, recorder=recorder)
    message = str(caught.value)
    assert name in message
    assert sha256(source[name]) in message and "got " in message
    assert not (tmp_path / "dest" / name).exists()
    assert (
        recorder.registry.get_sample_value(
            "model_agent_downloads_failed_total", {**LABELS._asdict(), "reason": "ChecksumMismatch"}
        )
        == 1
    )
    assert not (tmp_path / "dest" / staging.STAGING_NAME).exists()  # --cleanup-temp


async def test_a_revision_that_moves_mid_pull_does_not_mix_commits(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    first = hf_hub.add_repo(REPO, source)
    changed = {name: path.read_bytes() + b" " for name, path in source.items()}
    hf_hub.faults.throttle(500_000)
    task = asyncio.create_task(do_pull(hf_hub, tmp_path))
    deadline = asyncio.get_running_loop().time() + 10
    while hf_hub.bytes_served("*.safetensors") == 0:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    second = hf_hub.add_repo(REPO, changed)
    assert not task.done()  # the commit moved while the pull was running
    hf_hub.faults.throttle(None)
    result = await task
    assert result.revision == first != second
    assert_identical(source, tmp_path / "dest")


async def test_allow_and_ignore_params_choose_the_files(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    hf_hub.add_repo(REPO, {**source, "extra/notes.txt": b"x"})
    await do_pull(
        hf_hub,
        tmp_path,
        parameters={"allow": "*.json,*.safetensors,extra/*", "ignore": "tokenizer*"},
    )
    placed = sorted(str(p.relative_to(tmp_path / "dest")) for p in (tmp_path / "dest").rglob("*"))
    assert "extra/notes.txt" in placed and "tokenizer.json" not in placed
    assert "config.json" in placed


async def test_temp_dir_elsewhere_keeps_partial_files_out_of_the_destination(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    hf_hub.add_repo(REPO, source)
    await do_pull(hf_hub, tmp_path, temp_dir=str(tmp_path / "tmp"))
    assert_identical(source, tmp_path / "dest")
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a second filesystem")
async def test_temp_dir_on_another_filesystem_copies_then_renames(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    hf_hub.add_repo(REPO, source)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        assert os.stat(other).st_dev != os.stat(tmp_path).st_dev
        await do_pull(hf_hub, tmp_path, temp_dir=other)
        assert os.listdir(other) == []
    assert_identical(source, tmp_path / "dest")
    assert not [p for p in all_files(tmp_path / "dest") if p.name.endswith(".incomplete")]


async def test_progress_reports_every_phase_and_ends_complete(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path, source: dict[str, pathlib.Path]
) -> None:
    hf_hub.add_repo(REPO, source)
    seen: list[pipeline.Progress] = []
    request = pipeline.PullRequest(uri=f"hf://{REPO}", destination=tmp_path / "dest")
    await pipeline.pull(request, config(hf_hub), state_dir=tmp_path / "state", progress=seen.append)
    assert seen[0].phase == "scanning"
    assert {"downloading", "finalizing"} <= {p.phase for p in seen}
    last = seen[-1]
    assert (
        last.completed_bytes == last.total_bytes == sum(p.stat().st_size for p in source.values())
    )
    assert last.completed_files == last.total_files == len(source)


async def test_no_space_is_a_clear_permanent_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.NoSpaceError, match="bytes needed") as caught:
        await staging.check_space(tmp_path, 10**18, what="model")
    assert not caught.value.retryable


@pytest.fixture
async def hostile_hub() -> AsyncIterator[str]:
    """A hub whose tree lists names that would escape the destination."""
    sha = "a" * 40
    names = ["config.json", "../escape.txt", "/abs.txt", "dir\\win.txt"]

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"id": "org/evil", "sha": sha, "siblings": []})

    async def tree(request: web.Request) -> web.Response:
        return web.json_response(
            [{"type": "file", "path": n, "size": 1, "oid": "b" * 40} for n in names]
        )

    async def resolve(request: web.Request) -> web.Response:
        return web.Response(body=b"x")

    app = web.Application()
    app.router.add_get("/api/models/org/evil/revision/{rev}", info)
    app.router.add_get("/api/models/org/evil/tree/{rev}", tree)
    app.router.add_get("/org/evil/resolve/{tail:.*}", resolve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    await runner.cleanup()


async def test_unsafe_remote_names_are_rejected_and_nothing_is_written(
    hostile_hub: str, tmp_path: pathlib.Path
) -> None:
    request = pipeline.PullRequest(uri="hf://org/evil", destination=tmp_path / "a" / "dest")
    with pytest.raises(errors.UnsafePathError, match="escape"):
        await pipeline.pull(
            request,
            settings.Settings(hf_endpoint=hostile_hub),
            state_dir=tmp_path / "state",
        )
    assert all_files(tmp_path) == []


async def test_a_repository_without_config_is_placed_and_says_why_it_was_not_analysed(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    hf_hub.add_repo(REPO, {"model-q4.gguf": b"GGUF" + b"\0" * 4000, "README.md": b"# gguf\n"})
    result = await do_pull(hf_hub, tmp_path)
    assert (tmp_path / "dest" / "model-q4.gguf").read_bytes()[:4] == b"GGUF"
    assert "no config.json" in result.config["analysisError"]
    assert result.config["artifact"]["sha"] == hf_hub.commit_of(REPO)
    assert "modelType" not in result.config


async def test_a_malformed_config_is_placed_with_an_analysis_error_naming_the_file(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    """The files are verified: as in OME, an analysis problem never fails the pull."""
    hf_hub.add_repo(REPO, {"config.json": b"{not json", "model.gguf": b"GGUF"})
    result = await do_pull(hf_hub, tmp_path)
    assert "config.json" in result.config["analysisError"]
    assert result.config["analysisErrorReason"] == "InvalidModelFiles"
