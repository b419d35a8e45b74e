"""A BaseModel/ClusterBaseModel body turned into a frozen, validated ``ModelSpec``.

Pure. ``identify`` reads only the identity (kind, namespace, name, uid), so even a model with
an invalid spec can be reported ``Failed`` under its own key; ``parse`` validates the rest and
raises ``errors.InvalidSpecError`` (or ``InvalidURIError``) naming the field.

Destination rules:
- no ``spec.storage.path``: ``<models-root-dir>/<ConfigMap key>`` (unique per model, stable);
- an explicit path must be absolute, free of ``.``/``..`` segments, backslashes and control
  characters, must lie under ``--models-root-dir`` (not be the root itself: the one host
  directory the agent may write and delete in; a namespaced BaseModel must not be able to
  point it at ``/etc``), must not be inside the agent's state directory
  ``<models-root-dir>/.model-agent``, and no component may be a name the agent uses for its
  own work (``.model-agent-partial``, ``*.model-agent-next``, ``*.model-agent-old``). Symlinks
  are resolved later, on the node (``trust.confine``).
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping
from typing import Any

from model_agent import errors, report, selection, uris

__all__ = [
    "OCI_AUTH",
    "RESERVE_LABEL",
    "SKIP_PARSING_ANNOTATION",
    "STATE_DIR_NAME",
    "ModelRef",
    "ModelSpec",
    "identify",
    "is_deleting",
    "parse",
    "placement_of",
]

RESERVE_LABEL = "models.ome/reserve-model-artifact"
SKIP_PARSING_ANNOTATION = "ome.oracle.com/skip-config-parsing"
STATE_DIR_NAME = ".model-agent"
OCI_AUTH = frozenset(
    {"InstancePrincipal", "UserPrincipal", "ResourcePrincipal", "OkeWorkloadIdentity"}
)
DOWNLOAD_POLICIES = frozenset({"AlwaysDownload", "ReuseIfExists"})
_KINDS = {
    "BaseModel": report.BASEMODEL,
    "ClusterBaseModel": report.CLUSTERBASEMODEL,
    "basemodels": report.BASEMODEL,
    "clusterbasemodels": report.CLUSTERBASEMODEL,
}
_MAX_PARAMETERS = 64
_MAX_PARAM_VALUE = 4096
_MAX_PATH = 4096


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelRef:
    """Who a model is. ``key`` names its lane; the uid tells a re-created model apart."""

    kind: str
    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def configmap_key(self) -> str:
        return report.configmap_key(self.kind, self.namespace, self.name)

    @property
    def label_key(self) -> str:
        return report.node_label_key(self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything the agent acts on, validated. Equal specs need no new work."""

    ref: ModelRef
    storage_uri: str
    uri: uris.StorageURI
    path: str
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    secret_name: str | None = None
    placement: selection.Selection = dataclasses.field(default_factory=selection.Selection)
    download_policy: str = "AlwaysDownload"
    model_format: str | None = None
    serving: bool = True
    analyse: bool = True
    reserve: bool = False
    spec: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def scheme(self) -> str:
        return self.uri.scheme

    @property
    def handled(self) -> bool:
        """pvc:// models belong to OME's controller: never selected, never enqueued."""
        return self.scheme != "pvc"

    @property
    def secret_key(self) -> str:
        """The key inside the Secret that holds the HF token."""
        return self.parameters.get("secretKey") or "token"

    def selects(self, node: selection.Node) -> bool:
        return self.handled and selection.matches(self.placement, node)

    @property
    def filters_by_shape(self) -> bool:
        """Whether the GPU shape decides the file set (a TensorRT-LLM serving model)."""
        return (self.model_format or "").lower() == "tensorrtllm" and self.serving

    def same_source(self, other: ModelSpec) -> bool:
        """Whether ``other`` names the same file set at the same place: same URI and path,
        same ``allow``/``ignore``, same TensorRT-LLM shape filtering (no re-plan needed)."""
        return (
            self.storage_uri == other.storage_uri
            and self.path == other.path
            and all(
                self.parameters.get(key, "") == other.parameters.get(key, "")
                for key in ("allow", "ignore")
            )
            and self.filters_by_shape == other.filters_by_shape
        )


def _bad(field: str, why: str) -> errors.InvalidSpecError:
    return errors.InvalidSpecError(f"{field}: {why}")


def identify(body: Mapping[str, Any]) -> ModelRef:
    """The model's identity from ``apiVersion/kind/metadata``; raises if it has none."""
    kind = _KINDS.get(str(body.get("kind", "")))
    metadata = body.get("metadata")
    if kind is None or not isinstance(metadata, Mapping):
        raise errors.InvalidSpecError("object is not a BaseModel or ClusterBaseModel")
    name = metadata.get("name")
    namespace = metadata.get("namespace") or ""
    if not isinstance(name, str) or not name:
        raise _bad("metadata.name", "missing")
    if kind == report.BASEMODEL and not (isinstance(namespace, str) and namespace):
        raise _bad("metadata.namespace", "missing for a BaseModel")
    if kind == report.CLUSTERBASEMODEL:
        namespace = ""
    return ModelRef(
        kind=kind, namespace=str(namespace), name=name, uid=str(metadata.get("uid") or "")
    )


def placement_of(body: Mapping[str, Any]) -> selection.Selection | None:
    """The selector fields of a body whose spec is otherwise invalid; None when they do not
    parse either (such a model is reported Failed on every node). A pvc:// model selects no
    node."""
    spec = body.get("spec")
    storage = spec.get("storage") if isinstance(spec, Mapping) else None
    if not isinstance(storage, Mapping):
        return None
    if str(storage.get("storageUri", "")).startswith("pvc://"):
        return selection.Selection(terms=())  # never ours, even when malformed
    try:
        return selection.parse(storage)
    except errors.InvalidSpecError:
        return None


