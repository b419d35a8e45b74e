"""The fleet view's pure part: aggregation of models, Nodes and ConfigMaps, and rendering.

Aspects: selected nodes count whether or not they reported; a node's state comes from its
ConfigMap entry, else its label, else Pending; a node no longer selected that still reports
is shown as such; progress gives a bar, bytes, speed and ETA; failures show reason and
message; a model whose storage does not parse is flagged, not a crash; JSON carries counts.
"""

from __future__ import annotations

import datetime
import json

import pytest

from model_agent import report
from model_agent.fleet import view


def model(name: str, namespace: str | None = "default", **storage) -> dict:
    kind = "BaseModel" if namespace else "ClusterBaseModel"
    meta = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": kind,
        "metadata": meta,
        "spec": {"storage": {"storageUri": "hf://o/r", **storage}},
    }


def node(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}}


def configmap(name: str, **entries: dict) -> dict:
    return {"metadata": {"name": name}, "data": {k: json.dumps(v) for k, v in entries.items()}}


KEY = "default.basemodel.m"
PROGRESS = {
    "phase": "downloading",
    "totalBytes": 4 * 1024**3,
    "completedBytes": 1024**3,
    "totalFiles": 4,
    "completedFiles": 1,
    "speedBytesPerSec": 100 * 1024**2,
    "lastUpdated": "2026-12-03T00:00:00Z",
}


def test_rollout_over_three_nodes_counts_each_state_and_the_selection():
    rows = view.aggregate(
        [model("m", nodeSelector={"pool": "a"})],
        [node("n1", pool="a"), node("n2", pool="a"), node("n3", pool="a"), node("n4")],
        [
            configmap("n1", **{KEY: {"name": "m", "status": "Ready"}}),
            configmap("n2", **{KEY: {"name": "m", "status": "Updating", "progress": PROGRESS}}),
            configmap(
                "n3",
                **{KEY: {"name": "m", "status": "Failed", "reason": "NoSpace", "message": "full"}},
            ),
        ],
    )
    (row,) = rows
    assert (row.count("Ready"), row.count("Updating"), row.count("Failed"), row.selected) == (
        1,
        1,
        1,
        3,
    )
    text = view.render_text(rows)
    assert text[1].split() == ["BaseModel/default/m", "1", "1", "1", "3"]
    updating = next(line for line in text if "n2" in line)
    assert "[#####..............." in updating and " 25%" in updating
    assert "1.0 GiB / 4.0 GiB" in updating and "100.0 MiB/s" in updating
    assert "ETA 31s" in updating and "1/4 files" in updating
    assert "NoSpace: full" in next(line for line in text if "n3" in line)
    assert not any("n4" in line for line in text)


def test_a_selected_node_without_report_is_pending_and_a_label_stands_in_for_the_entry():
    label = report.node_label_key("BaseModel", "default", "m")
    rows = view.aggregate(
        [model("m")], [node("n1"), node("n2", **{label: "Ready"})], [configmap("n1")]
    )
    states = {s.node: s.status for s in rows[0].nodes}
    assert states == {"n1": view.PENDING, "n2": "Ready"}


def test_a_node_that_reports_but_is_no_longer_selected_is_shown_so():
    rows = view.aggregate(
        [model("m", nodeSelector={"pool": "a"})],
        [node("n1")],
        [configmap("n1", **{KEY: {"name": "m", "status": "Ready"}})],
    )
    assert rows[0].selected == 0
    assert "(no longer selected)" in view.render_text(rows)[-1]


def test_cluster_models_come_first_and_bad_storage_is_flagged_not_raised():
    broken = model("z")
    broken["spec"]["storage"] = "not a map"
    rows = view.aggregate([broken, model("c", None)], [node("n1")], [])
    assert [r.name for r in rows] == ["c", "z"]
    assert rows[1].problem
    assert any("(spec.storage does not parse)" in line for line in view.render_text(rows))
    assert view.render_text([]) == ["No models found."]


def test_json_has_counts_progress_and_eta():
    rows = view.aggregate(
        [model("m")],
        [node("n1")],
        [configmap("n1", **{KEY: {"name": "m", "status": "Updating", "progress": PROGRESS}})],
    )
    now = datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)
    doc = view.render_json(rows, now)
    assert doc["time"] == "2026-12-03T00:00:00Z"
    (m,) = doc["models"]
    assert m["nodes"] == {"ready": 0, "updating": 1, "failed": 0, "selected": 1}
    assert m["nodeStates"][0]["progress"]["etaSeconds"] == 30.7


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3 * 3600 + 120, "3h02m")]
)
def test_durations(seconds, text):
    assert view.human_duration(seconds) == text


def test_garbage_entries_and_progress_values_do_not_crash():
    rows = view.aggregate(
        [model("m")],
        [node("n1"), {"metadata": {"name": "n2", "labels": None}}],
        [
            {"metadata": {"name": "n1"}, "data": {KEY: "{not json"}},
            configmap(
                "n2",
                **{
                    KEY: {
                        "status": "Updating",
                        "progress": {"phase": "downloading", "totalBytes": "x"},
                    }
                },
            ),
        ],
    )
    assert [s.status for s in rows[0].nodes] == [view.PENDING, "Updating"]
    assert "ETA -" in view.render_text(rows)[-1]
