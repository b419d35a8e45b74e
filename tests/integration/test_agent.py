"""The agent (lanes, workers, reporting) against the fake API server and the local hub.

Aspects: a selected BaseModel downloads and becomes Ready with its analysis in the ConfigMap
and a Ready node label; an unselected ClusterBaseModel gets nothing until the node's labels
change; deleting removes files, label and key; a delete during a download cancels it fast and
leaves no files; a restart reports complete models Ready without any model bytes and without
ever writing Updating; models deleted while the agent was down are cleaned up at start; an
update downloads beside the Ready version and switches in one rename; a missing repository is
Failed with a reason, and a fixed spec retries at once; the HF token comes from the Secret;
reserved models and shared paths keep their files; pvc:// is never touched; spec write-back
(on by default, OME's fields and values, empty fields only, one write among racing agents,
off with --write-spec=false); removed entries, labels and ConfigMaps
are put back; Events and throttled progress; invalid specs fail only where selected; deletes of
models never here write nothing; a model unselected while the agent was down is removed at
start; a spec change that unselects the node cancels its download; a path change keeps the old
path Ready until the new one is placed; an OCI model downloads through the local object store;
local:// is adopted and never deleted, vendor:// is Ready.
"""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import time

import pytest

from model_agent import agent, errors, settings
from tests.harness import modelfiles

NODE = "node-a"
TENSORS = modelfiles.TINY_LLAMA_TENSORS


def model_files(tmp_path: pathlib.Path, name: str = "src", **config) -> dict[str, bytes]:
    return modelfiles.tiny_llama_files(tmp_path / name, **config)


def basemodel(name, uri, *, namespace="default", kind="BaseModel", **storage):
    metadata = {"name": name}
    if kind == "BaseModel":
        metadata["namespace"] = namespace
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"modelFormat": {"name": "safetensors"}, "storage": {"storageUri": uri, **storage}},
    }


class Harness:
    def __init__(self, kube_api, kube_client, hub, root: pathlib.Path):
        self.kube, self.client, self.hub, self.root = kube_api, kube_client, hub, root
        self.agents: list[agent.Agent] = []
        self.environ: dict[str, str] = {}

    def settings(self, **flags) -> settings.Settings:
        values = {
            "node_name": NODE,
            "models_root_dir": str(self.root),
            "namespace": "ome",
            "config_map_sync_interval": "0.1",
            "download_retry": "0",
            "relist_window": "0.5s",
        }
        values.update({k: str(v) for k, v in flags.items()})
        return settings.resolve(values, {"HF_ENDPOINT": self.hub.endpoint, **self.environ})

    async def start(self, **kw) -> agent.Agent:
        options = {"retry_base": 0.05, "retry_max": 0.2, "failed_retry": 30.0}
        extra = ("max_attempts", "repair_interval", "stuck_after")
        options.update({k: kw.pop(k) for k in list(kw) if k in options or k in extra})
        instance = agent.Agent(config=self.settings(**kw), api=self.client, **options)
        self.agents.append(instance)
        await instance.start()
        return instance

    async def stop_all(self) -> None:
        for instance in self.agents:
            await instance.stop()
        self.agents.clear()

    def create(self, instance: agent.Agent, body: dict) -> dict:
        stored = self.kube.create(body)
        instance.submit("ADDED", stored)
        return stored

    def entry(self, key: str) -> dict | None:
        cm = self.kube.get("configmaps", NODE, "ome")
        text = ((cm or {}).get("data") or {}).get(key)
        return json.loads(text) if text else None

    def label(self, key: str) -> str | None:
        return self.kube.get("nodes", NODE)["metadata"].get("labels", {}).get(key)

    async def until(self, predicate, deadline: float = 20.0) -> None:
        await self.kube.wait_for(predicate, timeout=deadline)


@pytest.fixture
async def world(kube_api, kube_client, hf_hub, tmp_path):
    kube_api.add_node(NODE, {"gpu": "h100"})
    harness = Harness(kube_api, kube_client, hf_hub, tmp_path / "models")
    harness.root.mkdir()
    yield harness
    await harness.stop_all()


def status_of(world: Harness, key: str) -> str | None:
    return (world.entry(key) or {}).get("status")


