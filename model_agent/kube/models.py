"""BaseModel and ClusterBaseModel objects through the API: list both kinds (the startup
inventory that tells stale ConfigMap entries and labels apart) and merge-patch spec fields
(the optional ``--write-spec``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from model_agent import report
from model_agent.kube import client as kube_client

__all__ = ["GROUP", "VERSION", "list_models", "patch_spec"]

GROUP, VERSION = "ome.io", "v1beta1"
PLURALS = {report.BASEMODEL: "basemodels", report.CLUSTERBASEMODEL: "clusterbasemodels"}
_MERGE = "application/merge-patch+json"


async def list_models(api: client.ApiClient) -> list[dict[str, Any]]:
    """Every BaseModel (all namespaces) and ClusterBaseModel, with ``kind`` set on each."""
    custom: Any = client.CustomObjectsApi(api)
    found: list[dict[str, Any]] = []
    for kind, plural in PLURALS.items():
        continue_token: str | None = None
        while True:
            try:
                page = await custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, limit=500, _continue=continue_token
                )
            except Exception as exc:
                raise kube_client.api_error(exc, f"list {plural}") from exc
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    item.setdefault("kind", kind)
                    found.append(item)
            continue_token = (page.get("metadata") or {}).get("continue") or None
            if not continue_token:
                break
    return found


async def patch_spec(
    api: client.ApiClient, *, kind: str, namespace: str, name: str, spec: Mapping[str, Any]
) -> None:
    """Merge-patch ``spec`` fields of one model (never a JSON patch: see TESTING.md)."""
    custom: Any = client.CustomObjectsApi(api)
    body = {"spec": dict(spec)}
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
        raise kube_client.api_error(exc, f"patch spec of {kind} {name}") from exc
