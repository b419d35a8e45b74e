"""A pull that finds a peer holding the model: the real pipeline, engine and peer server, in one
process, with the local hub as the origin and the peer over TLS.

Node A pulls from the hub and serves what it placed; node B pulls the same model and its
router finds A (a stand-in for the ConfigMap listing). With A's CA, B takes every byte of the
large files from A and the hub serves only the files under 1 MiB; with a CA that did not sign
A's certificate, B cannot poll A and the pull is a plain origin download.
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
from collections.abc import AsyncIterator

import pytest

from model_agent import errors, metrics, pipeline, report, settings
from model_agent.peers import discovery, holdings, router, server
from model_agent.peers import service as peer_service
from model_agent.peers import tls as peer_tls
from tests.harness import hub, modelfiles, tls

REPO = "org/peered"
TOKEN = "fetch-test-peer-token-0123456789"
KEY = "clusterbasemodel.peered"
LABELS = metrics.ModelLabels("ClusterBaseModel", "", "peered")


class FixedLister:
    """Discovery's answer, as if node A's ConfigMap said Ready with its peer URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def candidates(self, key: str) -> list[discovery.Candidate]:
        return [discovery.Candidate("node-a", self.url, report.READY)]


class NodeA:
    def __init__(self, root: pathlib.Path) -> None:
        self.destination = root / KEY
        self.state = root / ".model-agent"
        self.ready = False
        self.metrics = metrics.Metrics()
        self.registry = holdings.Registry(
            state_dir=self.state, placed=lambda key: self.destination if self.ready else None
        )


@pytest.fixture
def ca(tmp_path: pathlib.Path) -> tls.CertificateAuthority:
    return tls.CertificateAuthority.create(tmp_path / "ca", "peers")