async def test_a_selected_basemodel_downloads_and_is_reported_ready(world, tmp_path):
    world.hub.add_repo("org/llama", model_files(tmp_path))
    instance = await world.start()
    world.create(instance, basemodel("llama", "hf://org/llama", nodeSelector={"gpu": "h100"}))
    key, label = "default.basemodel.llama", "models.ome.io/default.basemodel.llama"
    await world.until(lambda: status_of(world, key) == "Ready")
    await world.until(lambda: world.label(label) == "Ready")
    entry = world.entry(key)
    assert entry["name"] == "llama"
    assert entry["config"]["modelType"] == "llama"
    assert entry["config"]["artifact"]["sha"] == world.hub.commit_of("org/llama")
    assert "progress" not in entry
    assert (world.root / key / "model.safetensors").is_file()
    labels = world.kube.get("configmaps", NODE, "ome")["metadata"]["labels"]
    assert labels["models.ome/basemodel-status"] == "true"
    assert world.kube.get("basemodels", "llama", "default")["metadata"].get("finalizers") is None


async def test_an_unselected_model_waits_for_the_node_labels(world, tmp_path):
    world.hub.add_repo("org/big", model_files(tmp_path))
    instance = await world.start()
    world.create(
        instance,
        basemodel("big", "hf://org/big", kind="ClusterBaseModel", nodeSelector={"pool": "big"}),
    )
    await asyncio.sleep(0)  # let the lane run once; nothing may appear
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        assert world.entry("clusterbasemodel.big") is None
        await asyncio.sleep(0.05)
    assert world.hub.bytes_served() == 0
    world.kube.patch("nodes", NODE, {"metadata": {"labels": {"pool": "big"}}})
    await world.until(lambda: status_of(world, "clusterbasemodel.big") == "Ready")
    await world.until(lambda: world.label("models.ome.io/clusterbasemodel.big") == "Ready")
    # and when the node stops being selected, files, label and key go
    world.kube.patch("nodes", NODE, {"metadata": {"labels": {"pool": None}}})
    await world.until(lambda: world.entry("clusterbasemodel.big") is None)
    await world.until(lambda: world.label("models.ome.io/clusterbasemodel.big") is None)
    assert not (world.root / "clusterbasemodel.big").exists()


async def test_deleting_removes_files_label_and_key(world, tmp_path):
    world.hub.add_repo("org/m", model_files(tmp_path))
    instance = await world.start()
    stored = world.create(instance, basemodel("m", "hf://org/m"))
    await world.until(lambda: status_of(world, "default.basemodel.m") == "Ready")
    world.kube.delete("basemodels", "m", "default")
    instance.submit("DELETED", stored)
    await world.until(lambda: world.entry("default.basemodel.m") is None)
    await world.until(lambda: world.label("models.ome.io/default.basemodel.m") is None)
    assert not (world.root / "default.basemodel.m").exists()


async def test_a_delete_during_a_download_cancels_it_quickly_and_leaves_no_files(world, tmp_path):
    files = model_files(tmp_path)
    files["big.dat"] = b"x" * 400_000
    world.hub.add_repo("org/slow", files)
    world.hub.faults.throttle(20_000)
    instance = await world.start()
    stored = world.create(instance, basemodel("slow", "hf://org/slow"))
    await world.until(lambda: world.hub.bytes_served() > 0)
    assert status_of(world, "default.basemodel.slow") == "Updating"
    instance.submit("DELETED", stored)
    await world.until(
        lambda: (
            world.entry("default.basemodel.slow") is None
            and world.label("models.ome.io/default.basemodel.slow") is None
        ),
        deadline=5,
    )
    # at 20 kB/s the file needs 20 s: the delete cancelled the transfer, it did not wait for it
    assert world.hub.bytes_served("*big.dat") < 400_000
    assert not (world.root / "default.basemodel.slow").exists()