def is_deleting(body: Mapping[str, Any]) -> bool:
    metadata = body.get("metadata")
    return isinstance(metadata, Mapping) and bool(metadata.get("deletionTimestamp"))


def _string_map(value: Any, field: str, *, limit: int = _MAX_PARAMETERS) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(field, "must be a map of strings")
    if len(value) > limit:
        raise _bad(field, f"has {len(value)} entries; at most {limit} allowed")
    result: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not isinstance(val, str | int | float | bool):
            raise _bad(f"{field}[{str(key)[:80]}]", "must be a string")
        text = str(val).lower() if isinstance(val, bool) else str(val)
        if len(text) > _MAX_PARAM_VALUE:
            raise _bad(f"{field}[{key}]", f"is longer than {_MAX_PARAM_VALUE} characters")
        result[key] = text
    return result


def _normal_absolute(path: str, field: str) -> str:
    if len(path) > _MAX_PATH or any(ord(ch) < 32 for ch in path) or "\\" in path:
        raise _bad(field, "contains control characters or backslashes, or is too long")
    if not path.startswith("/"):
        raise _bad(field, f"{path!r} is not an absolute path")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise _bad(field, f"{path!r} must not contain '.' or '..' segments")
    return "/" + "/".join(parts)


_RESERVED_SUFFIXES = (".model-agent-next", ".model-agent-old")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _destination(storage: Mapping[str, Any], ref: ModelRef, root: str) -> str:
    root = _normal_absolute(root, "--models-root-dir")
    state = posixpath.join(root, STATE_DIR_NAME)
    raw = storage.get("path")
    if raw in (None, ""):
        path = posixpath.join(root, ref.configmap_key)
        if not _inside(path, root) or path == root or _inside(path, state):
            raise _bad("spec.storage.path", "absent, and the default path escapes the root")
        return path
    if not isinstance(raw, str):
        raise _bad("spec.storage.path", "must be a string")
    path = _normal_absolute(raw, "spec.storage.path")
    if path == "/" or path == root:
        raise _bad("spec.storage.path", f"{path!r} would put the model over a whole tree")
    if not _inside(path, root):
        raise _bad(
            "spec.storage.path",
            f"{path!r} is outside --models-root-dir {root!r} (the only host directory the "
            "agent may write and delete in)",
        )
    if _inside(path, state):
        raise _bad("spec.storage.path", f"{path!r} is inside the agent's state directory")
    for part in path.split("/"):
        if part == ".model-agent-partial" or part.endswith(_RESERVED_SUFFIXES):
            raise _bad("spec.storage.path", f"{path!r} uses the agent's reserved name {part!r}")
    return path


def parse(body: Mapping[str, Any], *, models_root_dir: str) -> ModelSpec:
    """Validate a model body. Raises ``InvalidSpecError``/``InvalidURIError`` naming the field."""
    ref = identify(body)
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise _bad("spec", "missing")
    storage = spec.get("storage")
    if not isinstance(storage, Mapping):
        raise _bad("spec.storage", "missing")
    storage_uri = storage.get("storageUri")
    if not isinstance(storage_uri, str):
        raise _bad("spec.storage.storageUri", "missing")
    uri = uris.parse(storage_uri)
    parameters = _string_map(storage.get("parameters"), "spec.storage.parameters")
    if uri.scheme == "oci" and parameters.get("auth", "InstancePrincipal") not in OCI_AUTH:
        raise _bad(
            "spec.storage.parameters.auth",
            f"{parameters['auth']!r} is not one of {', '.join(sorted(OCI_AUTH))}",
        )
    secret = storage.get("key")
    if secret is not None and (not isinstance(secret, str) or not secret or len(secret) > 253):
        raise _bad("spec.storage.key", "must be the name of a Secret")
    policy = storage.get("downloadPolicy") or "AlwaysDownload"
    if policy not in DOWNLOAD_POLICIES:
        raise _bad(
            "spec.storage.downloadPolicy", f"{policy!r} is not AlwaysDownload or ReuseIfExists"
        )
    path = _destination(storage, ref, models_root_dir)
    metadata = body.get("metadata") or {}
    # Only the two keys the agent reads: other labels and annotations (kubectl's
    # last-applied-configuration can be large) are none of its business.
    raw_labels, raw_annotations = metadata.get("labels"), metadata.get("annotations")
    labels: Mapping[str, Any] = raw_labels if isinstance(raw_labels, Mapping) else {}
    annotations: Mapping[str, Any] = raw_annotations if isinstance(raw_annotations, Mapping) else {}
    model_format = spec.get("modelFormat")
    format_name = model_format.get("name") if isinstance(model_format, Mapping) else None
    extra = spec.get("additionalMetadata")
    kind = extra.get("type", "Serving") if isinstance(extra, Mapping) else "Serving"
    return ModelSpec(
        ref=ref,
        storage_uri=storage_uri,
        uri=uri,
        path=path,
        parameters=parameters,
        secret_name=secret,
        placement=selection.parse(storage),
        download_policy=str(policy),
        model_format=str(format_name) if format_name else None,
        serving=str(kind) == "Serving",
        analyse=str(annotations.get(SKIP_PARSING_ANNOTATION, "")).lower() != "true",
        reserve=str(labels.get(RESERVE_LABEL, "")).lower() == "true",
        spec=spec,
    )