@pytest.fixture
async def source(tmp_path: pathlib.Path, hf_hub: hub.LocalHub) -> dict[str, pathlib.Path]:
    directory = modelfiles.write_model(
        tmp_path / "src", shards=2, tensors={"w": ("F32", [300_000])}
    )
    files = {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*")) if p.is_file()}
    hf_hub.add_repo(REPO, files, lfs_threshold=1024)
    return files


def config(hf: hub.LocalHub) -> settings.Settings:
    return settings.Settings(hf_endpoint=hf.endpoint, multipart_threshold=64 * 1024)


async def pull(
    hf: hub.LocalHub,
    root: pathlib.Path,
    peering: peer_service.Peering | None,
    recorder: metrics.Metrics | None = None,
) -> pipeline.PullResult:
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    request = pipeline.PullRequest(
        uri=f"hf://{REPO}",
        destination=root / KEY,
        metrics_labels=LABELS,
        config_key=KEY,
        root=root,
    )
    return await pipeline.pull(
        request,
        config(hf),
        state_dir=root / ".model-agent",
        metrics=recorder,
        peering=peering,
    )


def peering(me: str, registry: holdings.Registry, lister: object, **kw: object):
    return peer_service.Peering(
        me=me,
        token=TOKEN,
        registry=registry,
        lister=lister,  # type: ignore[arg-type]
        address="127.0.0.1",
        port=0,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def node_a(
    tmp_path: pathlib.Path, hf_hub: hub.LocalHub, source: dict, ca: tls.CertificateAuthority
) -> AsyncIterator[tuple[NodeA, str]]:
    a = NodeA(tmp_path / "a")
    await pull(hf_hub, tmp_path / "a", peering("node-a", a.registry, FixedLister("http://x:1")))
    a.ready = True
    context = ca.server_context(("127.0.0.1",))
    async with server.PeerServer(
        a.registry, host="127.0.0.1", port=0, token=TOKEN, tls=context, recorder=a.metrics
    ) as running:
        yield a, f"https://127.0.0.1:{running.port}"


def digests(directory: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


async def test_a_ready_peer_over_tls_serves_every_large_file_and_the_origin_the_small(
    tmp_path, hf_hub, source, node_a, ca
):
    a, url = node_a
    before = hf_hub.bytes_served()
    recorder = metrics.Metrics()
    b_root = tmp_path / "b"
    registry = holdings.Registry(state_dir=b_root / ".model-agent", placed=lambda key: None)
    result = await pull(
        hf_hub,
        b_root,
        peering(
            "node-b",
            registry,
            FixedLister(url),
            client_tls=peer_tls.client_context(str(ca.cert_path)),
        ),
        recorder,
    )
    assert digests(b_root / KEY) == digests(a.destination)
    sizes = [p.stat().st_size for p in source.values()]
    small = sum(size for size in sizes if size < router.SMALL_FILE)
    assert sum(size >= router.SMALL_FILE for size in sizes) >= 1
    # Every byte of the large files came from node A; the small ones from the origin.
    assert hf_hub.bytes_served() - before == small
    assert result.bytes_downloaded == sum(sizes)
    from_peer = recorder.registry.get_sample_value(
        "model_agent_download_bytes_total", {**LABELS._asdict(), "source": "peer"}
    )
    assert from_peer == sum(sizes) - small


@pytest.mark.parametrize("trust", ["another CA", "no peer CA (system CAs)"])
async def test_a_peer_whose_certificate_is_not_trusted_is_not_used(
    tmp_path, hf_hub, source, node_a, trust
):
    a, url = node_a
    client_tls = None
    if trust == "another CA":
        stranger = tls.CertificateAuthority.create(tmp_path / "other-ca", "other")
        client_tls = peer_tls.client_context(str(stranger.cert_path))
    before = hf_hub.bytes_served()
    b_root = tmp_path / "b"
    registry = holdings.Registry(state_dir=b_root / ".model-agent", placed=lambda key: None)
    b = peering("node-b", registry, FixedLister(url), client_tls=client_tls)
    result = await pull(hf_hub, b_root, b)
    assert digests(b_root / KEY) == digests(a.destination)
    assert hf_hub.bytes_served() - before == result.bytes_downloaded  # all from the origin
    # Not even asked what it holds: the token never went to an unverified server.
    answered = a.metrics.registry.get_sample_value(
        "model_agent_peer_requests_total", {"result": "ok"}
    )
    assert answered is None


async def test_a_tenant_without_access_to_a_private_model_never_asks_a_peer_for_it(
    tmp_path, hf_hub, ca
):
    # Node A holds a private repository, read with its token; a tenant's model on node B
    # names the same repository without one. The pin fails at the origin, as without
    # peering, and A is never asked: the peers cannot hand out what the origin refuses.
    directory = modelfiles.write_model(tmp_path / "private-src", tensors={"w": ("F32", [300_000])})
    files = {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*")) if p.is_file()}
    hf_hub.add_repo(REPO, files, lfs_threshold=1024, private=True, token="owner-token")
    a = NodeA(tmp_path / "a")
    await asyncio.to_thread((tmp_path / "a").mkdir)
    await pipeline.pull(
        pipeline.PullRequest(
            uri=f"hf://{REPO}",
            destination=a.destination,
            config_key=KEY,
            root=tmp_path / "a",
            token="owner-token",
        ),
        config(hf_hub),
        state_dir=a.state,
        peering=peering("node-a", a.registry, FixedLister("http://x:1")),
    )
    a.ready = True
    async with server.PeerServer(
        a.registry,
        host="127.0.0.1",
        port=0,
        token=TOKEN,
        tls=ca.server_context(("127.0.0.1",)),
        recorder=a.metrics,
    ) as running:
        url = f"https://127.0.0.1:{running.port}"
        registry = holdings.Registry(
            state_dir=tmp_path / "b" / ".model-agent", placed=lambda key: None
        )
        b = peering(
            "node-b",
            registry,
            FixedLister(url),
            client_tls=peer_tls.client_context(str(ca.cert_path)),
        )
        with pytest.raises(errors.AuthError):
            await pull(hf_hub, tmp_path / "b", b)
    assert (
        a.metrics.registry.get_sample_value("model_agent_peer_requests_total", {"result": "ok"})
        is None
    )
    assert not (tmp_path / "b" / KEY).exists() or not any((tmp_path / "b" / KEY).iterdir())