async def test_a_restart_reports_ready_without_model_bytes_or_updating(world, tmp_path):
    world.hub.add_repo("org/a", model_files(tmp_path))
    first = await world.start()
    for name in ("a1", "a2", "a3"):
        world.create(first, basemodel(name, "hf://org/a"))
    for name in ("a1", "a2", "a3"):
        await world.until(lambda n=name: status_of(world, f"default.basemodel.{n}") == "Ready")
        await world.until(
            lambda n=name: world.label(f"models.ome.io/default.basemodel.{n}") == "Ready"
        )
    await first.stop()
    served = world.hub.bytes_served()
    before = len(world.kube.requests)
    await world.start()
    second = world.agents[-1]
    for lane in list(second.lanes.values()):
        if lane.driver is not None:
            await asyncio.wait({lane.driver}, timeout=10)
    assert world.hub.bytes_served() == served
    writes = [
        r
        for r in world.kube.requests[before:]
        if r.method == "PATCH" and ("configmaps" in r.path or "/nodes/" in r.path)
    ]
    assert writes == []  # Ready already, nothing to write: labels never saw Updating
    assert all(status_of(world, f"default.basemodel.{n}") == "Ready" for n in ("a1", "a2", "a3"))


async def test_models_deleted_while_the_agent_was_down_are_cleaned_up_at_start(world, tmp_path):
    world.hub.add_repo("org/a", model_files(tmp_path))
    first = await world.start()
    world.create(first, basemodel("gone", "hf://org/a"))
    world.create(first, basemodel("kept", "hf://org/a"))
    await world.until(lambda: status_of(world, "default.basemodel.gone") == "Ready")
    await world.until(lambda: status_of(world, "default.basemodel.kept") == "Ready")
    await first.stop()
    world.kube.delete("basemodels", "gone", "default")
    world.kube.patch("configmaps", NODE, {"data": {"other-writer": "x"}}, "ome")
    await world.start()
    assert world.entry("default.basemodel.gone") is None
    assert world.label("models.ome.io/default.basemodel.gone") is None
    assert not (world.root / "default.basemodel.gone").exists()
    assert status_of(world, "default.basemodel.kept") == "Ready"
    assert world.kube.get("configmaps", NODE, "ome")["data"]["other-writer"] == "x"


async def test_an_update_downloads_beside_the_ready_version_and_switches_once_verified(
    world, tmp_path
):
    first_sha = world.hub.add_repo("org/u", model_files(tmp_path, "v1"))
    instance = await world.start()
    world.create(instance, basemodel("u", f"hf://org/u@{first_sha}"))
    key, label = "default.basemodel.u", "models.ome.io/default.basemodel.u"
    await world.until(lambda: status_of(world, key) == "Ready" and world.label(label) == "Ready")
    files = model_files(tmp_path, "v2", max_position_embeddings=8192)
    files["extra.dat"] = b"y" * 200_000
    second_sha = world.hub.add_repo("org/u", files)
    world.hub.faults.throttle(100_000)
    served = world.hub.bytes_served()
    world.kube.patch(
        "basemodels",
        "u",
        {"spec": {"storage": {"storageUri": f"hf://org/u@{second_sha}"}}},
        "default",
    )
    instance.submit("MODIFIED", world.kube.get("basemodels", "u", "default"))
    await world.until(lambda: world.hub.bytes_served() > served)
    # while the new version downloads, the old one is complete, Ready and in place
    destination = world.root / key
    assert json.loads((destination / "config.json").read_text())["max_position_embeddings"] == 4096
    assert not (destination / "extra.dat").exists()
    assert world.label(label) == "Ready" and status_of(world, key) == "Ready"
    await world.until(
        lambda: (
            (world.entry(key) or {}).get("config", {}).get("artifact", {}).get("sha") == second_sha
        )
    )
    assert json.loads((destination / "config.json").read_text())["max_position_embeddings"] == 8192
    assert (destination / "extra.dat").stat().st_size == 200_000
    assert not (world.root / f".{key}.model-agent-next").exists()
    assert world.entry(key)["config"]["artifact"]["parentPath"] == {key: str(destination)}


async def test_a_missing_repository_fails_with_a_reason_and_a_fixed_spec_retries_at_once(
    world, tmp_path
):
    world.hub.add_repo("org/real", model_files(tmp_path))
    instance = await world.start()
    world.create(instance, basemodel("typo", "hf://org/nope"))
    key = "default.basemodel.typo"
    await world.until(lambda: status_of(world, key) == "Failed")
    assert world.entry(key)["reason"] in ("NotFound", "Unauthorized")
    await world.until(lambda: world.label("models.ome.io/default.basemodel.typo") == "Failed")
    world.kube.patch(
        "basemodels", "typo", {"spec": {"storage": {"storageUri": "hf://org/real"}}}, "default"
    )
    instance.submit("MODIFIED", world.kube.get("basemodels", "typo", "default"))
    await world.until(lambda: status_of(world, key) == "Ready", deadline=10)


