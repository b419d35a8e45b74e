"""``meta.k8s.io/v1`` Table responses of the fake Kubernetes API, as ``kubectl get`` asks for
them (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``, on a get, a list or a
watch, whose events then carry one-row Tables): a custom resource gets the
NAME column and the ``additionalPrinterColumns`` of its CRD version (``date`` columns as an
age, ``[*]`` paths joined by commas), a built-in kind NAME and AGE. Each row carries the
object's metadata (``includeObject=Metadata``, the default), the whole object
(``Object``) or nothing (``None``). Pure.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tests.harness.kube_resources import Resource

__all__ = ["age", "cell", "columns", "table", "wants_table"]

_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
_AGE = {
    "name": "Age",
    "type": "date",
    "format": "",
    "description": "The time since the object was created.",
    "priority": 0,
    "jsonPath": ".metadata.creationTimestamp",
}
_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\*|\d+)\]")


def wants_table(accept: str | None) -> bool:
    """Whether the Accept header asks for a Table first (kubectl's printing path)."""
    first = (accept or "").split(",")[0]
    return "as=Table" in first.replace(" ", "")


def columns(res: Resource) -> list[dict[str, Any]]:
    """The column definitions of ``res`` (each with the ``jsonPath`` it reads)."""
    if res.crd is None:
        return [dict(_NAME), dict(_AGE)]
    for version in res.crd["spec"]["versions"]:
        if version["name"] == res.version and version.get("additionalPrinterColumns"):
            found = [dict(_NAME)]
            for column in version["additionalPrinterColumns"]:
                found.append(
                    {
                        "name": column["name"],
                        "type": column.get("type", "string"),
                        "format": column.get("format", ""),
                        "description": column.get("description", ""),
                        "priority": column.get("priority", 0),
                        "jsonPath": column["jsonPath"],
                    }
                )
            return found
    return [dict(_NAME), dict(_AGE)]


def _values(obj: Any, path: str) -> list[Any]:
    """Evaluate a printer-column JSONPath (``.a.b``, ``.a[*]``, ``.a[0].b``)."""
    current = [obj]
    for match in _SEGMENT.finditer(path):
        key, index = match.groups()
        following: list[Any] = []
        for value in current:
            if key is not None and isinstance(value, Mapping) and key in value:
                following.append(value[key])
            elif index == "*" and isinstance(value, list):
                following.extend(value)
            elif index is not None and index != "*" and isinstance(value, list):
                if int(index) < len(value):
                    following.append(value[int(index)])
        current = following
    return [v for v in current if v is not None]


def age(timestamp: str, now: datetime.datetime | None = None) -> str:
    """kubectl's short age: ``45s``, ``12m``, ``5h``, ``3d``."""
    when = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = max(0, int(((now or datetime.datetime.now(datetime.UTC)) - when).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def cell(obj: Mapping[str, Any], column: Mapping[str, Any]) -> Any:
    """One cell: the name, the column's value, an age for dates, None when absent."""
    if column.get("format") == "name":
        return obj.get("metadata", {}).get("name", "")
    values = _values(obj, column["jsonPath"])
    if not values:
        return None
    if column["type"] == "date" and isinstance(values[0], str):
        return age(values[0])
    if len(values) > 1 or isinstance(values[0], Mapping | list):
        return ",".join(v if isinstance(v, str) else str(v) for v in values)
    return values[0]


def _row_object(res: Resource, obj: Mapping[str, Any], include: str) -> Any:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    res: Resource,
    items: Sequence[Mapping[str, Any]],
    *,
    metadata: Mapping[str, Any],
    include: str = "Metadata",
    headers: bool = True,
) -> dict[str, Any]:
    """A Table of ``items`` (one object for a GET of one, all for a list); ``headers=False``
    leaves the column definitions out (the later events of a watch)."""
    defs = columns(res)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(metadata),
        "columnDefinitions": [
            {k: v for k, v in c.items() if k != "jsonPath"} for c in defs if headers
        ],
        "rows": [
            {
                "cells": [cell(obj, c) for c in defs],
                "object": _row_object(res, obj, include),
            }
            for obj in items
        ],
    }
