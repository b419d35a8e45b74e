"""The fleet view, pure: aggregate models, Nodes and per-node ConfigMaps into one row per
model and one line per node, and render them as text or JSON. No I/O.

A node counts for a model when the model selects it (``spec.storage`` nodeSelector and
required affinity, as the agent decides) or when its ConfigMap or a Node label reports the
model anyway (a node that was selected before a relabel, until its agent cleans up). A
node's state comes from its ConfigMap entry (status, progress, failure reason) and falls
back to the Node label; selected with neither: ``Pending`` (no agent has reported yet).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from model_agent import report, selection, spec

__all__ = [
    "PENDING",
    "ModelRow",
    "NodeState",
    "aggregate",
    "human_bytes",
    "human_duration",
    "render_json",
    "render_text",
]

PENDING = "Pending"
_BAR = 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeState:
    """One node's view of one model."""

    node: str
    status: str
    selected: bool
    phase: str = ""
    total_bytes: int = 0
    completed_bytes: int = 0
    total_files: int = 0
    completed_files: int = 0
    speed: float = 0.0
    reason: str = ""
    message: str = ""

    @property
    def eta_seconds(self) -> float | None:
        left = self.total_bytes - self.completed_bytes
        if self.status != report.UPDATING or self.speed <= 0 or left < 0:
            return None
        return left / self.speed

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"node": self.node, "status": self.status}
        value["selected"] = self.selected
        if self.phase:
            value["progress"] = {
                "phase": self.phase,
                "totalBytes": self.total_bytes,
                "completedBytes": self.completed_bytes,
                "totalFiles": self.total_files,
                "completedFiles": self.completed_files,
                "speedBytesPerSec": self.speed,
                "etaSeconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            }
        if self.reason:
            value["reason"] = self.reason
        if self.message:
            value["message"] = self.message
        return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelRow:
    """One model and its nodes."""

    kind: str
    namespace: str
    name: str
    nodes: tuple[NodeState, ...]
    problem: str = ""

    def count(self, status: str) -> int:
        return sum(1 for n in self.nodes if n.status == status)

    @property
    def selected(self) -> int:
        return sum(1 for n in self.nodes if n.selected)

    @property
    def display_name(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.namespace:
            value["namespace"] = self.namespace
        value["nodes"] = {
            "ready": self.count(report.READY),
            "updating": self.count(report.UPDATING),
            "failed": self.count(report.FAILED),
            "selected": self.selected,
        }
        if self.problem:
            value["problem"] = self.problem
        value["nodeStates"] = [n.to_json() for n in self.nodes]
        return value


def _labels(node: Mapping[str, Any]) -> dict[str, str]:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def _entries(configmaps: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """ConfigMap data by node name (the ConfigMap's name is the node's)."""
    found: dict[str, Mapping[str, Any]] = {}
    for cm in configmaps:
        name = (cm.get("metadata") or {}).get("name")
        data = cm.get("data") or {}
        if isinstance(name, str) and isinstance(data, Mapping):
            found[name] = data
    return found


def _parse_entry(text: Any) -> dict[str, Any] | None:
    """A ConfigMap entry as a dict; None when missing, not JSON or not an entry object."""
    if not isinstance(text, str) or not text or len(text) > 1_000_000:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("status"), str):
        return None
    return value


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _state(
    node: str, selected: bool, entry: Mapping[str, Any] | None, label: str | None
) -> NodeState:
    if entry is None:
        status = label if label in (report.READY, report.UPDATING, report.FAILED) else PENDING
        return NodeState(node=node, status=str(status), selected=selected)
    raw = entry.get("progress")
    progress: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    speed = progress.get("speedBytesPerSec")
    return NodeState(
        node=node,
        status=str(entry.get("status")),
        selected=selected,
        phase=str(progress.get("phase") or ""),
        total_bytes=_int(progress.get("totalBytes")),
        completed_bytes=_int(progress.get("completedBytes")),
        total_files=_int(progress.get("totalFiles")),
        completed_files=_int(progress.get("completedFiles")),
        speed=float(speed) if isinstance(speed, int | float) else 0.0,
        reason=str(entry.get("reason") or ""),
        message=str(entry.get("message") or ""),
    )


def aggregate(
    models: Iterable[Mapping[str, Any]],
    nodes: Iterable[Mapping[str, Any]],
    configmaps: Iterable[Mapping[str, Any]],
) -> list[ModelRow]:
    """One row per model (ClusterBaseModels first, then by namespace and name)."""
    node_labels = {
        str((n.get("metadata") or {}).get("name")): _labels(n) for n in nodes if n.get("metadata")
    }
    data = _entries(configmaps)
    rows: list[ModelRow] = []
    for body in models:
        try:
            ref = spec.identify(body)
        except Exception as exc:  # a malformed object is shown, never a crash
            rows.append(
                ModelRow(
                    kind=str(body.get("kind")), namespace="", name="?", nodes=(), problem=str(exc)
                )
            )
            continue
        placement = spec.placement_of(body)
        states: list[NodeState] = []
        for node, labels in sorted(node_labels.items()):
            chosen = placement is not None and selection.matches(
                placement, selection.Node(name=node, labels=labels)
            )
            entry = _parse_entry((data.get(node) or {}).get(ref.configmap_key))
            label = labels.get(ref.label_key)
            if chosen or entry is not None or label is not None:
                states.append(_state(node, chosen, entry, label))
        problem = "" if placement is not None else "spec.storage does not parse"
        rows.append(
            ModelRow(
                kind=ref.kind,
                namespace=ref.namespace,
                name=ref.name,
                nodes=tuple(states),
                problem=problem,
            )
        )
    rows.sort(key=lambda r: (r.kind != report.CLUSTERBASEMODEL, r.namespace, r.name))
    return rows


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def human_duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _bar(done: int, total: int) -> str:
    filled = 0 if total <= 0 else min(_BAR, int(_BAR * done / total))
    return "[" + "#" * filled + "." * (_BAR - filled) + "]"


def _node_line(state: NodeState, width: int) -> str:
    head = f"  {state.node:<{width}}  {state.status:<8}"
    if state.status == report.UPDATING and state.phase:
        percent = 100 * state.completed_bytes / state.total_bytes if state.total_bytes else 0.0
        eta = state.eta_seconds
        parts = [
            _bar(state.completed_bytes, state.total_bytes),
            f"{percent:3.0f}%",
            f"{human_bytes(state.completed_bytes)} / {human_bytes(state.total_bytes)}",
            f"{state.completed_files}/{state.total_files} files",
            f"{human_bytes(state.speed)}/s",
            f"ETA {human_duration(eta)}" if eta is not None else "ETA -",
        ]
        if state.phase != "downloading":
            parts.insert(0, state.phase)
        return f"{head}  " + "  ".join(parts)
    if state.status == report.FAILED:
        why = ": ".join(p for p in (state.reason, state.message) if p) or "no reason given"
        return f"{head}  {why}"
    if not state.selected:
        return f"{head}  (no longer selected)"
    return head.rstrip()


def render_text(rows: Sequence[ModelRow]) -> list[str]:
    """The table (one row per model) and, under each model, one line per node."""
    if not rows:
        return ["No models found."]
    names = [f"{r.kind}/{r.display_name}" for r in rows]
    width = max(len("MODEL"), *(len(n) for n in names))
    lines = [f"{'MODEL':<{width}}  READY  UPDATING  FAILED  SELECTED"]
    node_width = max([len(n.node) for r in rows for n in r.nodes] or [4])
    for row, name in zip(rows, names, strict=True):
        lines.append(
            f"{name:<{width}}  {row.count(report.READY):>5}  {row.count(report.UPDATING):>8}  "
            f"{row.count(report.FAILED):>6}  {row.selected:>8}"
            + (f"  ({row.problem})" if row.problem else "")
        )
        lines.extend(_node_line(state, node_width) for state in row.nodes)
    return lines


def render_json(rows: Sequence[ModelRow], now: datetime.datetime) -> dict[str, Any]:
    return {
        "time": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "models": [r.to_json() for r in rows],
    }