async def test_an_invalid_spec_is_failed_naming_the_field(world):
    instance = await world.start()
    world.create(instance, basemodel("bad", "hf://org/x", path="relative/dir"))
    await world.until(lambda: status_of(world, "default.basemodel.bad") == "Failed")
    entry = world.entry("default.basemodel.bad")
    assert entry["reason"] == errors.InvalidSpecError.reason
    assert "spec.storage.path" in entry["message"]


async def test_the_hf_token_comes_from_the_secret_named_in_storage_key(world, tmp_path):
    world.hub.add_repo("org/private", model_files(tmp_path), private=True, token="hf_goodtoken12")
    world.kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf-token", "namespace": "default"},
            "data": {"token": base64.b64encode(b"hf_goodtoken12").decode()},
        }
    )
    instance = await world.start()
    world.create(instance, basemodel("private", "hf://org/private", key="hf-token"))
    await world.until(lambda: status_of(world, "default.basemodel.private") == "Ready")
    cm_text = json.dumps(world.kube.get("configmaps", NODE, "ome"))
    assert "hf_goodtoken12" not in cm_text


async def test_reserved_models_keep_their_files_and_a_shared_path_passes_to_the_waiter(
    world, tmp_path
):
    world.hub.add_repo("org/a", model_files(tmp_path))
    instance = await world.start()
    reserved = basemodel("res", "hf://org/a")
    reserved["metadata"]["labels"] = {"models.ome/reserve-model-artifact": "true"}
    shared_path = str(world.root / "shared")
    one = world.create(instance, reserved)
    two = world.create(instance, basemodel("s1", "hf://org/a", path=shared_path))
    for key in ("default.basemodel.res", "default.basemodel.s1"):
        await world.until(lambda k=key: status_of(world, k) == "Ready")
    world.create(instance, basemodel("s2", "hf://org/a", path=shared_path))
    await world.until(lambda: status_of(world, "default.basemodel.s2") == "Failed")
    assert world.entry("default.basemodel.s2")["reason"] == "PathConflict"
    assert "default.basemodel.s1" in world.entry("default.basemodel.s2")["message"]
    for stored, name in ((one, "res"), (two, "s1")):
        world.kube.delete("basemodels", name, "default")
        instance.submit("DELETED", stored)
        await world.until(lambda n=name: world.entry(f"default.basemodel.{n}") is None)
    assert (world.root / "default.basemodel.res" / "config.json").is_file()
    # s1 let the directory go: s2, which waited for it, now holds it.
    await world.until(lambda: status_of(world, "default.basemodel.s2") == "Ready")
    assert (world.root / "shared" / "config.json").is_file()


async def test_pvc_models_are_never_touched(world):
    instance = await world.start()
    world.create(instance, basemodel("claim", "pvc://models/llama"))
    await asyncio.sleep(0.2)
    assert world.entry("default.basemodel.claim") is None
    assert world.label("models.ome.io/default.basemodel.claim") is None


def cr_writes(world) -> list:
    return [
        r
        for r in world.kube.requests
        if r.method in ("PATCH", "PUT", "POST", "DELETE") and "basemodels" in r.path
    ]


