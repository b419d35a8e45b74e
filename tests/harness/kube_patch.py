"""Pure helpers of the fake Kubernetes API: JSON merge patch (RFC 7386), JSON patch
(RFC 6902), label and field selectors, object validation, and the API's ``Status`` errors.

No I/O, no state: the store (``kube_store``) and the HTTP layer (``kube``) use these.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from typing import Any


class ApiError(Exception):
    """An error the API answers with a ``Status`` body."""

    def __init__(
        self, status: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message
        self.details = dict(details or {})

    def body(self) -> dict[str, Any]:
        return status_body(self.status, self.reason, self.message, self.details)


def status_body(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, name: str, message: str) -> ApiError:
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {message}', {"name": name})


# --- patches -------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise ApiError(422, "Invalid", f"doc is missing path: {path!r}")
    return doc


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise ApiError(422, "Invalid", f"index out of range in {path!r}")
    else:
        raise ApiError(422, "Invalid", f"doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise ApiError(422, "Invalid", "cannot remove the whole document")
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return doc, parent.pop(int(last))
    raise ApiError(422, "Invalid", f"unable to remove nonexistent key: {path!r}")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 on a copy of ``target``. A body that is not a list is a 400, as on a real
    API server (``json: cannot unmarshal object into Go value of type jsonpatch.Patch``)."""
    if not isinstance(operations, list):
        kind = "object" if isinstance(operations, dict) else type(operations).__name__
        raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid JSON patch operation: {op!r}")
        name, path = op["op"], op["path"]
        if name in ("add", "replace", "test") and "value" not in op:
            raise ApiError(422, "Invalid", f"{name} operation has no value: {op!r}")
        if name == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif name == "remove":
            doc, _ = _remove(doc, path)
        elif name == "replace":
            doc, _ = _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif name == "move":
            doc, value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif name == "copy":
            doc = _add(doc, path, copy.deepcopy(_walk(doc, _pointer(op["from"]), op["from"])))
        elif name == "test":
            if _walk(doc, _pointer(path), path) != op["value"]:
                raise ApiError(422, "Invalid", f"testing value {path} failed: test failed")
        else:
            raise bad_request(f"unexpected JSON patch operation {name!r}")
    return doc


# --- selectors -----------------------------------------------------------------------------

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_RE = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([^\s!=]+)\s*(==|=|!=)\s*([^\s,]*)\s*$")


def _split(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _parse_label_requirement(req: str) -> tuple[str, str, frozenset[str]]:
    """(key, operator, values) with operator one of in, notin, exists, absent."""
    if m := _SET_RE.match(req):
        values = frozenset(v.strip() for v in m.group(3).split(","))
        return m.group(1), m.group(2), values
    if m := _EQ_RE.match(req):
        key, op, value = m.groups()
        return key, "notin" if op == "!=" else "in", frozenset({value})
    if re.fullmatch(r"![^\s!=(),]+", req):
        return req[1:], "absent", frozenset()
    if re.fullmatch(r"[^\s!=(),]+", req):
        return req, "exists", frozenset()
    raise bad_request(f"unable to parse requirement: {req!r} in labelSelector")


def _label_ok(labels: Mapping[str, str], key: str, op: str, values: frozenset[str]) -> bool:
    if op == "in":
        return labels.get(key) in values
    if op == "notin":
        return labels.get(key) not in values
    if op == "exists":
        return key in labels
    return key not in labels


def label_matcher(selector: str | None) -> Matcher:
    """``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, ANDed."""
    requirements = [_parse_label_requirement(req) for req in _split(selector or "")]

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(_label_ok(labels, key, op, values) for key, op, values in requirements)

    return matches


def field_value(obj: Mapping[str, Any], path: str) -> str | None:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def field_matcher(selector: str | None) -> Matcher:
    """``metadata.name=x``, ``metadata.namespace!=y``, any dotted path with ``=``/``==``/``!=``."""
    requirements: list[tuple[str, bool, str]] = []
    for req in _split(selector or ""):
        m = _EQ_RE.match(req)
        if not m:
            raise bad_request(f"invalid field selector: {req!r}")
        path, op, value = m.groups()
        requirements.append((path, op != "!=", value))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all(
            ((field_value(obj, path) or "") == value) is equal
            for path, equal, value in requirements
        )

    return matches


# --- validation ----------------------------------------------------------------------------

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
CONFIGMAP_MAX_BYTES = 1024 * 1024
ANNOTATIONS_MAX_BYTES = 256 * 1024


def validate_name(kind: str, name: str) -> None:
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise invalid(
            kind,
            name,
            f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must "
            "consist of lower case alphanumeric characters, '-' or '.'",
        )


def _label_problem(key: str, value: Any) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"metadata.labels: Invalid value: {key!r}: prefix part must be a DNS subdomain"
    if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            f"metadata.labels: Invalid value: {key!r}: name part must be no more than 63 "
            "characters, alphanumeric, '-', '_' or '.', starting and ending alphanumeric"
        )
    if not isinstance(value, str):
        return f"metadata.labels: Invalid value: {value!r}: label values must be strings"
    if value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
        return (
            f"metadata.labels: Invalid value: {value!r}: a valid label must be an empty string "
            "or no more than 63 alphanumeric characters, '-', '_' or '.'"
        )
    return None


