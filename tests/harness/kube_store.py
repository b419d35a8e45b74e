"""The state of the fake Kubernetes API: stored objects, resource versions, the change
history that watches replay from, and the open watches. Thread-safe (one lock): the HTTP
server runs in its own thread while tests write through the same methods from theirs.

What it does as a real API server would: ``uid``/``resourceVersion``/``creationTimestamp``/
``generation`` (custom resources: bumped when anything but metadata and status changes)
on every object, one cluster-wide resourceVersion counter, 409 on a duplicate
create or a stale ``metadata.resourceVersion``, no-op writes that change nothing (no new
resourceVersion, no event), finalizers and ``deletionTimestamp``, the ``status``
subresource (the main resource ignores status, ``/status`` changes only status),
``generateName``, label/field selectors on list and watch, watch replay from a
resourceVersion, 410 Gone after ``compact()`` (watch bookkeeping: ``kube_watch``).

The ``Watcher`` and ``Event`` names are re-exported from ``kube_watch``.
"""

from __future__ import annotations

import base64
import builtins
import copy
import datetime
import random
import string
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from tests.harness import kube_apply, kube_patch, kube_schema, kube_watch
from tests.harness.kube_resources import Catalog, Resource
from tests.harness.kube_watch import Event, Watcher

Key = tuple[Resource, str | None, str]
__all__ = ["Event", "Store", "Watcher", "not_found"]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conflict(resource: Resource, name: str) -> kube_patch.ApiError:
    return kube_patch.ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "kind": resource.plural},
    )


def not_found(resource: Resource, name: str) -> kube_patch.ApiError:
    return kube_patch.ApiError(
        404,
        "NotFound",
        f'{resource.qualified} "{name}" not found',
        {"name": name, "kind": resource.plural},
    )


def _normalise(resource: Resource, obj: dict[str, Any]) -> None:
    """What the server does to a written object: a Secret's ``stringData`` is folded into
    ``data`` (base64) and its ``type`` defaults to Opaque."""
    if resource.builtin and resource.kind == "Secret":
        string_data = obj.pop("stringData", None) or {}
        if not isinstance(string_data, dict):
            raise kube_patch.bad_request("stringData must be an object")
        data = obj.setdefault("data", {}) or {}
        for key, value in string_data.items():
            if not isinstance(value, str):
                raise kube_patch.bad_request(f"stringData[{key}] must be a string")
            data[key] = base64.b64encode(value.encode()).decode()
        obj["data"] = data
        obj.setdefault("type", "Opaque")


def _without_directives(patch: dict[str, Any]) -> dict[str, Any]:
    """A strategic merge patch without its ``$``-keys (``$setElementOrder/...``,
    ``$retainKeys``, ``$patch``): the fake merges lists whole, so they have nothing to do."""
    return {
        key: _without_directives(value) if isinstance(value, dict) else value
        for key, value in patch.items()
        if not key.startswith("$")
    }


