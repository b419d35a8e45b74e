"""Deletes no event reported, and the resourceVersions the sweep for them reads from.

A watch that resumes after its history expired (410 Gone) relists only the survivors, so a
model deleted meanwhile sends no event. Once per resync period the agent lists both model
kinds from the API server's watch cache (not older than the newest version it saw) and takes
as deleted every lane that the listing lacks and whose last event came before the listing
began.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from kubernetes_asyncio import client

from model_agent import agent_lanes, errors, spec
from model_agent.kube import models as kube_models

__all__ = ["missed_deletes", "note_version"]


def note_version(versions: dict[str, str], kind: str, version: Any) -> None:
    """Keep the newest resourceVersion seen for ``kind`` (compared as numbers when both are,
    as etcd's are; otherwise the latest to arrive wins)."""
    if not version:
        return
    old, new = versions.get(kind), str(version)
    if old is not None and old.isdigit() and new.isdigit() and int(new) < int(old):
        return
    versions[kind] = new


async def missed_deletes(
    api: client.ApiClient, versions: dict[str, str], lanes: Iterable[agent_lanes.Lane]
) -> list[agent_lanes.Lane]:
    """The lanes whose model no longer exists though no delete event came (one list per
    kind, from the watch cache); ``versions`` learns the listing's versions."""
    began = time.monotonic()
    present: set[tuple[str, str, str]] = set()
    listed: dict[str, str] = {}
    bodies = await kube_models.list_models(api, not_older_than=dict(versions), versions=listed)
    for kind, version in listed.items():
        note_version(versions, kind, version)
    for body in bodies:
        with contextlib.suppress(errors.AgentError):
            present.add(spec.identify(body).key)
    return [
        lane
        for lane in list(lanes)
        if not lane.deleted and lane.seen_at < began and lane.ref.key not in present
    ]
