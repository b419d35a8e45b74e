"""Storage faults under the whole agent (in process, real clients, local hub and object
store): each fault ends in success after retries or in a clear ``Failed``, never a wrong byte.

Aspects, for an HF model and an OCI model each: corrupted bytes, truncated bodies, 200 for a
Range request, 429 with Retry-After, a burst of 5xx, 5xx and 429 on the listing and metadata
requests (pinning), stalled bodies and TCP connection resets
(RST through a proxy) are retried until the model is Ready with every file equal to the source,
the fault visibly happened (the server log shows it) and no staging directory is left;
corruption or 500s that never stop end ``Failed`` with the reason and the file named, and the
corrupted file never reaches its final path. A revision that moves mid-download (HF: a new
commit on main; OCI: an object replaced after pinning) never mixes versions: the files are
all of one version (HF: the reported sha is the pinned commit, whose files are on disk).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest

from tests.fault import support
from tests.fault.agents import Harness, ResetProxy
from tests.harness import faults as faults_mod
from tests.harness.faults import RequestRecord

pytestmark = pytest.mark.timeout(120)
GLOB = "*weights*"


@dataclasses.dataclass
class Source:
    kind: str
    server: faults_mod.ServerBase
    files: dict[str, bytes]
    uri: str
    parameters: dict[str, str]
    key: str
    body: dict


@pytest.fixture
async def world(kube_api, kube_client, tmp_path) -> AsyncIterator[Harness]:
    kube_api.add_node("node-a")
    harness = Harness(kube_api, kube_client, tmp_path / "models")
    harness.root.mkdir()
    yield harness
    await harness.stop_all()


@pytest.fixture(params=["hf", "oci"])
async def source(request, world, hf_hub, oci_store, tmp_path) -> Source:
    rng = support.seeded(f"storage-{request.node.name}")
    extra = {f"weights-{i}.dat": support.patterned(300_000 + 1_009 * i, rng) for i in range(2)}
    files = support.model_files(tmp_path / "src", extra=extra)
    return make_source(request.param, world, hf_hub, oci_store, tmp_path, files)


def make_source(kind, world, hf_hub, oci_store, tmp_path, files, **hub_options) -> Source:
    if kind == "hf":
        hf_hub.add_repo("org/m", files, **hub_options)
        world.environ["HF_ENDPOINT"] = hf_hub.endpoint
        uri, parameters, server = "hf://org/m", {}, hf_hub
    else:
        for name, data in files.items():
            oci_store.add_object("models", f"m/{name}", data)
        world.environ["OCI_CONFIG_FILE"] = str(support.write_oci_config(oci_store, tmp_path))
        uri = f"oci://n/{oci_store.namespace}/b/models/o/m"
        parameters = {"auth": "UserPrincipal", "endpoint": oci_store.endpoint}
        world.environ["MODEL_AGENT_CREDENTIAL_HOSTS"] = oci_store.endpoint.removeprefix("http://")
        server = oci_store
    body = support.model("BaseModel", "m", uri, parameters=parameters)
    return Source(kind, server, files, uri, parameters, "default.basemodel.m", body)


def data(server: faults_mod.ServerBase) -> list[RequestRecord]:
    return [r for r in list(server.log) if r.kind == "data"]


def corrupted_twice(server: faults_mod.ServerBase) -> bool:
    return len([r for r in data(server) if r.file and r.file.endswith("weights-0.dat")]) >= 2


TRANSIENT: dict[str, tuple[Callable[[faults_mod.Faults], None], Callable[..., bool]]] = {
    "corrupted-bytes": (lambda f: f.corrupt("*weights-0.dat", count=1), corrupted_twice),
    "truncated-bodies": (
        lambda f: f.cut_short(3, 5_000, path_glob=GLOB),
        lambda s: any(r.bytes_sent == 5_000 and not r.completed for r in data(s)),
    ),
    "200-for-range": (
        lambda f: f.ignore_range(3, path_glob=GLOB),
        lambda s: any(r.range and r.status == 200 for r in data(s)),
    ),
    "429-retry-after": (
        lambda f: f.fail_next(3, 429, retry_after=0.3, path_glob=GLOB),
        lambda s: sum(r.status == 429 for r in data(s)) == 3,
    ),
    "5xx-burst": (
        lambda f: f.fail_next(6, 503, path_glob=GLOB),
        lambda s: sum(r.status == 503 for r in data(s)) == 6,
    ),
    "listing-5xx": (
        lambda f: f.fail_next(2, 503, kind=("api", "meta")),
        lambda s: sum(r.status == 503 for r in list(s.log)) == 2,
    ),
    "listing-429": (
        lambda f: f.fail_next(2, 429, retry_after=0.3, kind="api"),
        lambda s: sum(r.status == 429 for r in list(s.log)) == 2,
    ),
    "stalls": (
        lambda f: f.stall(2, 4.0, path_glob=GLOB),
        lambda s: (
            any(not r.completed and r.status == 206 for r in data(s))
            or any(not r.completed and r.status == 200 for r in data(s))
        ),
    ),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
async def test_a_transient_storage_fault_is_retried_to_a_verified_ready_model(
    world: Harness, source: Source, fault: str
) -> None:
    inject, happened = TRANSIENT[fault]
    inject(source.server.faults)
    instance = await world.start()
    world.create(instance, source.body)
    status = await world.settles(source.key, "Ready", "Failed")
    assert status == "Ready", world.view.entry(source.key)
    destination = world.root / source.key
    assert support.corrupt_final_files(destination, source.files) == []
    assert set(support.final_files(destination)) == set(source.files)
    assert not (destination / support.STAGING).exists()
    assert happened(source.server), [
        (r.file, r.range, r.status, r.bytes_sent) for r in data(source.server)
    ]


async def test_connection_resets_mid_body_are_retried_to_a_verified_ready_model(
    world: Harness, hf_hub, oci_store, tmp_path, request
) -> None:
    rng = support.seeded(request.node.name)
    extra = {f"weights-{i}.dat": support.patterned(300_000, rng) for i in range(2)}
    files = support.model_files(tmp_path / "src", extra=extra)
    # every HF file small (served by the hub itself, not the CDN) so the proxy carries them all
    hf = make_source("hf", world, hf_hub, oci_store, tmp_path, files, lfs_threshold=10**9)
    oci = make_source("oci", world, hf_hub, oci_store, tmp_path, files)
    async with (
        ResetProxy(int(hf_hub.endpoint.rsplit(":", 1)[1]), resets=3, after=40_000) as hf_proxy,
        ResetProxy(int(oci_store.endpoint.rsplit(":", 1)[1]), resets=3, after=40_000) as proxy,
    ):
        world.environ["HF_ENDPOINT"] = hf_proxy.url
        world.environ["MODEL_AGENT_CREDENTIAL_HOSTS"] = proxy.url.removeprefix("http://")
        instance = await world.start()
        world.create(instance, hf.body)
        oci_body = support.model(
            "ClusterBaseModel", "o", oci.uri, parameters={**oci.parameters, "endpoint": proxy.url}
        )
        world.create(instance, oci_body)
        for key in (hf.key, "clusterbasemodel.o"):
            assert await world.settles(key, "Ready", "Failed") == "Ready", world.view.entry(key)
            assert support.corrupt_final_files(world.root / key, files) == []
            assert set(support.final_files(world.root / key)) == set(files)
        assert (hf_proxy.done, proxy.done) == (3, 3)


@pytest.mark.parametrize(
    ("fault", "reason", "names_file"),
    [("corruption", "ChecksumMismatch", True), ("500s", "ServerError", False)],
)
async def test_a_storage_fault_that_never_stops_ends_failed_with_a_clear_reason(
    world: Harness, source: Source, fault: str, reason: str, names_file: bool
) -> None:
    if fault == "corruption":
        source.server.faults.corrupt("*weights-0.dat")
    else:
        source.server.faults.fail_next(10_000, 500, path_glob="*weights-0.dat")
    instance = await world.start(max_attempts=2)
    world.create(instance, source.body)
    assert await world.settles(source.key, "Ready", "Failed") == "Failed"
    entry = world.view.entry(source.key)
    assert entry is not None and entry["reason"] == reason, entry
    if names_file:
        assert "weights-0.dat" in entry["message"], entry
    destination = world.root / source.key
    assert "weights-0.dat" not in support.final_files(destination)
    assert support.corrupt_final_files(destination, source.files) == []


async def test_an_hf_revision_that_moves_mid_download_never_mixes_commits(
    world: Harness, hf_hub, oci_store, tmp_path, request
) -> None:
    rng = support.seeded(request.node.name)
    old_files = support.model_files(
        tmp_path / "old", extra={"weights-0.dat": support.patterned(400_000, rng)}
    )
    new_files = support.model_files(
        tmp_path / "new",
        extra={"weights-0.dat": support.patterned(400_000, rng)},
        max_position_embeddings=8192,
    )
    source = make_source("hf", world, hf_hub, oci_store, tmp_path, old_files)
    old_sha = hf_hub.commit_of("org/m")
    hf_hub.faults.throttle(400_000)
    instance = await world.start()
    world.create(instance, source.body)
    await world.until(lambda: hf_hub.bytes_served("*weights-0.dat") > 50_000)
    new_sha = hf_hub.add_repo("org/m", new_files)
    hf_hub.faults.throttle(None)
    assert await world.settles(source.key, "Ready", "Failed") == "Ready"
    entry = world.view.entry(source.key)
    assert entry is not None
    assert entry["config"]["artifact"]["sha"] == old_sha != new_sha
    assert support.corrupt_final_files(world.root / source.key, old_files) == []
    assert set(support.final_files(world.root / source.key)) == set(old_files)


async def test_an_oci_object_replaced_mid_download_never_mixes_versions(
    world: Harness, hf_hub, oci_store, tmp_path, request
) -> None:
    rng = support.seeded(request.node.name)
    old_files = support.model_files(
        tmp_path / "old", extra={"weights-0.dat": support.patterned(400_000, rng)}
    )
    new_weights = support.patterned(400_000, rng)
    source = make_source("oci", world, hf_hub, oci_store, tmp_path, old_files)
    oci_store.faults.throttle(400_000)
    instance = await world.start()
    world.create(instance, source.body)
    await world.until(lambda: oci_store.bytes_served("*weights-0.dat") > 50_000)
    oci_store.add_object("models", "m/weights-0.dat", new_weights)
    oci_store.faults.throttle(None)
    status = await world.settles(source.key, "Ready", "Failed")
    destination = world.root / source.key
    on_disk = support.final_files(destination)
    if status == "Ready":
        assert on_disk["weights-0.dat"].read_bytes() == new_weights
        assert (
            support.corrupt_final_files(destination, {**old_files, "weights-0.dat": new_weights})
            == []
        )
    else:
        entry = world.view.entry(source.key)
        assert entry is not None and entry["reason"], entry
        assert "weights-0.dat" not in on_disk
        assert support.corrupt_final_files(destination, old_files) == []