async def test_spec_write_back_is_on_by_default_and_fills_only_empty_fields_as_ome(world, tmp_path):
    """OME's updateModelSpec: unset fields only, OME's values (safetensors 1.0.0,
    transformers + version, fp8 from quant_method), one write, none when nothing changes."""
    files = model_files(
        tmp_path,
        transformers_version="4.44.0",
        quantization_config={"quant_method": "fp8", "activation_scheme": "dynamic"},
    )
    world.hub.add_repo("org/w", files)
    instance = await world.start()
    body = basemodel("w", "hf://org/w")
    del body["spec"]["modelFormat"]
    body["spec"]["modelArchitecture"] = "SetByUser"
    world.create(instance, body)
    await world.until(lambda: status_of(world, "default.basemodel.w") == "Ready")
    await world.until(lambda: world.kube.get("basemodels", "w", "default")["spec"].get("modelType"))
    spec = world.kube.get("basemodels", "w", "default")["spec"]
    assert spec["modelType"] == "llama"
    assert spec["modelArchitecture"] == "SetByUser"
    assert spec["quantization"] == "fp8"
    fmt = spec["modelFormat"]
    assert (fmt["name"], fmt["version"]) == ("safetensors", "1.0.0")  # CRD defaults the rest
    framework = spec["modelFramework"]
    assert (framework["name"], framework["version"]) == ("transformers", "4.44.0")
    assert spec["maxTokens"] == 4096
    assert spec["modelCapabilities"] == ["TEXT_TO_TEXT"]
    assert spec["modelConfiguration"]["context_length"] == 4096
    assert set(spec["modelConfiguration"]) == {
        "model_type",
        "architecture",
        "context_length",
        "parameter_count",
        "has_vision",
        "is_embedding",
        "transformers_version",
        "torch_dtype",
        "model_size_bytes",
    }
    assert "apiCapabilities" not in spec
    patches = [r for r in cr_writes(world)]
    assert len(patches) == 1
    assert patches[0].method == "PATCH"
    assert patches[0].content_type == "application/merge-patch+json"
    # the write (and a controller-style status write) delivers the object again: no new write
    instance.submit("MODIFIED", world.kube.get("basemodels", "w", "default"))
    await world.until(lambda: status_of(world, "default.basemodel.w") == "Ready")
    await asyncio.sleep(0.3)
    assert len(cr_writes(world)) == 1
    # the ConfigMap keeps the finer analysis
    assert world.entry("default.basemodel.w")["config"]["quantization"] == "fp8"


async def test_spec_write_back_never_sends_ome_the_finer_quantization_label(world, tmp_path):
    """AWQ is "int4" in the ConfigMap; OME's agent writes spec.quantization only for
    quant_method containing int4 or fp8, so an AWQ model gets none (and runtimes without a
    quantization requirement still match it)."""
    files = model_files(tmp_path, quantization_config={"quant_method": "awq", "bits": 4})
    world.hub.add_repo("org/awq", files)
    instance = await world.start()
    world.create(instance, basemodel("awq", "hf://org/awq"))
    await world.until(lambda: status_of(world, "default.basemodel.awq") == "Ready")
    await world.until(lambda: len(cr_writes(world)) == 1)
    spec = world.kube.get("basemodels", "awq", "default")["spec"]
    assert "quantization" not in spec
    assert spec["modelType"] == "llama"
    assert world.entry("default.basemodel.awq")["config"]["quantization"] == "int4"


async def test_n_agents_racing_to_fill_one_model_write_it_once(
    kube_api, kube_client, hf_hub, tmp_path
):
    """Five nodes finish the same ClusterBaseModel together: each patch is guarded by the
    resourceVersion it read, so a loser re-reads and finds nothing missing: at most one write
    per agent, no retry storm, and the spec ends filled."""
    hf_hub.add_repo("org/race", model_files(tmp_path))
    nodes = [f"race-{i}" for i in range(5)]
    agents = []
    for node in nodes:
        kube_api.add_node(node, {})
        values = {
            "node_name": node,
            "models_root_dir": str(tmp_path / node),
            "namespace": "ome",
            "config_map_sync_interval": "0.1",
        }
        config = settings.resolve(values, {"HF_ENDPOINT": hf_hub.endpoint})
        (tmp_path / node).mkdir()
        agents.append(agent.Agent(config=config, api=kube_client, retry_base=0.05))
    for instance in agents:
        await instance.start()
    try:
        stored = kube_api.create(basemodel("race", "hf://org/race", kind="ClusterBaseModel"))
        for instance in agents:
            instance.submit("ADDED", stored)

        def all_ready() -> bool:
            for node in nodes:
                cm = kube_api.get("configmaps", node, "ome") or {}
                text = (cm.get("data") or {}).get("clusterbasemodel.race")
                if not text or json.loads(text)["status"] != "Ready":
                    return False
            return True

        await kube_api.wait_for(all_ready, timeout=30)
        await asyncio.sleep(0.5)
        writes = [
            r
            for r in kube_api.requests
            if r.method in ("PATCH", "PUT") and "clusterbasemodels" in r.path
        ]
        assert 0 < len(writes) <= len(nodes), writes
        assert {r.method for r in writes} == {"PATCH"}
        assert kube_api.get("clusterbasemodels", "race")["spec"]["modelType"] == "llama"
    finally:
        for instance in agents:
            await instance.stop()