def validate_object(kind: str, obj: Mapping[str, Any]) -> None:
    """The checks a real API server makes that the agent can trip over: label syntax and
    length, annotation size, ConfigMap keys, value types, the 1 MiB ConfigMap limit and
    the namespace rules of Events."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    if kind == "Event":
        validate_event(obj)
    for key, value in (meta.get("labels") or {}).items():
        problem = _label_problem(key, value)
        if problem:
            raise invalid(kind, name, problem)
    annotations = meta.get("annotations") or {}
    if any(not isinstance(v, str) for v in annotations.values()):
        raise invalid(kind, name, "metadata.annotations: values must be strings")
    if sum(len(k) + len(v) for k, v in annotations.items()) > ANNOTATIONS_MAX_BYTES:
        raise invalid(kind, name, "metadata.annotations: Too long: must have at most 262144 bytes")
    if kind in ("ConfigMap", "Secret"):
        size = 0
        for field in ("data", "binaryData", "stringData"):
            for key, value in (obj.get(field) or {}).items():
                if len(key) > 253 or not _CONFIG_KEY.fullmatch(key):
                    raise invalid(
                        kind,
                        name,
                        f"{field}[{key}]: Invalid value: {key!r}: a valid config key "
                        "must consist of alphanumeric characters, '-', '_' or '.'",
                    )
                if not isinstance(value, str):
                    raise bad_request(
                        f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                        f"{kind}.{field} of type string"
                    )
                size += len(key) + len(value.encode())
        if kind == "ConfigMap" and size > CONFIGMAP_MAX_BYTES:
            raise invalid(kind, name, "[]: Too long: must have at most 1048576 bytes")


def validate_event(obj: Mapping[str, Any]) -> None:
    """The API server's Event rules (legacyValidateEvent, and the events.k8s.io/v1 ones):
    the event's namespace must match the involved object's, and an event about a
    cluster-scoped object (no involved namespace) lives in ``default`` (or ``kube-system``
    for events with ``eventTime``). New-style events need a reporting controller and
    instance, an action and a reason."""
    meta = obj.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), meta.get("namespace") or ""
    core = obj.get("apiVersion") == "v1"
    ref_field = "involvedObject" if core else "regarding"
    controller_field = "reportingComponent" if core else "reportingController"
    involved = (obj.get(ref_field) or {}).get("namespace") or ""
    if not obj.get("eventTime"):
        if not core:
            raise invalid("Event", name, "eventTime: Required value")
        if (involved == "" and namespace not in ("", "default")) or (
            involved != "" and involved != namespace
        ):
            raise invalid(
                "Event",
                name,
                f"{ref_field}.namespace: Invalid value: {involved!r}: does not "
                "match event.namespace",
            )
        return
    if involved == "" and namespace not in ("default", "kube-system"):
        raise invalid(
            "Event",
            name,
            f'{ref_field}.namespace: Invalid value: "": does not match event.namespace',
        )
    for field in (controller_field, "reportingInstance", "action", "reason"):
        value = obj.get(field)
        if not value:
            raise invalid("Event", name, f"{field}: Required value")
        if len(str(value)) > 128:
            raise invalid("Event", name, f"{field}: Too long: may not be more than 128 bytes")
