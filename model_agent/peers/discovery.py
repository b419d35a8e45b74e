"""Finding peers through what agents already write: the node ConfigMaps.

Each agent puts its peer URL in an annotation of its node ConfigMap (``advertise``). The
holders of a model are the other nodes whose ConfigMap carries that annotation and an entry
for the model that is ``Ready`` or ``Updating`` (``candidates``): one list of the agents'
ConfigMaps, served from the API server's watch cache (``resourceVersion=0``), no new object
kind and no other API call. What each candidate holds is asked of the candidate itself.

Owns discovery; must not fetch bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client

from model_agent import report
from model_agent.kube import client as kube_client
from model_agent.kube import configmap
from model_agent.peers import protocol

__all__ = ["Candidate", "Lister", "advertise", "parse_candidates"]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """Another node that reports the model Ready or Updating, and where its peer server is."""

    node: str
    url: str
    status: str


async def advertise(writer: configmap.ConfigMapWriter, url: str) -> None:
    """Put this agent's peer URL on its node ConfigMap."""
    await writer.annotate({protocol.ANNOTATION: url})


def parse_candidates(items: Iterable[Mapping[str, Any]], key: str, me: str) -> list[Candidate]:
    """The candidates among ConfigMap objects (pure: another node wrote them, so every field
    is checked and a malformed one skipped)."""
    found: list[Candidate] = []
    for item in items:
        metadata = item.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        node = str(annotations.get("models.ome.io/node-name") or metadata.get("name") or "")
        url = protocol.parse_address(annotations.get(protocol.ANNOTATION))
        value = (item.get("data") or {}).get(key)
        if not node or node == me or url is None or not isinstance(value, str):
            continue
        try:
            status = json.loads(value).get("status")
        except (ValueError, AttributeError):
            continue
        if status in (report.READY, report.UPDATING):
            found.append(Candidate(node, url, status))
    return found


class Lister:
    """Lists the agents' ConfigMaps in one namespace (from the watch cache)."""

    def __init__(self, api: client.ApiClient, *, namespace: str, node_name: str) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self.namespace, self.node_name = namespace, node_name

    async def candidates(self, key: str) -> list[Candidate]:
        try:
            listed = await self._core.list_namespaced_config_map(
                self.namespace,
                label_selector=f"{report.STATUS_CONFIGMAP_LABEL}=true",
                resource_version="0",
            )
        except Exception as exc:  # API, network and timeout errors alike
            raise kube_client.api_error(exc, "list the agents' configmaps") from None
        items = [self._api.sanitize_for_serialization(item) for item in listed.items]
        return parse_candidates(items, key, self.node_name)
