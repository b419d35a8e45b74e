"""Bad input under the whole agent (in process, local hub and object store): every malformed
field of a model and hostile remote names end in a clear ``Failed`` naming the field or the
file; hostile model files (verified, but unreadable to the analyser) are Ready with
``config.analysisError`` naming the file, as OME reports them Ready; the agent does not crash
(a good model after them still becomes Ready), and nothing is written outside the
destination.

Aspects: storageUri that does not parse or names an unknown scheme; relative, ``..``, ``/``,
models-root, state-directory and outside-the-models-root paths; an unknown OCI ``auth``;
parameters that are not a map; an affinity operator that does not exist; a huge nodeSelector
(100k entries) and a huge selector value; safetensors with a header length of 2^62, a header
that is not JSON, offsets past the end and a shape of rank 100; config.json nested 100k deep,
not an object, or not UTF-8; an index whose weight map names ``../`` shards; remote names
with traversal (``../``, absolute, ``a/../../``) from the hub and from the object store.
"""

from __future__ import annotations

import json
import pathlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fault import support
from tests.fault.agents import Harness
from tests.harness.kube_patch import ApiError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def world(kube_api, kube_client, hf_hub, oci_store, tmp_path) -> AsyncIterator[Harness]:
    kube_api.add_node("node-a", {"gpu": "h100"})
    harness = Harness(kube_api, kube_client, tmp_path / "models")
    harness.root.mkdir()
    harness.environ["HF_ENDPOINT"] = hf_hub.endpoint
    harness.environ["OCI_CONFIG_FILE"] = str(support.write_oci_config(oci_store, tmp_path / "oci"))
    yield harness
    await harness.stop_all()


def submit(world: Harness, instance, body: dict[str, Any]) -> None:
    """Through the API when it accepts the body; else as a raw event (an API server without
    schema validation would deliver it, so the agent must cope either way)."""
    try:
        stored = world.kube.create(body)
    except ApiError:
        stored = json.loads(json.dumps(body))
        stored["metadata"]["uid"] = f"uid-{body['metadata']['name']}"
    instance.submit("ADDED", stored)


def spec_case(name: str, **storage: Any) -> dict[str, Any]:
    body = support.model("BaseModel", name, storage.pop("storageUri", "hf://org/good"))
    body["spec"]["storage"].update(storage)
    return body


def affinity(operator: str) -> dict[str, Any]:
    expression = {"key": "gpu", "operator": operator, "values": ["h100"]}
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [expression]}
    ]}}  # fmt: skip


def bad_specs(root: pathlib.Path) -> dict[str, tuple[dict[str, Any], str, str]]:
    """name -> (body, reason, text the message must contain)."""
    oci = "oci://n/testns/b/models/o/m"
    return {
        "uri-garbage": (spec_case("uri-garbage", storageUri="hf:/x"), "InvalidURI", "hf:/x"),
        "uri-scheme": (spec_case("uri-scheme", storageUri="ftp://h/x"), "InvalidURI", "ftp"),
        "path-relative": (
            spec_case("path-relative", path="relative/dir"),
            "InvalidSpec",
            "spec.storage.path",
        ),
        "path-dotdot": (
            spec_case("path-dotdot", path=f"{root}/../../etc"),
            "InvalidSpec",
            "spec.storage.path",
        ),
        "path-slash": (spec_case("path-slash", path="/"), "InvalidSpec", "spec.storage.path"),
        "path-root": (spec_case("path-root", path=str(root)), "InvalidSpec", "spec.storage.path"),
        "path-outside": (
            spec_case("path-outside", path=f"{root.parent}/elsewhere/llama"),
            "InvalidSpec",
            "outside --models-root-dir",
        ),
        "path-state": (
            spec_case("path-state", path=f"{root}/.model-agent/x"),
            "InvalidSpec",
            "spec.storage.path",
        ),
        "auth-unknown": (
            spec_case("auth-unknown", storageUri=oci, parameters={"auth": "Magic"}),
            "InvalidSpec",
            "spec.storage.parameters.auth",
        ),
        "params-not-map": (
            spec_case("params-not-map", parameters="auth=x"),
            "InvalidSpec",
            "spec.storage.parameters",
        ),
        "affinity-operator": (
            spec_case("affinity-operator", nodeAffinity=affinity("Near")),
            "InvalidSpec",
            "operator",
        ),
        "selector-huge": (
            spec_case("selector-huge", nodeSelector={f"k{i}": "v" for i in range(100_000)}),
            "InvalidSpec",
            "nodeSelector",
        ),
        "selector-value-huge": (
            spec_case("selector-value-huge", nodeSelector={"gpu": "h" * 100_000}),
            "InvalidSpec",
            "nodeSelector",
        ),
    }


async def test_every_malformed_field_fails_naming_it_and_the_agent_carries_on(
    world: Harness, hf_hub, tmp_path: pathlib.Path
) -> None:
    hf_hub.add_repo("org/good", support.model_files(tmp_path / "good"))
    cases = bad_specs(world.root)
    before = support.tree(tmp_path)
    instance = await world.start()
    for body, _, _ in cases.values():
        submit(world, instance, body)
    for name, (_, reason, text) in cases.items():
        key = f"default.basemodel.{name}"
        assert await world.settles(key, "Failed", "Ready") == "Failed", name
        entry = world.view.entry(key)
        assert entry["reason"] == reason, (name, entry)
        assert text in entry["message"], (name, entry)
        assert len(json.dumps(entry)) < 4096, name  # a huge input is not echoed back
        assert not (world.root / key).exists(), name
    assert instance.health()["healthy"]
    created = support.tree(tmp_path) - before
    assert {p for p in created if p.split("/", 1)[0] != "models"} == set()
    assert {p.split("/")[1] for p in created if p.startswith("models/")} <= {".model-agent"}


