"""Self-tests of the local Hugging Face Hub fixture, through the real huggingface_hub client and
through plain aiohttp requests.

Aspects covered:
- snapshot_download and hf_hub_download get byte-exact files (small, LFS, nested; bytes and
  paths on disk), by branch, commit sha and tag; HfApi.model_info / list_repo_tree report the
  sizes, git oids and LFS sha256, never xetHash; the tree is paginated with Link headers;
- resolve: small files 200 with X-Repo-Commit and ETag, Range answered 206 with Content-Range,
  416 past the end; LFS files 302 to the CDN host 127.0.0.2 with X-Linked-Etag/X-Linked-Size;
- private and gated repos: 401 RepoNotFound/GatedRepo without the token, files with it, and the
  token never reaches the CDN; 404 RevisionNotFound and EntryNotFound;
- a new commit moves main to new content while the old sha stays reachable; tags, including
  ones with slashes (refs/pr/1); a hostile repo may list names like ../x only when asked;
- every fault knob as a plain client sees it: corruption (the client's file differs), 500,
  429 with Retry-After, 200 for a Range request, a body cut short, a stall, the throttle;
- a client giving up on a stall frees the server; If-Range with a stale ETag gets 200;
- the request log and bytes_served, serve_in_thread for code outside the test's loop, and a
  child process killed mid-download (the kill -9 pattern) seen through the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import signal
import subprocess
import sys
import time

import aiohttp
import huggingface_hub
import pytest
from huggingface_hub import errors as hf_errors

from tests.harness import hub as hub_mod

LFS = bytes(range(256)) * 16  # 4096 bytes: above the default LFS threshold
SMALL = b'{"architectures": ["LlamaForCausalLM"]}'
TOKEN = "hf_test_secret_token"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files() -> dict[str, bytes]:
    return {"config.json": SMALL, "model.safetensors": LFS, "nested/dir/extra.bin": LFS[::-1]}


def _download(
    hub: hub_mod.LocalHub, tmp: pathlib.Path, *, repo_id: str, token: str | None = None
) -> pathlib.Path:
    target = tmp / "out"
    huggingface_hub.snapshot_download(
        repo_id, endpoint=hub.endpoint, local_dir=target, cache_dir=tmp / "cache", token=token
    )
    return target


async def test_snapshot_download_gets_every_file_byte_exact(
    hf_hub: hub_mod.LocalHub, tmp_path: pathlib.Path
) -> None:
    on_disk = tmp_path / "big.bin"
    on_disk.write_bytes(LFS * 3)
    files: dict[str, bytes | pathlib.Path] = {**_files(), "weights/big.bin": on_disk}
    sha = hf_hub.add_repo("org/model", files)
    target = await asyncio.to_thread(_download, hf_hub, tmp_path, repo_id="org/model")
    for name, content in files.items():
        expected = content if isinstance(content, bytes) else content.read_bytes()
        assert _sha((target / name).read_bytes()) == _sha(expected), name
    assert hf_hub.commit_of("org/model") == sha
    assert hf_hub.bytes_served("*.safetensors") == len(LFS)
    assert hf_hub.bytes_served("weights/*") == len(LFS) * 3


async def test_hf_hub_download_by_commit_and_by_tag(
    hf_hub: hub_mod.LocalHub, tmp_path: pathlib.Path
) -> None:
    sha = hf_hub.add_repo("org/model", _files(), tags=("v1.0",))

    def fetch(revision: str, folder: str) -> bytes:
        path = huggingface_hub.hf_hub_download(
            "org/model",
            "model.safetensors",
            revision=revision,
            endpoint=hf_hub.endpoint,
            cache_dir=tmp_path / folder,
        )
        return pathlib.Path(path).read_bytes()

    assert await asyncio.to_thread(fetch, sha, "a") == LFS
    assert await asyncio.to_thread(fetch, "v1.0", "b") == LFS
    hf_hub.add_repo("org/model", {"model.safetensors": LFS[::-1]})
    assert hf_hub.tag("org/model", "refs/pr/1") == hf_hub.commit_of("org/model")
    assert await asyncio.to_thread(fetch, "refs/pr/1", "c") == LFS[::-1]


async def test_a_hostile_repo_can_list_unsafe_names_only_when_asked(
    hf_hub: hub_mod.LocalHub,
) -> None:
    with pytest.raises(ValueError, match="bad repository path"):
        hf_hub.add_repo("org/evil", {"../escape.json": SMALL})
    hf_hub.add_repo("org/evil", {"../escape.json": SMALL}, allow_unsafe_paths=True)
    api = huggingface_hub.HfApi(endpoint=hf_hub.endpoint)
    tree = await asyncio.to_thread(lambda: list(api.list_repo_tree("org/evil", recursive=True)))
    files = [e.path for e in tree if isinstance(e, huggingface_hub.hf_api.RepoFile)]
    assert files == ["../escape.json"]


async def test_model_info_and_tree_report_sizes_oids_and_lfs_hashes(
    hf_hub: hub_mod.LocalHub,
) -> None:
    hf_hub.tree_page_size = 2
    sha = hf_hub.add_repo("org/model", _files())
    api = huggingface_hub.HfApi(endpoint=hf_hub.endpoint)
    info = await asyncio.to_thread(api.model_info, "org/model", files_metadata=True)
    assert info.sha == sha
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert siblings["model.safetensors"].lfs is not None
    assert siblings["model.safetensors"].lfs.sha256 == _sha(LFS)
    assert siblings["config.json"].lfs is None
    assert (
        siblings["config.json"].blob_id
        == hashlib.sha1(b"blob %d\0" % len(SMALL) + SMALL, usedforsecurity=False).hexdigest()
    )
    tree = await asyncio.to_thread(
        lambda: list(api.list_repo_tree("org/model", recursive=True, revision=sha))
    )
    files = {e.path: e for e in tree if isinstance(e, huggingface_hub.hf_api.RepoFile)}
    assert set(files) == set(_files())
    assert files["nested/dir/extra.bin"].lfs is not None
    assert files["nested/dir/extra.bin"].lfs.sha256 == _sha(LFS[::-1])
    assert all(f.xet_hash is None for f in files.values())
    pages = [r for r in hf_hub.log if "/tree/" in r.path]
    assert len(pages) >= 3  # 5 entries (3 files, 2 directories) at 2 per page


async def test_small_file_resolve_answers_200_and_206_with_commit_and_etag(
    hf_hub: hub_mod.LocalHub,
) -> None:
    sha = hf_hub.add_repo("org/model", _files())
    url = f"{hf_hub.endpoint}/org/model/resolve/main/config.json"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as whole:
            assert whole.status == 200
            assert whole.headers["X-Repo-Commit"] == sha
            assert whole.headers["ETag"] == f'"{hf_hub.file("org/model", "config.json").git_oid}"'
            assert await whole.read() == SMALL
        async with session.get(url, headers={"Range": "bytes=2-5"}) as part:
            assert part.status == 206
            assert part.headers["Content-Range"] == f"bytes 2-5/{len(SMALL)}"
            assert await part.read() == SMALL[2:6]
        async with session.get(url, headers={"Range": "bytes=9999-"}) as past:
            assert past.status == 416
            assert past.headers["Content-Range"] == f"bytes */{len(SMALL)}"


async def test_lfs_resolve_redirects_to_the_cdn_host_with_linked_headers(
    hf_hub: hub_mod.LocalHub,
) -> None:
    sha = hf_hub.add_repo("org/model", _files())
    url = f"{hf_hub.endpoint}/org/model/resolve/main/model.safetensors"
    async with aiohttp.ClientSession() as session:
        async with session.head(url, allow_redirects=False) as head:
            assert head.status == 302
            assert head.headers["X-Repo-Commit"] == sha
            assert head.headers["X-Linked-Etag"] == f'"{_sha(LFS)}"'
            assert head.headers["X-Linked-Size"] == str(len(LFS))
            location = head.headers["Location"]
        assert location.startswith("http://127.0.0.2:")
        async with session.get(location, headers={"Range": "bytes=100-199"}) as part:
            assert part.status == 206
            assert part.headers["Content-Range"] == f"bytes 100-199/{len(LFS)}"
            assert await part.read() == LFS[100:200]
        async with session.get(location.replace("X-Sig=", "X-Sig=0")) as forged:
            assert forged.status == 403


@pytest.mark.parametrize(("gated", "code"), [(False, "RepoNotFound"), (True, "GatedRepo")])
async def test_protected_repo_needs_the_token_which_never_reaches_the_cdn(
    hf_hub: hub_mod.LocalHub, tmp_path: pathlib.Path, gated: bool, code: str
) -> None:
    hf_hub.add_repo("org/secret", _files(), private=not gated, gated=gated, token=TOKEN)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{hf_hub.endpoint}/api/models/org/secret/revision/main") as r:
            assert r.status == 401
            assert r.headers["X-Error-Code"] == code
    expected = hf_errors.GatedRepoError if gated else hf_errors.RepositoryNotFoundError
    with pytest.raises(expected):
        await asyncio.to_thread(_download, hf_hub, tmp_path, repo_id="org/secret", token="wrong")
    target = await asyncio.to_thread(_download, hf_hub, tmp_path, repo_id="org/secret", token=TOKEN)
    assert (target / "model.safetensors").read_bytes() == LFS
    cdn = [r for r in hf_hub.log if r.host.startswith(hub_mod.CDN_HOST)]
    assert cdn, "the LFS files came from the CDN host"
    assert not hf_hub.cdn_saw_authorization()
    assert any(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in hf_hub.log)


async def test_unknown_revision_entry_and_repo_answer_hub_error_codes(
    hf_hub: hub_mod.LocalHub,
) -> None:
    hf_hub.add_repo("org/model", _files())
    base = hf_hub.endpoint
    cases = [
        (f"{base}/api/models/org/model/revision/nope", 404, "RevisionNotFound"),
        (f"{base}/org/model/resolve/main/missing.json", 404, "EntryNotFound"),
        (f"{base}/api/models/org/other/revision/main", 401, "RepoNotFound"),
    ]
    async with aiohttp.ClientSession() as session:
        for url, status, code in cases:
            async with session.get(url) as response:
                assert (response.status, response.headers.get("X-Error-Code")) == (status, code)
    api = huggingface_hub.HfApi(endpoint=base)
    with pytest.raises(hf_errors.RevisionNotFoundError):
        await asyncio.to_thread(api.model_info, "org/model", revision="nope")


async def test_a_new_commit_moves_main_and_the_old_sha_still_resolves(
    hf_hub: hub_mod.LocalHub,
) -> None:
    first = hf_hub.add_repo("org/model", _files())
    second = hf_hub.add_repo("org/model", {**_files(), "model.safetensors": LFS[::-1]})
    assert first != second
    assert hf_hub.commit_of("org/model") == second
    async with aiohttp.ClientSession() as session:
        url = f"{hf_hub.endpoint}/org/model/resolve/{{}}/model.safetensors"
        for revision, content in ((first, LFS), ("main", LFS[::-1])):
            async with session.get(url.format(revision)) as response:
                assert await response.read() == content


async def test_corruption_knob_changes_the_bytes_the_client_writes(
    hf_hub: hub_mod.LocalHub, tmp_path: pathlib.Path
) -> None:
    hf_hub.add_repo("org/model", _files())
    hf_hub.faults.corrupt("*.safetensors")
    target = await asyncio.to_thread(_download, hf_hub, tmp_path, repo_id="org/model")
    written = (target / "model.safetensors").read_bytes()
    assert len(written) == len(LFS)
    assert written != LFS
    assert (target / "config.json").read_bytes() == SMALL


async def _get(
    session: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, dict[str, str], bytes | Exception]:
    async with session.get(url, headers=headers) as response:
        try:
            body: bytes | Exception = await response.read()
        except aiohttp.ClientPayloadError as exc:
            body = exc
        return response.status, dict(response.headers), body


async def test_each_fault_knob_is_seen_by_a_plain_client(hf_hub: hub_mod.LocalHub) -> None:
    hf_hub.add_repo("org/model", _files())
    url = f"{hf_hub.endpoint}/org/model/resolve/main/config.json"
    async with aiohttp.ClientSession() as session:
        hf_hub.faults.fail_next(1)
        assert (await _get(session, url))[0] == 500
        hf_hub.faults.fail_next(1, status=429, retry_after=2)
        status, headers, _ = await _get(session, url)
        assert (status, headers["Retry-After"]) == (429, "2")
        assert (await _get(session, url))[2] == SMALL  # counters run out

        hf_hub.faults.ignore_range(1)
        status, headers, body = await _get(session, url, Range="bytes=3-7")
        assert (status, body) == (200, SMALL)
        assert "Content-Range" not in headers

        hf_hub.faults.cut_short(1, after_bytes=10)
        status, headers, body = await _get(session, url)
        assert status == 200 and headers["Content-Length"] == str(len(SMALL))
        assert isinstance(body, aiohttp.ClientPayloadError)
        assert hf_hub.log[-1].bytes_sent == 10 and not hf_hub.log[-1].completed

        hf_hub.faults.stall(1, seconds=0.3)
        started = time.monotonic()
        assert (await _get(session, url))[2] == SMALL
        assert time.monotonic() - started >= 0.3

        hf_hub.faults.throttle(len(LFS) * 4)  # 4096 bytes at 16 KiB/s: about 0.25 s
        location = f"{hf_hub.endpoint}/org/model/resolve/main/model.safetensors"
        started = time.monotonic()
        assert (await _get(session, location))[2] == LFS
        assert time.monotonic() - started >= 0.2
        hf_hub.faults.reset()
        assert (await _get(session, url))[2] == SMALL


async def test_fail_next_can_target_api_requests_and_one_file(hf_hub: hub_mod.LocalHub) -> None:
    hf_hub.add_repo("org/model", _files())
    async with aiohttp.ClientSession() as session:
        hf_hub.faults.fail_next(1, status=503, kind="api")
        info = f"{hf_hub.endpoint}/api/models/org/model/revision/main"
        assert (await _get(session, info))[0] == 503
        assert (await _get(session, info))[0] == 200
        hf_hub.faults.fail_next(1, path_glob="nested/*")
        cdn = f"{hf_hub.endpoint}/org/model/resolve/main/{{}}"
        assert (await _get(session, cdn.format("model.safetensors")))[0] == 200
        assert (await _get(session, cdn.format("nested/dir/extra.bin")))[0] == 500


def test_serve_in_thread_serves_a_client_outside_any_event_loop(tmp_path: pathlib.Path) -> None:
    with hub_mod.LocalHub().serve_in_thread() as hub:
        hub.add_repo("org/model", _files())
        target = _download(hub, tmp_path, repo_id="org/model")
        assert (target / "nested/dir/extra.bin").read_bytes() == LFS[::-1]
        assert hub.bytes_served() == len(LFS) * 2 + len(SMALL)


async def test_a_client_giving_up_on_a_stall_frees_the_server_quickly(
    hf_hub: hub_mod.LocalHub,
) -> None:
    hf_hub.add_repo("org/model", _files())
    hf_hub.faults.stall(1, seconds=60, after_bytes=100)
    url = f"{hf_hub.endpoint}/org/model/resolve/main/model.safetensors"
    timeout = aiohttp.ClientTimeout(sock_read=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(url) as response:
                await response.read()
    stalled = hf_hub.log.matching("model.safetensors", kind="data")[-1]
    assert (stalled.bytes_sent, stalled.completed) == (100, False)
    # the stalled handler is cancelled, not waited for (it would stall for a minute)
    await asyncio.wait_for(hf_hub.stop(), 30)


async def test_if_range_with_a_stale_etag_gets_the_whole_file(hf_hub: hub_mod.LocalHub) -> None:
    hf_hub.add_repo("org/model", _files())
    url = f"{hf_hub.endpoint}/org/model/resolve/main/config.json"
    etag = f'"{hf_hub.file("org/model", "config.json").git_oid}"'
    async with aiohttp.ClientSession() as session:
        status, _, body = await _get(session, url, Range="bytes=1-2", **{"If-Range": etag})
        assert (status, body) == (206, SMALL[1:3])
        status, _, body = await _get(session, url, Range="bytes=1-2", **{"If-Range": '"old"'})
        assert (status, body) == (200, SMALL)


def test_a_child_process_killed_mid_download_leaves_an_incomplete_record(
    hf_hub_in_thread: hub_mod.LocalHub,
) -> None:
    hub = hf_hub_in_thread
    hub.add_repo("org/model", {"big.bin": LFS * 64})  # 256 KiB at 128 KiB/s: 2 s
    hub.faults.throttle(128 * 1024)
    url = f"{hub.endpoint}/org/model/resolve/main/big.bin"
    code = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()"
    child = subprocess.Popen([sys.executable, "-c", code, url])
    try:
        hub.wait_for_blocking(lambda: hub.bytes_served("big.bin") >= 32 * 1024)
        child.kill()
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    transfer = [r for r in hub.log if r.kind == "data"][-1]
    assert 32 * 1024 <= transfer.bytes_sent < len(LFS) * 64
    assert not transfer.completed
    assert child.returncode == -signal.SIGKILL
