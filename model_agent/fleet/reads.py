"""The fleet view's edge: read the models, the Nodes and the per-node ConfigMaps through
kubernetes-asyncio, with the kubeconfig and context a kubectl plugin is given.

Reads only (list); returns plain dicts for ``view.aggregate``. Errors become the agent's
error hierarchy (``ConfigError`` for a missing or unusable kubeconfig or context).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client, config

from model_agent import errors, report
from model_agent.kube import client as kube_client

__all__ = ["Snapshot", "Target", "connect", "snapshot"]

_GROUP, _VERSION = "ome.io", "v1beta1"


@dataclasses.dataclass(frozen=True)
class Target:
    """Where to look: the models' namespace (None: all), the agents' ConfigMap namespace."""

    namespace: str | None
    agent_namespace: str


@dataclasses.dataclass(frozen=True)
class Snapshot:
    models: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    configmaps: list[dict[str, Any]]


async def connect(
    kubeconfig: str | None, context: str | None, environ: Mapping[str, str]
) -> tuple[client.ApiClient, str]:
    """An ApiClient for ``--kubeconfig``/``--context`` (else ``$KUBECONFIG``, else
    ``~/.kube/config``, else in-cluster) and the context's default namespace."""
    if kubeconfig is None and context is None:
        if environ.get("KUBERNETES_SERVICE_HOST") and not environ.get("KUBECONFIG"):
            return await kube_client.make_api_client(environ), "default"
    configuration = client.Configuration()
    try:
        loader = await config.load_kube_config(
            config_file=kubeconfig or environ.get("KUBECONFIG"),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (config.ConfigException, OSError) as exc:
        raise errors.ConfigError(f"no usable kubeconfig: {exc}") from None
    current = getattr(loader, "current_context", None)
    current = getattr(current, "value", current)  # a dict, or a ConfigNode holding one
    context_node = current.get("context") if isinstance(current, Mapping) else None
    namespace = context_node.get("namespace") if isinstance(context_node, Mapping) else None
    return kube_client.api_client_for(configuration, environ), str(namespace or "default")


async def snapshot(api: client.ApiClient, target: Target) -> Snapshot:
    """List the models, the Nodes and the agents' ConfigMaps once."""
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    try:
        if target.namespace is None:
            based = await custom.list_cluster_custom_object(_GROUP, _VERSION, "basemodels")
        else:
            based = await custom.list_namespaced_custom_object(
                _GROUP, _VERSION, target.namespace, "basemodels"
            )
        clustered = await custom.list_cluster_custom_object(_GROUP, _VERSION, "clusterbasemodels")
        nodes = await core.list_node()
        configmaps = await core.list_namespaced_config_map(
            target.agent_namespace, label_selector=f"{report.STATUS_CONFIGMAP_LABEL}=true"
        )
    except Exception as exc:
        raise kube_client.api_error(exc, "reading the fleet") from None
    return Snapshot(
        models=[*clustered.get("items", []), *based.get("items", [])],
        nodes=[api.sanitize_for_serialization(n) for n in nodes.items],
        configmaps=[api.sanitize_for_serialization(c) for c in configmaps.items],
    )
