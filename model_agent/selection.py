"""Which nodes hold a model: ``spec.storage.nodeSelector`` and required ``nodeAffinity``.

Pure: parsing of the selector fields into typed values (``InvalidSpecError`` naming the field)
and one function, ``matches``, of a fresh snapshot of the node. Kubernetes semantics: every
nodeSelector pair must match; affinity terms are ORed, the requirements inside a term ANDed;
``matchFields`` supports ``metadata.name``; Gt/Lt compare integers; a term with no
requirement, or a required affinity with no terms, matches nothing. Whether a storage scheme
is handled at all (``pvc://`` never is) is decided by ``spec``, not here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from model_agent import errors

__all__ = [
    "OPERATORS",
    "Node",
    "Requirement",
    "Selection",
    "Term",
    "matches",
    "parse",
]

OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"})
_FIELD_OPERATORS = frozenset({"In", "NotIn"})
_FIELDS = frozenset({"metadata.name"})

#: Bounds that keep a hostile spec from costing memory or CPU on every node.
MAX_SELECTOR_ENTRIES = 64
MAX_TERMS = 32
MAX_REQUIREMENTS = 64
MAX_VALUES = 256
_MAX_KEY, _MAX_VALUE = 317, 63
_INT_RE = re.compile(r"^[+-]?\d{1,18}$")


@dataclasses.dataclass(frozen=True)
class Node:
    """The facts selection needs about the own Node."""

    name: str
    labels: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Term:
    match_expressions: tuple[Requirement, ...] = ()
    match_fields: tuple[Requirement, ...] = ()


@dataclasses.dataclass(frozen=True)
class Selection:
    """nodeSelector pairs and the required affinity terms (None: no affinity given)."""

    node_selector: tuple[tuple[str, str], ...] = ()
    terms: tuple[Term, ...] | None = None


def _bad(field: str, why: str) -> errors.InvalidSpecError:
    return errors.InvalidSpecError(f"{field}: {why}")


def _parse_selector(value: Any, field: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise _bad(field, "must be a map of label to value")
    if len(value) > MAX_SELECTOR_ENTRIES:
        raise _bad(field, f"has {len(value)} entries; at most {MAX_SELECTOR_ENTRIES} allowed")
    pairs = []
    for key, val in value.items():
        if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
            raise _bad(field, f"invalid label key {str(key)[:80]!r}")
        if not isinstance(val, str) or len(val) > _MAX_VALUE:
            raise _bad(f"{field}[{key}]", "must be a label value of at most 63 characters")
        pairs.append((key, val))
    return tuple(sorted(pairs))


def _parse_requirement(value: Any, field: str, *, is_field: bool) -> Requirement:
    if not isinstance(value, Mapping):
        raise _bad(field, "must be an object with key, operator and values")
    key, operator, values = value.get("key"), value.get("operator"), value.get("values")
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
        raise _bad(f"{field}.key", "must be a non-empty label key")
    allowed = _FIELD_OPERATORS if is_field else OPERATORS
    if operator not in allowed:
        raise _bad(f"{field}.operator", f"{operator!r} is not one of {', '.join(sorted(allowed))}")
    if is_field and key not in _FIELDS:
        raise _bad(f"{field}.key", f"{key!r} is not a supported field (metadata.name)")
    if values is None:
        values = []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _bad(f"{field}.values", "must be a list of strings")
    if len(values) > MAX_VALUES:
        raise _bad(f"{field}.values", f"has {len(values)} values; at most {MAX_VALUES} allowed")
    if operator in ("In", "NotIn") and not values:
        raise _bad(f"{field}.values", f"must not be empty for operator {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise _bad(f"{field}.values", f"must be empty for operator {operator}")
    if operator in ("Gt", "Lt") and (len(values) != 1 or not _INT_RE.match(values[0])):
        raise _bad(f"{field}.values", f"must be exactly one integer for operator {operator}")
    return Requirement(key=key, operator=operator, values=tuple(values))


def _parse_list(value: Any, field: str, *, is_field: bool) -> tuple[Requirement, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _bad(field, "must be a list")
    if len(value) > MAX_REQUIREMENTS:
        raise _bad(field, f"has {len(value)} requirements; at most {MAX_REQUIREMENTS} allowed")
    return tuple(
        _parse_requirement(item, f"{field}[{i}]", is_field=is_field) for i, item in enumerate(value)
    )


def _parse_affinity(value: Any, field: str) -> tuple[Term, ...] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _bad(field, "must be an object (core/v1 NodeAffinity)")
    required = value.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return None  # only the required part counts; preferences are for the scheduler
    field = f"{field}.requiredDuringSchedulingIgnoredDuringExecution"
    if not isinstance(required, Mapping):
        raise _bad(field, "must be an object with nodeSelectorTerms")
    terms = required.get("nodeSelectorTerms") or []
    field = f"{field}.nodeSelectorTerms"
    if not isinstance(terms, list):
        raise _bad(field, "must be a list")
    if len(terms) > MAX_TERMS:
        raise _bad(field, f"has {len(terms)} terms; at most {MAX_TERMS} allowed")
    parsed = []
    for i, term in enumerate(terms):
        if not isinstance(term, Mapping):
            raise _bad(f"{field}[{i}]", "must be an object")
        parsed.append(
            Term(
                match_expressions=_parse_list(
                    term.get("matchExpressions"), f"{field}[{i}].matchExpressions", is_field=False
                ),
                match_fields=_parse_list(
                    term.get("matchFields"), f"{field}[{i}].matchFields", is_field=True
                ),
            )
        )
    return tuple(parsed)  # no terms: a required affinity that nothing satisfies


def parse(storage: Mapping[str, Any], field: str = "spec.storage") -> Selection:
    """Parse ``nodeSelector`` and ``nodeAffinity`` of a storage spec."""
    return Selection(
        node_selector=_parse_selector(storage.get("nodeSelector"), f"{field}.nodeSelector"),
        terms=_parse_affinity(storage.get("nodeAffinity"), f"{field}.nodeAffinity"),
    )


def _requirement_holds(req: Requirement, value: str | None) -> bool:
    if req.operator == "Exists":
        return value is not None
    if req.operator == "DoesNotExist":
        return value is None
    if req.operator == "In":
        return value is not None and value in req.values
    if req.operator == "NotIn":
        return value is None or value not in req.values
    if value is None or not _INT_RE.match(value):
        return False  # Gt/Lt on a missing or non-integer label never match
    if req.operator == "Gt":
        return int(value) > int(req.values[0])
    return int(value) < int(req.values[0])  # Lt


def _term_holds(term: Term, node: Node) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False
    return all(
        _requirement_holds(r, node.labels.get(r.key)) for r in term.match_expressions
    ) and all(_requirement_holds(r, node.name) for r in term.match_fields)


def matches(selection: Selection, node: Node) -> bool:
    """Whether the node is selected: every nodeSelector pair and at least one affinity term."""
    if any(node.labels.get(k) != v for k, v in selection.node_selector):
        return False
    if selection.terms is None:
        return True
    return any(_term_holds(term, node) for term in selection.terms)
