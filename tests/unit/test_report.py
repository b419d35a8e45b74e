"""The wire facts of reporting, as OME's controller reads them.

Aspects: ConfigMap keys and Node label keys for both kinds; OME's sha256-prefix shortening of
long names (namespace/name budget split, hash-only when nothing fits); which keys look like
model keys; ConfigMap labels and annotations; the entry JSON (status, config, progress only
while Updating, failure reason and bounded message); one-key merge patches.
"""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest

from model_agent import report


def h8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


LONG = "a" * 40 + "-model-" + "z" * 30  # 77 characters


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "expected"),
    [
        ("ClusterBaseModel", "", "llama-3-8b", "clusterbasemodel.llama-3-8b"),
        ("BaseModel", "default", "llama-3-8b", "default.basemodel.llama-3-8b"),
        ("ClusterBaseModel", "", "x" * 236, "clusterbasemodel." + "x" * 236),
        (
            "ClusterBaseModel",
            "",
            "x" * 237,
            f"clusterbasemodel.{h8('x' * 237)}-" + "x" * 227,
        ),
        ("BaseModel", "ns", "y" * 240, "ns.basemodel." + "y" * 240),
        ("BaseModel", "ns", "y" * 241, f"ns.basemodel.{h8('y' * 241)}-" + "y" * 231),
        (
            "BaseModel",
            "long-namespace-name",
            "y" * 240,
            f"{h8('long-namespace-name')}.basemodel.{h8('y' * 240)}-" + "y" * 225,
        ),
    ],
)
def test_configmap_keys_match_omes_format_and_shortening(kind, namespace, name, expected):
    key = report.configmap_key(kind, namespace, name)
    assert key == expected
    assert len(key) <= 253


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "expected"),
    [
        ("ClusterBaseModel", "", "llama-3-8b", "models.ome.io/clusterbasemodel.llama-3-8b"),
        ("BaseModel", "default", "llama-3-8b", "models.ome.io/default.basemodel.llama-3-8b"),
        ("ClusterBaseModel", "", "c" * 32, "models.ome.io/clusterbasemodel." + "c" * 32),
        (
            "ClusterBaseModel",
            "",
            LONG,
            f"models.ome.io/clusterbasemodel.{h8(LONG)}-" + LONG[-23:],
        ),
        # 7 + 31 = 38 fits exactly.
        ("BaseModel", "default", "m" * 31, "models.ome.io/default.basemodel." + "m" * 31),
        # Short namespace kept, the name gets the rest (38 - 7 = 31).
        (
            "BaseModel",
            "default",
            LONG,
            f"models.ome.io/default.basemodel.{h8(LONG)}-" + LONG[-22:],
        ),
        # Long namespace: 8 characters, which is the hash alone; the name gets 30.
        (
            "BaseModel",
            "team-inference",
            LONG,
            f"models.ome.io/{h8('team-inference')}.basemodel.{h8(LONG)}-" + LONG[-21:],
        ),
    ],
)
def test_node_label_keys_match_omes_format_and_63_character_limit(kind, namespace, name, expected):
    label = report.node_label_key(kind, namespace, name)
    assert label == expected
    assert len(label.partition("/")[2]) <= 49
    assert report.is_model_label(label)


def test_truncation_keeps_the_text_when_it_fits_and_only_the_hash_when_nothing_fits():
    assert report.truncate_with_hash("short", 10) == "short"
    assert report.truncate_with_hash("abcdefghijkl", 5) == h8("abcdefghijkl")[:5]
    assert report.truncate_with_hash("abcdefghijkl", 11) == h8("abcdefghijkl") + "-kl"


@pytest.mark.parametrize(
    ("key", "is_model"),
    [
        ("clusterbasemodel.a", True),
        ("ns.basemodel.b", True),
        ("clusterbasemodel.", False),
        ("other-writer-key", False),
        (".basemodel.x", False),
    ],
)
def test_model_key_shapes_are_recognised(key, is_model):
    assert report.is_model_configmap_key(key) is is_model


def test_configmap_metadata_is_what_omes_controller_selects_on():
    assert report.configmap_labels("node-a") == {
        "models.ome/basemodel-status": "true",
        "node": "node-a",
    }
    assert report.configmap_annotations("node-a") == {
        "models.ome.io/node-name": "node-a",
        "models.ome.io/managed-by": "model-agent",
    }


NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def test_updating_entry_carries_progress_with_omes_field_names():
    progress = report.Progress(
        phase="downloading",
        total_bytes=100,
        completed_bytes=40,
        total_files=3,
        completed_files=1,
        speed_bytes_per_sec=12.345,
    )
    text = report.entry("m", report.UPDATING, progress=progress, now=NOW)
    assert " " not in text
    assert json.loads(text) == {
        "name": "m",
        "status": "Updating",
        "progress": {
            "phase": "downloading",
            "totalBytes": 100,
            "completedBytes": 40,
            "totalFiles": 3,
            "completedFiles": 1,
            "speedBytesPerSec": 12.3,
            "lastUpdated": "2026-01-02T03:04:05Z",
        },
    }


def test_ready_entry_has_config_and_drops_progress():
    progress = report.Progress(phase="finalizing")
    value = json.loads(
        report.entry("m", report.READY, config={"modelType": "llama"}, progress=progress)
    )
    assert value == {"name": "m", "status": "Ready", "config": {"modelType": "llama"}}


def test_failed_entry_has_reason_and_a_bounded_message():
    value = json.loads(report.entry("m", report.FAILED, reason="NotFound", message="x" * 5000))
    assert value["status"] == "Failed"
    assert value["reason"] == "NotFound"
    assert len(value["message"]) == 1024


def test_unknown_status_is_rejected():
    with pytest.raises(ValueError, match="Deleted"):
        report.entry("m", "Deleted")


def test_patches_touch_one_key_only():
    assert report.configmap_patch("k", None) == {"data": {"k": None}}
    assert report.node_label_patch({"a": "Ready", "b": None}) == {
        "metadata": {"labels": {"a": "Ready", "b": None}}
    }


def test_progress_shows_bytes_by_source_once_any_arrived() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    plain = report.Progress(phase="downloading", total_bytes=10).to_json(now)
    assert "bytesBySource" not in plain
    mixed = report.Progress(
        phase="downloading", total_bytes=10, bytes_by_source={"origin": 3, "peer": 5}
    ).to_json(now)
    assert mixed["bytesBySource"] == {"origin": 3, "peer": 5}
