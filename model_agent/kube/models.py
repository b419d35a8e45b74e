"""BaseModel and ClusterBaseModel objects through the API: list both kinds (the startup
inventory that tells stale ConfigMap entries and labels apart, and the periodic sweep for
missed deletes, served from the API server's watch cache), and fill empty spec fields
(``--write-spec``, on by default, as OME's agent does).

``fill_spec`` reads the newest object, asks ``compute`` what is still missing, and sends a
merge patch guarded by the object's ``resourceVersion``. On 409 (another writer, often another
node's agent filling the same fields) it waits a jittered moment and starts over from a fresh
read, so N agents racing on one model cost at most one write each and the losers usually find
nothing left to write. Nothing missing: no write at all.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes_asyncio import client

from model_agent import errors, report, spec
from model_agent.kube import client as kube_client
from model_agent.modelinfo import specfill

__all__ = [
    "GROUP",
    "VERSION",
    "fill_spec",
    "get_model",
    "list_models",
    "patch_spec",
    "write_back",
]

logger = logging.getLogger("model_agent.agent")

GROUP, VERSION = "ome.io", "v1beta1"
PLURALS = {report.BASEMODEL: "basemodels", report.CLUSTERBASEMODEL: "clusterbasemodels"}
_MERGE = "application/merge-patch+json"
#: Tries of read-compute-patch before giving up on a model that keeps changing.
FILL_ATTEMPTS = 6


async def list_models(
    api: client.ApiClient,
    *,
    not_older_than: Mapping[str, str] | None = None,
    versions: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every BaseModel (all namespaces) and ClusterBaseModel, with ``kind`` set on each.

    Without ``not_older_than`` each kind is listed in pages of 500 from the latest state (a
    quorum read). With a resourceVersion for a kind (``{"BaseModel": "123"}``), that kind is
    listed whole with ``resourceVersionMatch=NotOlderThan``: the API server answers from its
    watch cache with a state at least as new as that version, without reading etcd; a kind
    missing from the mapping is listed with ``resourceVersion=0`` (any cached state).
    ``versions``, when given, receives each list's resourceVersion by kind."""
    custom: Any = client.CustomObjectsApi(api)
    found: list[dict[str, Any]] = []
    for kind, plural in PLURALS.items():
        options: dict[str, Any] = {"limit": 500}
        if not_older_than is not None:
            since = not_older_than.get(kind)
            options = {"resource_version": since or "0"}
            if since:
                options["resource_version_match"] = "NotOlderThan"
        continue_token: str | None = None
        while True:
            try:
                page = await custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, _continue=continue_token, **options
                )
            except Exception as exc:
                raise kube_client.api_error(exc, f"list {plural}") from exc
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    item.setdefault("kind", kind)
                    found.append(item)
            meta = page.get("metadata") or {}
            if versions is not None and meta.get("resourceVersion"):
                versions[kind] = str(meta["resourceVersion"])
            continue_token = meta.get("continue") or None
            if not continue_token:
                break
    return found


async def get_model(
    api: client.ApiClient, *, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    """The model object as the API server has it now; None when it is gone."""
    custom: Any = client.CustomObjectsApi(api)
    try:
        if kind == report.CLUSTERBASEMODEL:
            found = await custom.get_cluster_custom_object(GROUP, VERSION, PLURALS[kind], name)
        else:
            found = await custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name
            )
    except Exception as exc:
        if kube_client.is_not_found(exc):
            return None
        raise kube_client.api_error(exc, f"get {kind} {name}") from exc
    return found if isinstance(found, dict) else None


async def fill_spec(
    api: client.ApiClient,
    *,
    kind: str,
    namespace: str,
    name: str,
    compute: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    attempts: int = FILL_ATTEMPTS,
) -> dict[str, Any]:
    """Fill what ``compute(spec)`` says is missing; returns the fields written (empty when
    nothing was missing or the model is gone). See the module docstring."""
    for attempt in range(attempts):
        current = await get_model(api, kind=kind, namespace=namespace, name=name)
        if current is None:
            return {}
        missing = dict(compute(current.get("spec") or {}))
        if not missing:
            return {}
        version = (current.get("metadata") or {}).get("resourceVersion")
        try:
            await patch_spec(
                api,
                kind=kind,
                namespace=namespace,
                name=name,
                spec=missing,
                resource_version=version,
            )
            return missing
        except _Conflict:
            await asyncio.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
    raise errors.ServerError(f"fill spec of {kind} {name}: conflicting after {attempts} tries")


class _Conflict(Exception):
    """The object changed between our read and our patch (409)."""


async def patch_spec(
    api: client.ApiClient,
    *,
    kind: str,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    resource_version: str | None = None,
) -> None:
    """Merge-patch ``spec`` fields of one model (never a JSON patch: see TESTING.md), only
    if the object is still at ``resource_version`` when given."""
    custom: Any = client.CustomObjectsApi(api)
    body: dict[str, Any] = {"spec": dict(spec)}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        if kind == report.CLUSTERBASEMODEL:
            await custom.patch_cluster_custom_object(
                GROUP, VERSION, PLURALS[kind], name, body, _content_type=_MERGE
            )
        else:
            await custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[kind], name, body, _content_type=_MERGE
            )
    except Exception as exc:
        if resource_version and kube_client.is_conflict(exc):
            raise _Conflict from None
        raise kube_client.api_error(exc, f"patch spec of {kind} {name}") from exc


async def write_back(
    api: client.ApiClient,
    ref: spec.ModelRef,
    current: Mapping[str, Any],
    config: Mapping[str, Any],
) -> None:
    """Fill the empty spec fields as OME's agent does (``modelinfo.specfill``), only when
    ``current`` (the spec the watch delivered) misses one; never raises (a failed write is
    logged: the model stays Ready, as in OME)."""
    if not specfill.fill(current, config):
        return  # complete already: no read, no write
    try:
        written = await fill_spec(
            api,
            kind=ref.kind,
            namespace=ref.namespace,
            name=ref.name,
            compute=lambda latest: specfill.fill(latest, config),
        )
    except errors.AgentError as exc:
        logger.warning("model %s: spec write-back failed: %s", ref, exc)
        return
    if written:
        logger.info("model %s: wrote empty spec fields %s", ref, sorted(written))
