"""The peer server (peers/server + peers/holdings) on loopback, asked by a real aiohttp client.

Covers what the fleet e2e cannot reach cheaply: a download in progress serves only the ranges
it has written (416 for the rest), a placed file changed or swapped for a symlink after its
manifest was written is refused, and a model held for another ConfigMap key is not served.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pathlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from model_agent import manifest, metrics
from model_agent.download import staging
from model_agent.peers import holdings, protocol, server

TOKEN = "integration-peer-token-0123456789"
KEY = "clusterbasemodel.placed"
LIVE = "clusterbasemodel.live"
DATA = os.urandom(64 * 1024)
SHA = hashlib.sha256(DATA).hexdigest()
IDENTITY = protocol.file_identity(len(DATA), f"sha256:{SHA}")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Setup:
    def __init__(self, root: pathlib.Path, registry: holdings.Registry, url: str, m):
        self.root, self.registry, self.url, self.metrics = root, registry, url, m

    def headers(self, start: int, end: int, *, revision: str = "rev1") -> dict[str, str]:
        return {
            **AUTH,
            "Range": f"bytes={start}-{end - 1}",
            protocol.REVISION_HEADER: revision,
            protocol.IDENTITY_HEADER: IDENTITY or "",
        }


@pytest.fixture
async def setup(tmp_path: pathlib.Path) -> AsyncIterator[Setup]:
    root = tmp_path / "models"
    state = root / ".model-agent"
    placed_dir = root / KEY
    placed_dir.mkdir(parents=True)
    (placed_dir / "weights.bin").write_bytes(DATA)
    mtime = (placed_dir / "weights.bin").stat().st_mtime_ns
    await manifest.write(
        manifest.Manifest(
            destination=str(placed_dir),
            uri="hf://org/placed",
            request_key="k",
            revision="rev1",
            files=(manifest.Entry("weights.bin", len(DATA), mtime, f"sha256:{SHA}"),),
            owner=KEY,
        ),
        state_dir=state,
    )
    ready = {KEY: placed_dir, "clusterbasemodel.stolen": placed_dir}
    registry = holdings.Registry(state_dir=state, placed=ready.get)
    recorder = metrics.Metrics()
    async with server.PeerServer(
        registry, host="127.0.0.1", port=0, token=TOKEN, recorder=recorder
    ) as running:
        yield Setup(root, registry, f"http://127.0.0.1:{running.port}", recorder)


async def get(url: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as answer:
        return answer.status, await answer.read(), dict(answer.headers)


async def test_a_placed_file_is_served_by_range_with_its_identity(setup):
    url = protocol.file_url(setup.url, KEY, "weights.bin")
    status, body, headers = await get(url, setup.headers(100, 5000))
    assert status == 206
    assert body == DATA[100:5000]
    assert headers[protocol.IDENTITY_HEADER] == IDENTITY
    assert headers["Content-Range"] == f"bytes 100-4999/{len(DATA)}"
    served = setup.metrics.registry.get_sample_value("model_agent_peer_served_bytes_total")
    assert served == 4900


async def test_a_model_recorded_for_another_key_is_not_served(setup):
    # The lookup finds a directory for "stolen", but its manifest names another owner.
    url = protocol.model_url(setup.url, "clusterbasemodel.stolen")
    assert (await get(url, AUTH))[0] == 404
    file_url = protocol.file_url(setup.url, "clusterbasemodel.stolen", "weights.bin")
    assert (await get(file_url, setup.headers(0, 10)))[0] == 404


async def test_a_placed_file_changed_on_disk_or_swapped_for_a_symlink_is_refused(setup):
    url = protocol.file_url(setup.url, KEY, "weights.bin")
    target = setup.root / KEY / "weights.bin"
    secret = setup.root / "secret"
    secret.write_bytes(b"s" * len(DATA))
    target.unlink()
    target.symlink_to(secret)
    assert (await get(url, setup.headers(0, 10)))[0] == 404
    target.unlink()
    target.write_bytes(DATA)  # same bytes, but not the file the manifest recorded (mtime)
    os.utime(target, ns=(1, 1))
    assert (await get(url, setup.headers(0, 10)))[0] == 404


async def test_a_download_in_progress_serves_only_the_ranges_it_wrote(setup, tmp_path):
    destination = setup.root / LIVE
    destination.mkdir()
    live = setup.registry.start(LIVE, destination)
    # Before the pin: known as starting, nothing to serve.
    status, body, _ = await get(protocol.model_url(setup.url, LIVE), AUTH)
    assert status == 200 and protocol.parse_holding(json.loads(body)).state == "starting"
    async with staging.Staging(destination) as stage:
        staged = await stage.stage(path="weights.bin", size=len(DATA), identity=SHA)
        await asyncio.to_thread(_write_at_start, staged.temp_path, DATA[:1000])
        staged.mark(0, 1000)
        live.revision = "rev1"
        live.identities = {"weights.bin": (IDENTITY or "", len(DATA))}
        live.active = {"weights.bin": staged}
        live.received = lambda: staged.completed_bytes
        url = protocol.file_url(setup.url, LIVE, "weights.bin")
        status, body, _ = await get(url, setup.headers(0, 1000))
        assert (status, body) == (206, DATA[:1000])
        assert (await get(url, setup.headers(500, 1500)))[0] == 416  # half of it not written
        assert (await get(url, setup.headers(0, 10, revision="rev0")))[0] == 409
        answer = await get(protocol.model_url(setup.url, LIVE), AUTH)
        holding = protocol.parse_holding(json.loads(answer[1]))
        assert holding.state == "downloading"
        assert holding.files["weights.bin"].ranges == ((0, 1000),)
    setup.registry.finish(LIVE, live)
    assert (await get(protocol.model_url(setup.url, LIVE), AUTH))[0] == 404


def _write_at_start(path: pathlib.Path, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.write(data)