async def test_with_write_spec_off_the_agent_never_writes_a_model(world, tmp_path):
    world.hub.add_repo("org/n", model_files(tmp_path))
    instance = await world.start(write_spec="false")
    world.create(instance, basemodel("n", "hf://org/n"))
    await world.until(lambda: status_of(world, "default.basemodel.n") == "Ready")
    assert cr_writes(world) == []


async def test_entries_and_labels_removed_by_someone_else_are_put_back(world, tmp_path):
    world.hub.add_repo("org/r", model_files(tmp_path))
    instance = await world.start(repair_interval=0.3)
    world.create(instance, basemodel("r", "hf://org/r"))
    key, label = "default.basemodel.r", "models.ome.io/default.basemodel.r"
    await world.until(lambda: status_of(world, key) == "Ready" and world.label(label) == "Ready")
    world.kube.delete("configmaps", NODE, "ome")
    world.kube.patch("nodes", NODE, {"metadata": {"labels": {label: None}}})
    await world.until(lambda: status_of(world, key) == "Ready" and world.label(label) == "Ready")
    labels = world.kube.get("configmaps", NODE, "ome")["metadata"]["labels"]
    assert labels["models.ome/basemodel-status"] == "true"


async def test_state_changes_post_events_and_progress_reaches_the_entry(world, tmp_path):
    files = model_files(tmp_path)
    files["big.dat"] = b"p" * 300_000
    world.hub.add_repo("org/e", files)
    world.hub.faults.throttle(150_000)
    instance = await world.start()
    world.create(instance, basemodel("e", "hf://org/e"))
    key = "default.basemodel.e"
    await world.until(
        lambda: ((world.entry(key) or {}).get("progress") or {}).get("completedBytes", 0) > 0
    )
    progress = world.entry(key)["progress"]
    assert progress["phase"] == "downloading"
    assert progress["totalBytes"] >= 300_000
    await world.until(lambda: status_of(world, key) == "Ready")
    await world.until(
        lambda: (
            {e["reason"] for e in world.kube.list("events", "default")} >= {"Downloading", "Ready"}
        )
    )


async def test_an_invalid_spec_for_other_nodes_reports_nothing_here(world):
    instance = await world.start()
    world.create(instance, basemodel("elsewhere", "ftp://x/y", nodeSelector={"gpu": "a100"}))
    world.create(instance, basemodel("here", "ftp://x/y", nodeSelector={"gpu": "h100"}))
    await world.until(lambda: status_of(world, "default.basemodel.here") == "Failed")
    assert world.entry("default.basemodel.elsewhere") is None


async def test_a_delete_of_a_model_never_on_this_node_writes_nothing(world):
    instance = await world.start()
    stored = world.create(instance, basemodel("other", "hf://org/x", nodeSelector={"gpu": "x"}))
    lane = instance.lanes[("BaseModel", "default", "other")]
    await asyncio.wait({lane.driver}, timeout=10)
    before = len(world.kube.requests)
    world.kube.delete("basemodels", "other", "default")
    instance.submit("DELETED", stored)
    await asyncio.wait({lane.driver}, timeout=10)
    writes = [
        r
        for r in world.kube.requests[before:]
        if r.method == "PATCH" and ("configmaps" in r.path or "/nodes/" in r.path)
    ]
    assert writes == []
    assert ("BaseModel", "default", "other") not in instance.lanes


async def test_a_model_unselected_while_the_agent_was_down_is_removed_at_start(world, tmp_path):
    world.hub.add_repo("org/a", model_files(tmp_path))
    first = await world.start()
    world.create(first, basemodel("moved", "hf://org/a", nodeSelector={"gpu": "h100"}))
    key, label = "default.basemodel.moved", "models.ome.io/default.basemodel.moved"
    await world.until(lambda: status_of(world, key) == "Ready" and world.label(label) == "Ready")
    await first.stop()
    world.kube.patch("nodes", NODE, {"metadata": {"labels": {"gpu": "a100"}}})
    await world.start()
    await world.until(lambda: world.entry(key) is None and world.label(label) is None)
    await world.until(lambda: not (world.root / key).exists())


