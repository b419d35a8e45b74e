"""Replacing OME's agent on a node: what OME's behaviour makes users and the controller expect.

Aspects: an analysis the analyser cannot do (malformed config, hostile safetensors header)
never fails a verified model: Ready with ``config.analysisError`` naming the file, a Warning
Event and the metric (OME logs analysis errors and reports Ready); a changed ``allow``/
``ignore`` on a Ready model re-plans it in place (adds and removes files) without the label
leaving Ready; a folder OME placed (files, a Ready label, a Ready entry, no completion record)
is adopted with the label Ready throughout and no model bytes downloaded, and the next
restart takes the fast path; a wrong file is re-downloaded (the label is Updating only then);
``downloadPolicy: ReuseIfExists`` reuses an existing folder without downloading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import pathlib
import struct

import prometheus_client
import pytest

from model_agent import manifest, metrics, pipeline, spec
from model_agent.trust import ownership
from tests.integration.test_agent import NODE, Harness, basemodel, model_files, status_of


@pytest.fixture
async def world(kube_api, kube_client, hf_hub, tmp_path):
    kube_api.add_node(NODE, {"gpu": "h100"})
    harness = Harness(kube_api, kube_client, hf_hub, tmp_path / "models")
    harness.root.mkdir()
    yield harness
    await harness.stop_all()


class LabelWatch:
    """Every value the model's label and entry status took, read from the fake API server's
    change history (so a brief Updating is seen however loaded the machine is)."""

    def __init__(self, world: Harness, key: str, label: str) -> None:
        self.world, self.key, self.label = world, key, label
        self.labels: list[str | None] = []
        self.statuses: list[str | None] = []
        self._start = 0

    def __enter__(self) -> LabelWatch:
        self._start = self.world.kube.resource_version
        self.labels.append(self.world.label(self.label))
        self.statuses.append(status_of(self.world, self.key))
        return self

    def __exit__(self, *exc: object) -> None:
        for _, resource, _, obj in self.world.kube.store.history.changes(self._start):
            meta = obj.get("metadata") or {}
            if resource.plural == "nodes" and meta.get("name") == NODE:
                self._add(self.labels, (meta.get("labels") or {}).get(self.label))
            elif resource.plural == "configmaps" and meta.get("name") == NODE:
                text = (obj.get("data") or {}).get(self.key)
                self._add(self.statuses, json.loads(text).get("status") if text else None)

    @staticmethod
    def _add(seen: list[str | None], value: str | None) -> None:
        if not seen or seen[-1] != value:
            seen.append(value)


async def _drained(instance) -> None:
    for lane in list(instance.lanes.values()):
        if lane.driver is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait({lane.driver}, timeout=10)


# --- analysis never fails a verified model ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "broken", "blamed"),
    [
        ("badjson", {"config.json": b'{"model_type": "llama", '}, "config.json"),
        # a header that claims 2**60 bytes: must be refused without reading or allocating it
        (
            "hostile",
            {"model.safetensors": struct.pack("<Q", 2**60) + b"{}"},
            "model.safetensors",
        ),
        ("deep", {"config.json": b"[" * 100_000 + b"]" * 100_000}, "config.json"),
    ],
)
async def test_an_analysis_error_is_ready_with_the_file_named_an_event_and_a_metric(
    world, tmp_path, name, broken, blamed
):
    files = model_files(tmp_path) | broken
    world.hub.add_repo(f"org/{name}", files)
    registry = prometheus_client.CollectorRegistry()
    instance = await world.start()
    instance.metrics = instance.work.metrics = metrics.Metrics(registry)
    world.create(instance, basemodel(name, f"hf://org/{name}"))
    key, label = f"default.basemodel.{name}", f"models.ome.io/default.basemodel.{name}"
    await world.until(lambda: status_of(world, key) == "Ready" and world.label(label) == "Ready")
    config = world.entry(key)["config"]
    assert blamed in config["analysisError"]
    assert config["analysisErrorReason"] in ("InvalidModelFiles", "AnalyserError")
    assert config["artifact"]["sha"] == world.hub.commit_of(f"org/{name}")
    assert (world.root / key / blamed).is_file()
    await world.until(
        lambda: any(
            e["reason"] == "AnalysisFailed" and e["type"] == "Warning"
            for e in world.kube.list("events", "default")
        )
    )
    sample = registry.get_sample_value(
        "model_agent_analysis_errors_total",
        {"model_type": "BaseModel", "namespace": "default", "name": name},
    )
    assert sample == 1.0
    # an analysis that failed writes nothing back to the spec
    assert "modelType" not in world.kube.get("basemodels", name, "default")["spec"]


# --- a changed file filter is a changed model ------------------------------------------------


async def test_changing_allow_and_ignore_replans_a_ready_model_in_place(world, tmp_path):
    files = model_files(tmp_path, extra={"notes.txt": b"n" * 100, "extra.dat": b"b" * 300})
    world.hub.add_repo("org/f", files)
    instance = await world.start()
    body = basemodel("f", "hf://org/f", parameters={"ignore": "*.txt"})
    stored = world.create(instance, body)
    key, label = "default.basemodel.f", "models.ome.io/default.basemodel.f"
    folder = world.root / key
    await world.until(lambda: status_of(world, key) == "Ready" and world.label(label) == "Ready")
    assert not (folder / "notes.txt").exists()
    assert (folder / "extra.dat").is_file()
    with LabelWatch(world, key, label) as watch:
        stored = world.kube.patch(
            "basemodels",
            "f",
            {"spec": {"storage": {"parameters": {"ignore": "*.dat"}}}},
            "default",
        )
        instance.submit("MODIFIED", stored)
        await world.until(lambda: (folder / "notes.txt").is_file())
        await world.until(lambda: not (folder / "extra.dat").exists())
        await _drained(instance)
        stored = world.kube.patch(
            "basemodels",
            "f",
            {"spec": {"storage": {"parameters": {"ignore": None, "allow": "*.json,*.txt"}}}},
            "default",
        )
        instance.submit("MODIFIED", stored)
        await world.until(lambda: not (folder / "model.safetensors").exists())
        await _drained(instance)
    assert (folder / "config.json").is_file()
    assert (folder / "notes.txt").is_file()
    assert set(watch.labels) == {"Ready"}, watch.labels
    assert set(watch.statuses) == {"Ready"}, watch.statuses
    # the new file set is recorded: a restart downloads and hashes nothing
    await instance.stop()
    served = world.hub.bytes_served()
    await world.start()
    await _drained(world.agents[-1])
    assert world.hub.bytes_served() == served
    assert not (folder / "model.safetensors").exists()


async def test_a_new_gpu_shape_replans_a_ready_tensorrt_llm_model(world, tmp_path):
    """The node's instance type (hence its shape) changes: the engines of the new shape come,
    the old shape's go, the shared files stay."""
    files = {
        "H100/rank0.engine": b"h" * 200,
        "A100-80G/rank0.engine": b"a" * 300,
        "tokenizer.json": b"{}",
    }
    world.hub.add_repo("org/trt", files)
    world.environ["INSTANCE_TYPE_MAP"] = json.dumps(
        {"BM.GPU.H100.8": "H100", "BM.GPU.A100-v2.8": "A100-80G"}
    )
    world.kube.patch(
        "nodes",
        NODE,
        {"metadata": {"labels": {"node.kubernetes.io/instance-type": "BM.GPU.H100.8"}}},
    )
    instance = await world.start()
    body = basemodel("trt", "hf://org/trt")
    body["spec"]["modelFormat"] = {"name": "tensorrtllm"}
    world.create(instance, body)
    key = "default.basemodel.trt"
    folder = world.root / key
    await world.until(lambda: status_of(world, key) == "Ready")
    assert (folder / "H100" / "rank0.engine").is_file()
    assert not (folder / "A100-80G").exists()
    world.kube.patch(
        "nodes",
        NODE,
        {"metadata": {"labels": {"node.kubernetes.io/instance-type": "BM.GPU.A100-v2.8"}}},
    )
    await world.until(lambda: (folder / "A100-80G" / "rank0.engine").is_file())
    await world.until(lambda: not (folder / "H100" / "rank0.engine").exists())
    await _drained(instance)
    assert (folder / "tokenizer.json").is_file()
    assert status_of(world, key) == "Ready"


