"""Field ownership and server-side apply in the fake Kubernetes API. Pure: no I/O, no state.

What it does as a real API server does: every write records which field manager set which
fields in ``metadata.managedFields`` (``FieldsV1``, operation ``Update`` for create, update
and patch, ``Apply`` for server-side apply; the manager is the ``fieldManager`` query
parameter, else the User-Agent up to its first ``/``); a server-side apply
(``application/apply-patch+yaml``) merges the applied configuration into the object,
removes the fields the same manager applied before and no longer applies (when no other
manager owns them), and fails with 409 naming each field whose value another manager set
differently, unless ``force=true`` takes the fields over. A field two managers set to the
same value is shared. A client that writes ``metadata.managedFields`` itself (kubectl's
client-side to server-side apply migration) has them stored as written.

Simplifications: lists are atomic (owned and merged as a whole; the CRDs in
``manifests/crds/`` declare theirs ``x-kubernetes-list-type: atomic``), and a status
subresource's fields are tracked with the main resource's.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from tests.harness import kube_patch

__all__ = [
    "Path",
    "apply",
    "decode",
    "encode",
    "leaves",
    "manager_from_user_agent",
    "track",
]

Path = tuple[str, ...]
_SERVER_META = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


def manager_from_user_agent(user_agent: str | None) -> str:
    """The default manager name: the User-Agent up to its first ``/`` (as the API server)."""
    return (user_agent or "unknown").split("/")[0][:128] or "unknown"


def leaves(obj: Any, prefix: Path = ()) -> set[Path]:
    """The owned field paths of ``obj``: every leaf (scalar, list, empty map), skipping
    ``apiVersion``, ``kind`` and the metadata the server sets."""
    found: set[Path] = set()
    if isinstance(obj, Mapping) and (obj or not prefix):
        for key, value in obj.items():
            if not prefix and key in ("apiVersion", "kind"):
                continue
            if prefix == ("metadata",) and key in _SERVER_META:
                continue
            found |= leaves(value, (*prefix, str(key)))
    elif prefix:
        found.add(prefix)
    return found


def encode(paths: Iterable[Path]) -> dict[str, Any]:
    """``FieldsV1``: ``{"f:spec": {"f:version": {}}}``."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def decode(fields: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    found: set[Path] = set()
    for key, value in fields.items():
        if not key.startswith("f:"):
            continue
        path = (*prefix, key[2:])
        children = decode(value, path) if isinstance(value, Mapping) else set()
        found |= children or {path}
    return found


def _overlaps(path: Path, owned: Iterable[Path]) -> list[Path]:
    return [o for o in owned if o[: len(path)] == path or path[: len(o)] == o]


def _value(obj: Any, path: Path) -> Any:
    for part in path:
        if not isinstance(obj, Mapping) or part not in obj:
            return _ABSENT
        obj = obj[part]
    return obj


_ABSENT = object()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entries(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return copy.deepcopy(list((obj.get("metadata") or {}).get("managedFields") or []))


def _owned(entry: Mapping[str, Any]) -> set[Path]:
    return decode(entry.get("fieldsV1") or {})


def _store(
    entries: list[dict[str, Any]],
    manager: str,
    operation: str,
    api_version: str,
    paths: set[Path],
) -> list[dict[str, Any]]:
    """``entries`` with the (manager, operation) entry holding ``paths``; empty ones dropped."""
    kept = [e for e in entries if (e.get("manager"), e.get("operation")) != (manager, operation)]
    if paths:
        kept.append(
            {
                "manager": manager,
                "operation": operation,
                "apiVersion": api_version,
                "time": _now(),
                "fieldsType": "FieldsV1",
                "fieldsV1": encode(paths),
            }
        )
    return kept


def _without(entry: dict[str, Any], taken: set[Path]) -> dict[str, Any]:
    owned = {p for p in _owned(entry) if not _overlaps(p, taken)}
    return {**entry, "fieldsV1": encode(owned)}


def track(
    old: Mapping[str, Any] | None, new: dict[str, Any], manager: str, api_version: str
) -> None:
    """Record an ``Update`` by ``manager`` that turned ``old`` (None: a create) into
    ``new``: the fields it changed become its own and no one else's. Changes ``new``."""
    meta = new.setdefault("metadata", {})
    previous = _entries(old or {})
    if old is not None and meta.get("managedFields") not in (None, previous):
        return  # the client wrote managedFields itself: stored as written
    changed = {p for p in leaves(new) if old is None or _value(old, p) != _value(new, p)}
    mine = {
        p
        for e in previous
        if (e.get("manager"), e.get("operation")) == (manager, "Update")
        for p in _owned(e)
    }
    entries = [
        {**e, "fieldsV1": encode({p for p in _owned(e) if _value(new, p) is not _ABSENT})}
        for e in (_without(e, changed) for e in previous)
    ]
    owned_now = {p for p in mine | changed if _value(new, p) is not _ABSENT}
    entries = [e for e in _store(entries, manager, "Update", api_version, owned_now) if _owned(e)]
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


def _conflict(api_version: str, conflicts: list[tuple[str, Path]]) -> kube_patch.ApiError:
    described = [f'conflict with "{m}" using {api_version}: .{".".join(p)}' for m, p in conflicts]
    noun = "conflict" if len(conflicts) == 1 else "conflicts"
    message = f"Apply failed with {len(conflicts)} {noun}: " + "\n".join(described)
    causes = [
        {
            "type": "FieldManagerConflict",
            "message": f'conflict with "{m}" using {api_version}',
            "field": "." + ".".join(p),
        }
        for m, p in conflicts
    ]
    return kube_patch.ApiError(409, "Conflict", message, {"causes": causes})


def _merge(target: dict[str, Any], config: Mapping[str, Any]) -> None:
    for key, value in config.items():
        if isinstance(value, Mapping) and value and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _remove(obj: dict[str, Any], path: Path) -> None:
    parents: list[tuple[dict[str, Any], str]] = []
    node: Any = obj
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        parents.append((node, part))
        node = node[part]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, key in reversed(parents):  # drop maps the removal left empty
        if parent[key] == {}:
            del parent[key]


def apply(
    current: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    *,
    manager: str,
    force: bool,
    api_version: str,
) -> dict[str, Any]:
    """The object after ``manager`` applies ``config`` to ``current`` (None: it does not
    exist yet), with its managedFields; 409 ApiError on conflicts unless ``force``."""
    applied = leaves(config)
    entries = _entries(current or {})
    base: dict[str, Any] = copy.deepcopy(dict(current or {}))
    conflicts: list[tuple[str, Path]] = []
    for entry in entries:
        if entry.get("manager") == manager:
            continue
        for path in sorted(applied):
            if _overlaps(path, _owned(entry)) and _value(base, path) != _value(config, path):
                conflicts.append((str(entry.get("manager")), path))
    if conflicts and not force:
        raise _conflict(api_version, conflicts)
    before = {
        p
        for e in entries
        if (e.get("manager"), e.get("operation")) == (manager, "Apply")
        for p in _owned(e)
    }
    others = {p for e in entries if e.get("manager") != manager for p in _owned(e)}
    for path in before - applied:
        if not _overlaps(path, others):
            _remove(base, path)
    _merge(base, config)
    taken = {p for _, p in conflicts}
    entries = [_without(e, taken) if e.get("manager") != manager else e for e in entries]
    entries = [e for e in _store(entries, manager, "Apply", api_version, applied) if _owned(e)]
    base.setdefault("metadata", {})["managedFields"] = entries
    return base
