"""Structural-schema handling of custom resources, as the API server applies a CRD's
``openAPIV3Schema`` on every write: unknown fields are pruned (unless
``x-kubernetes-preserve-unknown-fields``), ``default`` values are filled in, and the result
is validated (422 naming the field). Pure: no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from tests.harness import kube_patch
from tests.harness.kube_resources import Resource

_ROOT_KEEP = ("apiVersion", "kind", "metadata")


def schema_of(resource: Resource) -> Mapping[str, Any] | None:
    if resource.crd is None:
        return None
    for version in resource.crd["spec"]["versions"]:
        if version["name"] == resource.version:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            return schema if isinstance(schema, Mapping) else None
    return None


def prune(value: Any, schema: Mapping[str, Any], *, root: bool = False) -> Any:
    """``value`` without the fields ``schema`` does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        result: dict[str, Any] = {}
        for key, item in value.items():
            if root and key in _ROOT_KEEP:
                result[key] = item
            elif properties is not None and key in properties:
                result[key] = prune(item, properties[key])
            elif isinstance(additional, Mapping):
                result[key] = prune(item, additional)
            elif additional is True or (properties is None and additional is None):
                result[key] = item
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune(item, schema["items"]) for item in value]
    return value


def unknown_fields(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """The dotted paths of the fields of ``value`` that ``schema`` does not declare (what
    ``prune`` drops; ``fieldValidation=Strict`` rejects them instead)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not path and key in _ROOT_KEEP:
                continue
            if properties is not None and key in properties:
                found.extend(unknown_fields(item, properties[key], where))
            elif isinstance(additional, Mapping):
                found.extend(unknown_fields(item, additional, where))
            elif not (additional is True or (properties is None and additional is None)):
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            found.extend(unknown_fields(item, schema["items"], f"{path}[{i}]"))
    return found


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with every absent property that has a ``default`` filled in."""
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key in value:
                if key not in (schema.get("properties") or {}):
                    value[key] = apply_defaults(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def admit(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """Prune, default and validate a custom resource; 422 naming the first bad field."""
    schema = schema_of(resource)
    if schema is None:
        return obj
    result = apply_defaults(prune(obj, schema, root=True), schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(result), key=lambda e: list(e.path)
    )
    if errors:
        error = errors[0]
        path = ".".join(str(p) for p in error.path) or "<root>"
        name = str((obj.get("metadata") or {}).get("name", ""))
        raise kube_patch.ApiError(
            422,
            "Invalid",
            f'{resource.kind}.{resource.group} "{name}" is invalid: {path}: {error.message}',
            {"name": name, "group": resource.group, "kind": resource.kind},
        )
    return dict(result)