class Store:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.lock = threading.RLock()
        self.history = kube_watch.History()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._rv = 0
        self._watchers: list[Watcher] = []

    # --- reading -------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self._objects.get(self._key(resource, namespace, name))
            if obj is None:
                raise not_found(resource, name)
            return copy.deepcopy(obj)

    def list(
        self,
        resource: Resource,
        namespace: str | None,
        labels: str | None = None,
        fields: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        label_ok, field_ok = kube_patch.label_matcher(labels), kube_patch.field_matcher(fields)
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for (res, ns, _), obj in sorted(
                    self._objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
                )
                if res == resource
                and (namespace is None or ns == namespace)
                and label_ok(obj)
                and field_ok(obj)
            ]
            return items, self._rv

    def has_namespace(self, name: str | None) -> bool:
        namespaces = self.catalog.by_url("", "v1", "namespaces")
        with self.lock:
            return namespaces is not None and (namespaces, None, name) in self._objects

    # --- writing -------------------------------------------------------------------------

    def create(
        self,
        resource: Resource,
        namespace: str | None,
        body: Mapping[str, Any],
        *,
        dry_run: bool = False,
        require_namespace: bool = True,
        manager: str | None = None,
    ) -> dict[str, Any]:
        """POST. A namespaced object needs an existing namespace (404 otherwise, as on a
        real server) unless ``require_namespace`` is False. ``manager``: the field manager
        the fields are recorded for (``kube_apply``); None records none."""
        if not isinstance(body, Mapping):
            raise kube_patch.bad_request("the body of a create must be a JSON object")
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise kube_patch.bad_request("metadata must be an object")
        self._check_kind(resource, obj)
        if resource.namespaced:
            given = meta.get("namespace")
            if namespace is None:
                raise kube_patch.ApiError(405, "MethodNotAllowed", "create needs a namespace")
            if given not in (None, "", namespace):
                raise kube_patch.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        with self.lock:
            if resource.namespaced and require_namespace and not self.has_namespace(namespace):
                raise kube_patch.ApiError(
                    404,
                    "NotFound",
                    f'namespaces "{namespace}" not found',
                    {"name": namespace, "kind": "namespaces"},
                )
            if not meta.get("name") and meta.get("generateName"):
                alphabet = string.ascii_lowercase + string.digits
                meta["name"] = meta["generateName"] + "".join(random.choices(alphabet, k=5))
            name = meta.get("name")
            if not name or not isinstance(name, str):
                raise kube_patch.invalid(resource.kind, "", "metadata.name: Required value")
            kube_patch.validate_name(resource.kind, name)
            _normalise(resource, obj)
            obj = kube_schema.admit(resource, obj)
            meta = obj["metadata"]
            kube_patch.validate_object(resource.kind, obj)
            key = self._key(resource, meta.get("namespace"), name)
            if key in self._objects:
                raise kube_patch.ApiError(
                    409,
                    "AlreadyExists",
                    f'{resource.qualified} "{name}" already exists',
                    {"name": name, "kind": resource.plural},
                )
            for field in ("resourceVersion", "deletionTimestamp"):
                meta.pop(field, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            if resource.builtin:
                meta.pop("generation", None)
            else:
                meta["generation"] = 1
            if "status" in resource.subresources and not resource.builtin:
                obj.pop("status", None)
            if manager is not None:
                kube_apply.track(None, obj, manager, resource.api_version)
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return obj
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            self._objects[key] = obj
            self._emit(resource, "ADDED", None, obj)
            return copy.deepcopy(obj)

    def replace(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None = None,
        manager: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PUT. Custom resources need ``metadata.resourceVersion`` (as on a real server);
        built-in kinds accept an unconditional replace."""
        if not isinstance(body, Mapping):
            raise kube_patch.bad_request("the body of a replace must be a JSON object")
        new = copy.deepcopy(dict(body))
        meta = new.setdefault("metadata", {})
        self._check_kind(resource, new)
        if meta.get("name") not in (None, name):
            raise kube_patch.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        with self.lock:
            old = self._current(resource, namespace, name)
            expected = meta.get("resourceVersion")
            if not expected and not resource.builtin:
                raise kube_patch.invalid(
                    resource.kind,
                    name,
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                )
            return self._update(
                resource,
                old,
                new,
                expected=expected,
                subresource=subresource,
                manager=manager,
                dry_run=dry_run,
            )

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        manager: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """``patch_type``: ``merge``, ``json`` or ``strategic`` (built-in kinds only; applied
        as a merge patch here: no list-merge keys, and kubectl's ``$``-directives dropped)."""
        with self.lock:
            old = self._current(resource, namespace, name)
            if patch_type == "json":
                new = kube_patch.json_patch(old, body)
            elif isinstance(body, dict):
                if patch_type == "strategic":
                    body = _without_directives(body)
                new = kube_patch.merge_patch(copy.deepcopy(old), body)
            else:
                raise kube_patch.bad_request(
                    "json: cannot unmarshal array into Go value of type map[string]interface {}"
                )
            if not isinstance(new, dict):
                raise kube_patch.bad_request("a patch must leave an object")
            meta = new.setdefault("metadata", {})
            if meta.get("name") != name:
                raise kube_patch.invalid(resource.kind, name, "metadata.name: field is immutable")
            expected = meta.get("resourceVersion")
            return self._update(
                resource,
                old,
                new,
                expected=expected,
                subresource=subresource,
                manager=manager,
                dry_run=dry_run,
            )

    def apply(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        config: Any,
        *,
        manager: str,
        force: bool,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Server-side apply of ``config`` by ``manager`` (``kube_apply``); creates the
        object when it does not exist. Returns the object and whether it was created."""
        if not isinstance(config, Mapping):
            raise kube_patch.bad_request("the body of an apply must be an object")
        config = copy.deepcopy(dict(config))
        self._check_kind(resource, config)
        meta = config.get("metadata")
        if not isinstance(meta, dict) or meta.get("name") not in (None, name):
            raise kube_patch.bad_request(
                f"the name of the object ({(meta or {}).get('name')}) does not match the name "
                f"on the URL ({name})"
            )
        meta.setdefault("name", name)
        meta.pop("managedFields", None)
        with self.lock:
            existing = self._objects.get(self._key(resource, namespace, name))
            applied = kube_apply.apply(
                existing,
                config,
                manager=manager,
                force=force,
                api_version=resource.api_version,
            )
            if existing is None:
                created = self.create(resource, namespace, applied, dry_run=dry_run)
                return created, True
            expected = config["metadata"].get("resourceVersion")
            updated = self._update(
                resource,
                existing,
                applied,
                expected=expected,
                subresource=subresource,
                manager=None,
                dry_run=dry_run,
            )
            return updated, False

    def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Returns the object and whether it is gone (False: it has finalizers and now
        carries a ``deletionTimestamp``)."""
        with self.lock:
            old = self._current(resource, namespace, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise kube_patch.ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                    f"meta: {old['metadata']['uid']}",
                )
            if (
                pre.get("resourceVersion")
                and pre["resourceVersion"] != old["metadata"]["resourceVersion"]
            ):
                raise _conflict(resource, name)
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return copy.deepcopy(old), False
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = _now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return self._store_modified(resource, old, new), False
            return self._remove(resource, old), True

    def compact(self) -> int:
        """Forget the history: a watch from any resourceVersion before now gets 410 Gone."""
        with self.lock:
            self.history.compact(self._rv)
            return self._rv

    # --- watching ------------------------------------------------------------------------

    def watch(
        self,
        watcher: Watcher,
        *,
        since: str | None,
        initial_events: bool,
    ) -> builtins.list[Event]:
        """Register ``watcher`` and return the events it must see first, atomically: the
        synthetic ADDED of every object (no ``since``, or ``since`` "0"), or the history
        after ``since``, or a 410 ERROR when ``since`` is older than the last ``compact()``."""
        with self.lock:
            events: builtins.list[Event] = []
            if since in (None, "", "0") or initial_events:
                for (res, _, _), obj in sorted(
                    self._objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
                ):
                    if res == watcher.resource and watcher.wants(obj):
                        events.append({"type": "ADDED", "object": copy.deepcopy(obj)})
                if initial_events:
                    events.append(self._bookmark(watcher.resource, initial_end=True))
            else:
                try:
                    start = int(since or 0)
                except ValueError:
                    raise kube_patch.bad_request(f"invalid resource version {since!r}") from None
                replayed = self.history.replay(start, watcher)
                if replayed is None:
                    return [kube_watch.gone(start, self.history.compacted)]
                events.extend(replayed)
            self._watchers.append(watcher)
            return events

    def unwatch(self, watcher: Watcher) -> None:
        with self.lock:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

    def close_watches(self, resource: Resource | None = None) -> int:
        """End open watch streams (as an API server restart or a load balancer would)."""
        with self.lock:
            closing = [w for w in self._watchers if resource is None or w.resource == resource]
            for watcher in closing:
                self._watchers.remove(watcher)
                watcher.deliver(None)
            return len(closing)

    def watcher_count(self, resource: Resource | None = None) -> int:
        with self.lock:
            return sum(1 for w in self._watchers if resource is None or w.resource == resource)

    # --- internals -----------------------------------------------------------------------

    def _bookmark(self, resource: Resource, *, initial_end: bool) -> Event:
        meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": meta},
        }

    def _key(self, resource: Resource, namespace: str | None, name: str) -> Key:
        return (resource, namespace if resource.namespaced else None, name)

    def _current(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._objects.get(self._key(resource, namespace, name))
        if obj is None:
            raise not_found(resource, name)
        return obj

    def _check_kind(self, resource: Resource, obj: dict[str, Any]) -> None:
        kind, api_version = obj.setdefault("kind", resource.kind), obj.get("apiVersion")
        obj["apiVersion"] = api_version or resource.api_version
        if kind != resource.kind or obj["apiVersion"] != resource.api_version:
            raise kube_patch.bad_request(
                f"the API version in the data ({obj['apiVersion']}) and kind ({kind}) do not "
                f"match the expected {resource.api_version} {resource.kind}"
            )

    def _update(
        self,
        resource: Resource,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        expected: str | None,
        subresource: str | None,
        manager: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        name = old["metadata"]["name"]
        if expected and expected != old["metadata"]["resourceVersion"]:
            raise _conflict(resource, name)
        if subresource is not None and subresource not in resource.subresources:
            raise not_found(resource, f"{name}/{subresource}")
        self._check_kind(resource, new)
        meta = new.setdefault("metadata", {})
        for field in ("uid", "creationTimestamp", "namespace", "deletionTimestamp"):
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        meta["name"] = name
        if "status" in resource.subresources:
            if subresource == "status":  # /status changes only the status
                new = {**copy.deepcopy(old), "status": new.get("status")}
                if new["status"] is None:
                    new.pop("status")
                meta = new["metadata"]
            else:  # the main resource keeps the stored status
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
        _normalise(resource, new)
        new = kube_schema.admit(resource, new)
        meta = new["metadata"]
        kube_patch.validate_object(resource.kind, new)
        if old["metadata"].get("deletionTimestamp") and len(meta.get("finalizers") or []) > len(
            old["metadata"].get("finalizers") or []
        ):
            raise kube_patch.invalid(
                resource.kind,
                name,
                "metadata.finalizers: Forbidden: no new finalizers can be "
                "added if the object is being deleted",
            )
        spec_old = {k: v for k, v in old.items() if k not in ("metadata", "status")}
        spec_new = {k: v for k, v in new.items() if k not in ("metadata", "status")}
        if resource.builtin:
            meta.pop("generation", None)
        else:
            meta["generation"] = old["metadata"].get("generation", 1) + (spec_old != spec_new)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if "managedFields" not in meta and "managedFields" in old["metadata"]:
            meta["managedFields"] = copy.deepcopy(old["metadata"]["managedFields"])
        if new == old:  # a no-op write: no new resourceVersion, no event
            return copy.deepcopy(old)
        if manager is not None:
            kube_apply.track(old, new, manager, resource.api_version)
        if dry_run:
            return copy.deepcopy(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(resource, new)
        return self._store_modified(resource, old, new)

    def _store_modified(
        self, resource: Resource, old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        key = self._key(resource, new["metadata"].get("namespace"), new["metadata"]["name"])
        self._objects[key] = new
        self._emit(resource, "MODIFIED", old, new)
        return copy.deepcopy(new)

    def _remove(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        key = self._key(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        del self._objects[key]
        self._rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(resource, "DELETED", obj, gone)
        return copy.deepcopy(gone)

    def _emit(self, resource: Resource, kind: str, old: Any, new: Any) -> None:
        self.history.record(self._rv, resource, kind, old, new)
        watchers = [w for w in self._watchers if w.resource == resource]
        if watchers:
            # one fresh snapshot, shared: the watch streams only serialise it
            snapshot_old, snapshot_new = copy.deepcopy(old), copy.deepcopy(new)
            for watcher in watchers:
                event = watcher.translate(kind, snapshot_old, snapshot_new)
                if event is not None:
                    watcher.deliver(event)