async def test_a_spec_change_that_unselects_the_node_cancels_the_download(world, tmp_path):
    files = model_files(tmp_path)
    files["big.dat"] = b"u" * 2_000_000
    world.hub.add_repo("org/s", files)
    world.hub.faults.throttle(100_000)
    instance = await world.start()
    world.create(instance, basemodel("s", "hf://org/s"))
    await world.until(lambda: world.hub.bytes_served() > 0)
    world.kube.patch(
        "basemodels", "s", {"spec": {"storage": {"nodeSelector": {"gpu": "a100"}}}}, "default"
    )
    instance.submit("MODIFIED", world.kube.get("basemodels", "s", "default"))
    await world.until(lambda: world.entry("default.basemodel.s") is None, deadline=5)
    assert world.hub.bytes_served("*big.dat") < 2_000_000  # cancelled mid-transfer
    await world.until(lambda: not (world.root / "default.basemodel.s").exists(), deadline=5)


async def test_a_new_path_downloads_while_the_old_one_stays_ready_then_the_old_goes(
    world, tmp_path
):
    files = model_files(tmp_path)
    files["big.dat"] = b"m" * 300_000
    world.hub.add_repo("org/p", files)
    instance = await world.start()
    first, second = world.root / "first", world.root / "second"
    world.create(instance, basemodel("p", "hf://org/p", path=str(first)))
    key, label = "default.basemodel.p", "models.ome.io/default.basemodel.p"
    await world.until(lambda: status_of(world, key) == "Ready" and world.label(label) == "Ready")
    world.hub.faults.throttle(150_000)
    served = world.hub.bytes_served()
    world.kube.patch("basemodels", "p", {"spec": {"storage": {"path": str(second)}}}, "default")
    instance.submit("MODIFIED", world.kube.get("basemodels", "p", "default"))
    await world.until(lambda: world.hub.bytes_served() > served)
    assert (first / "big.dat").is_file()
    assert status_of(world, key) == "Ready" and world.label(label) == "Ready"
    await world.until(
        lambda: (
            (world.entry(key) or {}).get("config", {}).get("artifact", {}).get("parentPath")
            == {key: str(second)}
        )
    )
    assert (second / "big.dat").stat().st_size == 300_000
    await world.until(lambda: not first.exists())


async def test_an_oci_model_downloads_through_the_agent(world, tmp_path, oci_store):
    key_file = tmp_path / "oci_key.pem"
    key_file.write_text(oci_store.config["key_content"])
    key_file.chmod(0o600)
    config_file = tmp_path / "oci_config"
    config_file.write_text(
        "[DEFAULT]\n"
        + "".join(f"{k}={oci_store.config[k]}\n" for k in ("user", "fingerprint", "tenancy"))
        + f"region={oci_store.config['region']}\nkey_file={key_file}\n"
    )
    world.environ["OCI_CONFIG_FILE"] = str(config_file)
    # the admin allows the store named in parameters.endpoint
    world.environ["MODEL_AGENT_CREDENTIAL_HOSTS"] = oci_store.endpoint.removeprefix("http://")
    for name, data in model_files(tmp_path).items():
        oci_store.add_object("models", f"llama/{name}", data)
    instance = await world.start()
    uri = f"oci://n/{oci_store.namespace}/b/models/o/llama"
    parameters = {"auth": "UserPrincipal", "endpoint": oci_store.endpoint}
    world.create(instance, basemodel("o", uri, kind="ClusterBaseModel", parameters=parameters))
    key = "clusterbasemodel.o"
    await world.until(lambda: status_of(world, key) == "Ready")
    assert world.entry(key)["config"]["modelType"] == "llama"
    assert (world.root / key / "model.safetensors").is_file()


async def test_local_models_are_adopted_and_never_deleted_vendor_is_ready(world, tmp_path):
    local = modelfiles.write_model(tmp_path / "on-node", tensors=TENSORS)
    instance = await world.start()
    stored = world.create(instance, basemodel("loc", f"local://{local}"))
    world.create(instance, basemodel("ven", "vendor://acme/llm/llama"))
    await world.until(lambda: status_of(world, "default.basemodel.loc") == "Ready")
    assert world.entry("default.basemodel.loc")["config"]["artifact"]["parentPath"] == {
        "default.basemodel.loc": str(local)
    }
    await world.until(lambda: status_of(world, "default.basemodel.ven") == "Ready")
    world.kube.delete("basemodels", "loc", "default")
    instance.submit("DELETED", stored)
    await world.until(lambda: world.entry("default.basemodel.loc") is None)
    assert (local / "config.json").is_file()