async def test_a_manifest_from_before_the_upgrade_is_renewed_so_a_format_fill_replans_nothing(
    world, tmp_path, caplog
):
    """Manifests written before format stopped counting carry the old key; the first fast
    path rewrites it, so the write-back filling modelFormat later is not a new file set."""
    world.hub.add_repo("org/u", model_files(tmp_path))
    instance = await world.start(write_spec="false")
    body = basemodel("u", "hf://org/u")
    del body["spec"]["modelFormat"]
    world.create(instance, body)
    key = "default.basemodel.u"
    await world.until(lambda: status_of(world, key) == "Ready")
    await _drained(instance)
    destination = world.root / key
    state = world.root / spec.STATE_DIR_NAME
    old = manifest.load(destination, state_dir=state)
    request = pipeline.PullRequest(uri="hf://org/u", destination=destination)
    legacy = pipeline._legacy_request_key(request)
    manifest.save(dataclasses.replace(old, request_key=legacy), state_dir=state)
    await instance.stop()
    second = await world.start(write_spec="false")
    await _drained(second)
    assert manifest.load(destination, state_dir=state).request_key == pipeline.request_key(request)
    mtimes = {p.name: p.stat().st_mtime_ns for p in destination.iterdir()}
    caplog.clear()
    caplog.set_level("INFO")
    with LabelWatch(world, key, f"models.ome.io/{key}") as watch:
        stored = world.kube.patch(
            "basemodels", "u", {"spec": {"modelFormat": {"name": "safetensors"}}}, "default"
        )
        second.submit("MODIFIED", stored)
        await asyncio.sleep(0.2)
        await _drained(second)
    assert set(watch.statuses) == {"Ready"}
    assert {p.name: p.stat().st_mtime_ns for p in destination.iterdir()} == mtimes
    assert "verification passed" not in caplog.text  # nothing hashed again
    assert "pinned" not in caplog.text  # nothing asked of the source


