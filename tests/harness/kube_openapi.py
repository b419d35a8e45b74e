"""The OpenAPI v3 documents of the fake Kubernetes API, as ``/openapi/v3`` serves them.

kubectl reads them for three things: whether the server validates fields itself (a PATCH
operation tagged with the kind's ``x-kubernetes-group-version-kind`` that takes the
``fieldValidation`` query parameter: then ``kubectl apply`` sends ``fieldValidation=Strict``
and leaves validation to the server), ``kubectl explain`` (the kind's schema in
``components.schemas``), and the patch metadata of built-in kinds. Custom resources get the
``openAPIV3Schema`` of their CRD in ``manifests/crds/``; built-in kinds a loose schema
(``apiVersion``, ``kind``, ``metadata`` and anything else). Pure: built from the ``Catalog``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tests.harness import kube_schema
from tests.harness.kube_resources import Catalog, Resource

__all__ = ["document", "gv_path", "index"]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_WRITE_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force")

_STRING = {"type": "string"}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}
_OBJECT_META: dict[str, Any] = {
    "description": "Standard object's metadata: name, namespace, labels, annotations, and "
    "the fields the server sets (uid, resourceVersion, generation, managedFields, ...).",
    "type": "object",
    "properties": {
        "name": {**_STRING, "description": "Name, unique within a namespace."},
        "generateName": _STRING,
        "namespace": {**_STRING, "description": "The namespace of a namespaced object."},
        "uid": _STRING,
        "resourceVersion": _STRING,
        "generation": {"type": "integer", "format": "int64"},
        "creationTimestamp": {"type": "string", "format": "date-time"},
        "deletionTimestamp": {"type": "string", "format": "date-time"},
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "labels": {**_STRING_MAP, "description": "Labels: selectable key/value pairs."},
        "annotations": {**_STRING_MAP, "description": "Annotations: unselectable key/values."},
        "finalizers": {"type": "array", "items": _STRING},
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    },
}


def gv_path(group: str, version: str) -> str:
    """The key of a group/version in the index: ``api/v1`` or ``apis/{group}/{version}``."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index(catalog: Catalog) -> dict[str, Any]:
    """``/openapi/v3``: one entry per served group/version, with a content hash in the URL
    (as a real server gives, so that clients may cache by it)."""
    paths: dict[str, Any] = {}
    for group, versions in catalog.groups().items():
        for version in versions:
            key = gv_path(group, version)
            digest = hashlib.sha256(
                json.dumps(document(catalog, group, version), sort_keys=True).encode()
            ).hexdigest()[:16]
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest.upper()}"}
    return {"paths": paths}


def document(catalog: Catalog, group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI 3.0 document of one group/version, None when nothing is served there."""
    served = [r for r in catalog.resources if (r.group, r.version) == (group, version)]
    if not served:
        return None
    schemas: dict[str, Any] = {f"{_META}.ObjectMeta": _OBJECT_META}
    paths: dict[str, Any] = {}
    for res in served:
        schemas[_schema_name(res)] = _kind_schema(res)
        paths.update(_paths(res))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (fake)", "version": "v1.31.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _schema_name(res: Resource) -> str:
    if res.builtin:
        group = res.group.split(".")[0] if res.group else "core"
        return f"io.k8s.api.{group}.{res.version}.{res.kind}"
    reversed_group = ".".join(reversed(res.group.split(".")))
    return f"{reversed_group}.{res.version}.{res.kind}"


def _gvk(res: Resource) -> list[dict[str, str]]:
    return [{"group": res.group, "version": res.version, "kind": res.kind}]


def _kind_schema(res: Resource) -> dict[str, Any]:
    crd_schema = kube_schema.schema_of(res)
    if crd_schema is not None:
        schema = copy.deepcopy(dict(crd_schema))
        properties: dict[str, Any] = schema.setdefault("properties", {})
    else:
        schema = {
            "type": "object",
            "description": f"{res.kind} ({res.api_version}), as the fake API server stores it.",
            "x-kubernetes-preserve-unknown-fields": True,
        }
        properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation.",
    }
    properties["kind"] = {
        "type": "string",
        "description": "Kind is a string value representing the REST resource.",
    }
    properties["metadata"] = {
        "description": "Standard object's metadata.",
        "allOf": [{"$ref": f"#/components/schemas/{_META}.ObjectMeta"}],
    }
    schema["x-kubernetes-group-version-kind"] = _gvk(res)
    return schema


def _operation(res: Resource, action: str, parameters: tuple[str, ...]) -> dict[str, Any]:
    return {
        "description": f"{action} {res.kind}",
        "operationId": f"{action}{res.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(res)[0],
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in parameters
        ],
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{_schema_name(res)}"}
                    }
                },
            }
        },
    }


def _paths(res: Resource) -> Mapping[str, Any]:
    base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    if res.namespaced:
        base += "/namespaces/{namespace}"
    collection, item = f"{base}/{res.plural}", f"{base}/{res.plural}/{{name}}"
    found: dict[str, Any] = {
        collection: {
            "get": _operation(res, "list", ()),
            "post": _operation(res, "post", ("dryRun", "fieldManager", "fieldValidation")),
        },
        item: {
            "get": _operation(res, "get", ()),
            "put": _operation(res, "put", ("dryRun", "fieldManager", "fieldValidation")),
            "patch": _operation(res, "patch", _WRITE_PARAMETERS),
            "delete": _operation(res, "delete", ("dryRun",)),
        },
    }
    for sub in res.subresources:
        found[f"{item}/{sub}"] = {
            "get": _operation(res, "get", ()),
            "put": _operation(res, "put", ("dryRun", "fieldManager", "fieldValidation")),
            "patch": _operation(res, "patch", _WRITE_PARAMETERS),
        }
    return found
