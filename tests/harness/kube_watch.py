"""Watch bookkeeping of the fake Kubernetes API: one open watch (``Watcher``: its filters,
and the selector transitions it sees), and the change ``History`` that a watch resuming
from a resourceVersion replays, bounded in entries and bytes like an etcd compaction.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from tests.harness import kube_patch
from tests.harness.kube_resources import Resource

Event = dict[str, Any]


@dataclasses.dataclass
class Watcher:
    """One open watch: what it wants, and how to hand it events (``None`` ends it)."""

    resource: Resource
    namespace: str | None
    labels: kube_patch.Matcher
    fields: kube_patch.Matcher
    deliver: Callable[[Event | None], None]

    def wants(self, obj: Mapping[str, Any]) -> bool:
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.labels(obj) and self.fields(obj)

    def translate(self, kind: str, old: Any, new: Any) -> Event | None:
        """The event this watcher sees for a change, with selector transitions: an object
        that starts matching is ADDED, one that stops matching is DELETED."""
        if kind == "ADDED":
            return {"type": "ADDED", "object": new} if self.wants(new) else None
        if kind == "DELETED":
            return {"type": "DELETED", "object": new} if self.wants(new) else None
        was, now = self.wants(old), self.wants(new)
        if was and now:
            return {"type": "MODIFIED", "object": new}
        if now:
            return {"type": "ADDED", "object": new}
        if was:
            return {"type": "DELETED", "object": new}
        return None


def gone(start: int, compacted: int) -> Event:
    """The ERROR event of a watch that starts before the kept history (410 Gone)."""
    status = kube_patch.status_body(
        410, "Expired", f"too old resource version: {start} ({compacted})"
    )
    return {"type": "ERROR", "object": status}


class History:
    """Changes as JSON snapshots (compact; a fresh copy per replay), oldest dropped first
    beyond ``max_entries`` or ``max_bytes``; ``compacted`` is the resourceVersion below
    which a resumed watch gets 410."""

    def __init__(self, max_entries: int = 20_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.compacted = 0
        # (resourceVersion, resource, event kind, old JSON or None, new JSON)
        self._entries: collections.deque[tuple[int, Resource, str, str | None, str]] = (
            collections.deque()
        )
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, rv: int, resource: Resource, kind: str, old: Any, new: Any) -> None:
        old_json = None if old is None else json.dumps(old)
        new_json = json.dumps(new)
        self._entries.append((rv, resource, kind, old_json, new_json))
        self._bytes += len(new_json) + len(old_json or "")
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            dropped_rv, _, _, dropped_old, dropped_new = self._entries.popleft()
            self._bytes -= len(dropped_new) + len(dropped_old or "")
            self.compacted = dropped_rv

    def changes(self, after: int) -> list[tuple[int, Resource, str, dict[str, Any]]]:
        """Every recorded change after resourceVersion ``after``, oldest first (for tests
        that must see each state an object went through, however briefly)."""
        return [
            (rv, resource, kind, json.loads(new))
            for rv, resource, kind, _, new in list(self._entries)
            if rv > after
        ]

    def compact(self, rv: int) -> None:
        self.compacted = rv
        self._entries.clear()
        self._bytes = 0

    def replay(self, start: int, watcher: Watcher) -> list[Event] | None:
        """What ``watcher`` sees of the changes after ``start``; None when they are gone."""
        if start < self.compacted:
            return None
        events: list[Event] = []
        for rv, res, kind, old_json, new_json in self._entries:
            if rv > start and res == watcher.resource:
                old = None if old_json is None else json.loads(old_json)
                event = watcher.translate(kind, old, json.loads(new_json))
                if event is not None:
                    events.append(event)
        return events
