"""What the agent reports to the cluster, as OME's controller reads it: pure, no I/O.

Owns the per-node ConfigMap's name, labels and annotations, each model's ConfigMap key and
Node label key (including OME's sha256-prefix shortening of long names), the entry JSON
(``name``, ``status``, ``config``, ``progress``, and our ``reason``/``message`` on failure) and
the merge patches that write one key only. It must not talk to the API server.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BASEMODEL",
    "CLUSTERBASEMODEL",
    "FAILED",
    "LABEL_DOMAIN",
    "READY",
    "STATUS_CONFIGMAP_LABEL",
    "UPDATING",
    "Progress",
    "configmap_annotations",
    "configmap_key",
    "configmap_labels",
    "configmap_patch",
    "entry",
    "is_model_configmap_key",
    "is_model_label",
    "node_label_key",
    "node_label_patch",
    "truncate_with_hash",
]

READY, UPDATING, FAILED = "Ready", "Updating", "Failed"
BASEMODEL, CLUSTERBASEMODEL = "BaseModel", "ClusterBaseModel"

LABEL_DOMAIN = "models.ome.io"
STATUS_CONFIGMAP_LABEL = "models.ome/basemodel-status"
_CLUSTER_TYPE, _NAMESPACED_TYPE = "clusterbasemodel", "basemodel"
#: OME: 63 - len("models.ome.io") - 1.
_MAX_LABEL_NAME = 49
_MAX_CONFIGMAP_KEY = 253
_HASH_PREFIX = 8
_MIN_NAMESPACE = 8
#: Failure messages are bounded so a hostile or verbose error cannot bloat the ConfigMap.
_MAX_MESSAGE = 1024


def truncate_with_hash(text: str, max_length: int) -> str:
    """OME's ``truncateWithHash``: the text itself when it fits, else the first 8 hex digits of
    its sha256, ``-``, and as much of its tail as fits (only the hash when nothing fits)."""
    if len(text) <= max_length:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH_PREFIX]
    tail = max_length - _HASH_PREFIX - 1
    if tail <= 0:
        return digest[:max_length]
    return f"{digest}-{text[len(text) - tail :]}"


def _split_space(namespace: str, name: str, available: int) -> tuple[str, str]:
    """OME's split of a length budget between namespace and name (the name has priority)."""
    if len(namespace) + len(name) <= available:
        return namespace, name
    if available < 2 * _MIN_NAMESPACE:
        ns_max = available // 2
    elif len(namespace) <= _MIN_NAMESPACE:
        ns_max = len(namespace)
    else:
        ns_max = _MIN_NAMESPACE
    return truncate_with_hash(namespace, ns_max), truncate_with_hash(name, available - ns_max)


def configmap_key(kind: str, namespace: str, name: str) -> str:
    """``clusterbasemodel.{name}`` or ``{namespace}.basemodel.{name}``, at most 253 chars."""
    if kind == CLUSTERBASEMODEL:
        return f"{_CLUSTER_TYPE}.{truncate_with_hash(name, _MAX_CONFIGMAP_KEY - 17)}"
    ns, short = _split_space(namespace, name, _MAX_CONFIGMAP_KEY - len(_NAMESPACED_TYPE) - 2)
    return f"{ns}.{_NAMESPACED_TYPE}.{short}"


def node_label_key(kind: str, namespace: str, name: str) -> str:
    """``models.ome.io/clusterbasemodel.{name}`` or ``models.ome.io/{ns}.basemodel.{name}``
    with the name part shortened to 49 characters as OME does."""
    if kind == CLUSTERBASEMODEL:
        short = truncate_with_hash(name, _MAX_LABEL_NAME - len(_CLUSTER_TYPE) - 1)
        return f"{LABEL_DOMAIN}/{_CLUSTER_TYPE}.{short}"
    ns, short = _split_space(namespace, name, _MAX_LABEL_NAME - len(_NAMESPACED_TYPE) - 2)
    return f"{LABEL_DOMAIN}/{ns}.{_NAMESPACED_TYPE}.{short}"


def is_model_label(label: str) -> bool:
    """Whether a Node label key has the shape of a model label this agent writes."""
    prefix, slash, rest = label.partition("/")
    return bool(slash) and prefix == LABEL_DOMAIN and is_model_configmap_key(rest)


def is_model_configmap_key(key: str) -> bool:
    """Whether a ConfigMap data key has the shape of a model entry key."""
    if key.startswith(f"{_CLUSTER_TYPE}.") and len(key) > len(_CLUSTER_TYPE) + 1:
        return True
    ns, sep, name = key.partition(f".{_NAMESPACED_TYPE}.")
    return bool(sep and ns and name)


def configmap_labels(node: str) -> dict[str, str]:
    return {STATUS_CONFIGMAP_LABEL: "true", "node": node}


def configmap_annotations(node: str) -> dict[str, str]:
    return {"models.ome.io/node-name": node, "models.ome.io/managed-by": "model-agent"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Progress:
    """Download progress as the ConfigMap entry shows it (``progress`` object)."""

    phase: str
    total_bytes: int = 0
    completed_bytes: int = 0
    total_files: int = 0
    completed_files: int = 0
    speed_bytes_per_sec: float = 0.0
    #: Bytes received by source (``origin``, ``peer``); shown once any arrived.
    bytes_by_source: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def to_json(self, now: datetime.datetime) -> dict[str, Any]:
        value: dict[str, Any] = {
            "phase": self.phase,
            "totalBytes": self.total_bytes,
            "completedBytes": self.completed_bytes,
            "totalFiles": self.total_files,
            "completedFiles": self.completed_files,
            "speedBytesPerSec": round(self.speed_bytes_per_sec, 1),
            "lastUpdated": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if self.bytes_by_source:
            value["bytesBySource"] = dict(self.bytes_by_source)
        return value


def entry(
    name: str,
    status: str,
    *,
    config: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    reason: str | None = None,
    message: str | None = None,
    now: datetime.datetime | None = None,
) -> str:
    """The compact JSON value of one model's ConfigMap entry. ``progress`` is only kept while
    Updating; ``reason``/``message`` (an extension OME ignores) explain a failure."""
    if status not in (READY, UPDATING, FAILED):
        raise ValueError(f"unknown model status {status!r}")
    value: dict[str, Any] = {"name": name, "status": status}
    if config:
        value["config"] = dict(config)
    if progress is not None and status == UPDATING:
        value["progress"] = progress.to_json(now or datetime.datetime.now(datetime.UTC))
    if reason:
        value["reason"] = reason
    if message:
        value["message"] = message[:_MAX_MESSAGE]
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def configmap_patch(key: str, value: str | None) -> dict[str, Any]:
    """A JSON merge patch that sets (or, with None, removes) one data key and nothing else."""
    return {"data": {key: value}}


def node_label_patch(labels: Mapping[str, str | None]) -> dict[str, Any]:
    """A JSON merge patch of Node labels (None removes a label)."""
    return {"metadata": {"labels": dict(labels)}}