def safetensors_bytes(header: bytes | dict[str, Any], *, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + b"\0" * 64


HOSTILE_FILES: dict[str, tuple[dict[str, bytes], str]] = {
    "st-length": (
        {"model.safetensors": safetensors_bytes(b"{}", length=2**62)},
        "model.safetensors",
    ),
    "st-not-json": ({"model.safetensors": safetensors_bytes(b"\xff" * 16)}, "model.safetensors"),
    "st-offsets": (
        {
            "model.safetensors": safetensors_bytes(
                {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 10**12]}}
            )
        },
        "model.safetensors",
    ),
    "st-rank": (
        {
            "model.safetensors": safetensors_bytes(
                {"w": {"dtype": "F32", "shape": [1] * 100, "data_offsets": [0, 4]}}
            )
        },
        "model.safetensors",
    ),
    "cfg-deep": ({"config.json": b"[" * 100_000 + b"]" * 100_000}, "config.json"),
    "cfg-array": ({"config.json": b"[1, 2, 3]"}, "config.json"),
    "cfg-binary": ({"config.json": b"\xff\xfe{\x00"}, "config.json"),
    "index-escape": (
        {
            "model.safetensors.index.json": json.dumps(
                {"weight_map": {"w": "../../outside.safetensors"}}
            ).encode()
        },
        "model.safetensors.index.json",
    ),
}


async def test_hostile_model_files_are_ready_with_an_analysis_error_naming_the_file(
    world: Harness, hf_hub, tmp_path: pathlib.Path
) -> None:
    """Verified files the analyser cannot read never fail the model (OME reports them Ready);
    the entry names the culprit, stays small, and nothing escapes the model folder."""
    good = support.model_files(tmp_path / "good")
    hf_hub.add_repo("org/good", good)
    outside = tmp_path / "models" / "outside.safetensors"
    instance = await world.start()
    for name, (overrides, _) in HOSTILE_FILES.items():
        hf_hub.add_repo(f"org/{name}", {**good, **overrides})
        submit(world, instance, support.model("BaseModel", name, f"hf://org/{name}"))
    for name, (_, culprit) in HOSTILE_FILES.items():
        key = f"default.basemodel.{name}"
        assert await world.settles(key, "Ready", "Failed") == "Ready", (
            name,
            world.view.entry(key),
        )
        entry = world.view.entry(key)
        config = entry["config"]
        assert config["analysisErrorReason"] == "InvalidModelFiles", (name, entry)
        assert culprit in config["analysisError"], (name, entry)
        assert len(json.dumps(entry)) < 4096, name
    assert not outside.exists()
    submit(world, instance, support.model("BaseModel", "after", "hf://org/good"))
    assert await world.settles("default.basemodel.after", "Ready", "Failed") == "Ready"
    assert instance.health()["healthy"]


UNSAFE_NAMES = ("../escape.txt", "/abs-escape.txt", "a/../../deep-escape.txt")


async def test_remote_names_with_traversal_fail_and_nothing_lands_outside(
    world: Harness, hf_hub, oci_store, tmp_path: pathlib.Path
) -> None:
    good = support.model_files(tmp_path / "good")
    hf_hub.add_repo("org/good", good)
    before = support.tree(tmp_path)
    world.environ["MODEL_AGENT_CREDENTIAL_HOSTS"] = oci_store.endpoint.removeprefix("http://")
    instance = await world.start()
    for i, name in enumerate(UNSAFE_NAMES):
        hf_hub.add_repo(f"org/evil{i}", {**good, name: b"pwned"}, allow_unsafe_paths=True)
        submit(world, instance, support.model("BaseModel", f"evil{i}", f"hf://org/evil{i}"))
        for file, data in good.items():
            oci_store.add_object("models", f"evil{i}/{file}", data)
        oci_store.add_object("models", f"evil{i}/{name.lstrip('/')}", b"pwned")
    oci_store.add_object("models", "evil9//abs-escape.txt", b"pwned")
    for file, data in good.items():
        oci_store.add_object("models", f"evil9/{file}", data)
    parameters = {"auth": "UserPrincipal", "endpoint": oci_store.endpoint}
    for i in (0, 2, 9):
        uri = f"oci://n/{oci_store.namespace}/b/models/o/evil{i}"
        submit(
            world,
            instance,
            support.model("ClusterBaseModel", f"evil{i}", uri, parameters=parameters),
        )
    keys = [f"default.basemodel.evil{i}" for i in range(len(UNSAFE_NAMES))]
    keys += [f"clusterbasemodel.evil{i}" for i in (0, 2, 9)]
    for key in keys:
        status = await world.settles(key, "Failed", "Ready")
        entry = world.view.entry(key)
        assert status == "Failed", (key, entry)
        assert entry["reason"] == "UnsafePath", (key, entry)
        assert "escape.txt" in entry["message"], (key, entry)
    created = support.tree(tmp_path) - before
    assert not [p for p in created if "escape" in p], created
    assert not [p for p in created if not p.startswith("models/")], created
    submit(world, instance, support.model("BaseModel", "after", "hf://org/good"))
    assert await world.settles("default.basemodel.after", "Ready", "Failed") == "Ready"
    assert instance.health()["healthy"]