# --- adopting what OME's agent placed --------------------------------------------------------


def _as_ome_left_it(world: Harness, name: str, files: dict[str, bytes]) -> pathlib.Path:
    """The node as OME's agent leaves it: files under the path, a Ready entry and label."""
    key = f"default.basemodel.{name}"
    folder = world.root / key
    folder.mkdir(parents=True)
    for file, data in files.items():
        (folder / file).write_bytes(data)
    entry = {"name": name, "status": "Ready", "config": {"modelType": "llama"}}
    world.kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": NODE,
                "namespace": "ome",
                "labels": {"models.ome/basemodel-status": "true"},
            },
            "data": {key: json.dumps(entry)},
        }
    )
    world.kube.patch("nodes", NODE, {"metadata": {"labels": {f"models.ome.io/{key}": "Ready"}}})
    return folder


async def test_models_ome_placed_are_adopted_without_the_label_leaving_ready(world, tmp_path):
    files = model_files(tmp_path)
    world.hub.add_repo("org/o", files)
    key, label = "default.basemodel.o", "models.ome.io/default.basemodel.o"
    folder = _as_ome_left_it(world, "o", files)
    world.kube.create(basemodel("o", "hf://org/o"))
    served = world.hub.bytes_served()
    with LabelWatch(world, key, label) as watch:
        instance = await world.start()
        await _drained(instance)
        await world.until(lambda: (world.entry(key) or {}).get("config", {}).get("artifact"))
    assert set(watch.labels) == {"Ready"}, watch.labels
    assert set(watch.statuses) == {"Ready"}, watch.statuses
    assert world.hub.bytes_served() == served  # verified in place, nothing downloaded
    assert world.entry(key)["config"]["artifact"]["sha"] == world.hub.commit_of("org/o")
    state = world.root / spec.STATE_DIR_NAME
    record = manifest.load(folder, state_dir=state)
    assert record is not None and record.owner == key  # the completion record, ours now
    assert {f.path for f in record.files} == set(files)  # a delete removes exactly these
    claims = ownership.Registry(state).held_by(key)
    assert [c.path for c in claims] == [str(folder.resolve())]  # the path-ownership record
    await instance.stop()
    with LabelWatch(world, key, label) as watch:
        second = await world.start()
        await _drained(second)
    assert set(watch.labels) == {"Ready"}
    assert world.hub.bytes_served() == served
    assert (folder / "model.safetensors").read_bytes() == files["model.safetensors"]


async def test_a_wrong_file_in_an_adopted_folder_is_downloaded_again(world, tmp_path):
    """Only a file that is actually wrong touches the label: Updating while it downloads."""
    files = model_files(tmp_path)
    world.hub.add_repo("org/w", files)
    key, label = "default.basemodel.w", "models.ome.io/default.basemodel.w"
    folder = _as_ome_left_it(world, "w", files | {"model.safetensors": b"truncated"})
    world.kube.create(basemodel("w", "hf://org/w"))
    served = world.hub.bytes_served()
    with LabelWatch(world, key, label) as watch:
        instance = await world.start()
        await _drained(instance)
        await world.until(
            lambda: (folder / "model.safetensors").read_bytes() == files["model.safetensors"]
        )
        await world.until(
            lambda: status_of(world, key) == "Ready" and world.label(label) == "Ready"
        )
    assert world.hub.bytes_served() - served >= len(files["model.safetensors"])
    assert world.hub.bytes_served() - served < sum(len(v) for v in files.values())
    assert watch.labels[0] == "Ready" and watch.labels[-1] == "Ready"
    assert "Updating" in watch.labels, watch.labels


async def test_reuse_if_exists_adopts_an_existing_folder_without_downloading(world, tmp_path):
    files = model_files(tmp_path)
    world.hub.add_repo("org/r", files)
    key = "default.basemodel.r"
    folder = world.root / key
    folder.mkdir()
    for file, data in files.items():
        (folder / file).write_bytes(data)
    served = world.hub.bytes_served()
    instance = await world.start()
    with LabelWatch(world, key, f"models.ome.io/{key}") as watch:
        world.create(instance, basemodel("r", "hf://org/r", downloadPolicy="ReuseIfExists"))
        await world.until(lambda: status_of(world, key) == "Ready")
    assert "Updating" not in watch.statuses
    assert world.hub.bytes_served() == served
