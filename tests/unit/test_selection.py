"""Node selection as Kubernetes defines it, as a pure function of a node snapshot.

Aspects: nodeSelector (all pairs must match); required nodeAffinity with every operator (In,
NotIn, Exists, DoesNotExist, Gt, Lt); terms ORed, expressions ANDed; matchFields on
metadata.name; empty terms match nothing; preferred affinity ignored; validation errors name
the field (bad operator, values that do not fit the operator, huge selectors).
"""

from __future__ import annotations

import pytest

from model_agent import errors, selection

NODE = selection.Node(
    name="node-a",
    labels={"gpu": "h100", "zone": "z1", "gpus": "8", "pool": "inference"},
)


def expr(key, operator, *values):
    item = {"key": key, "operator": operator}
    if values:
        item["values"] = list(values)
    return item


def affinity(*terms):
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
        }
    }


@pytest.mark.parametrize(
    ("storage", "selected"),
    [
        ({}, True),
        ({"nodeSelector": {"gpu": "h100"}}, True),
        ({"nodeSelector": {"gpu": "h100", "zone": "z1"}}, True),
        ({"nodeSelector": {"gpu": "h100", "zone": "z2"}}, False),
        ({"nodeSelector": {"missing": ""}}, False),
        (affinity({"matchExpressions": [expr("gpu", "In", "a100", "h100")]}), True),
        (affinity({"matchExpressions": [expr("gpu", "In", "a100")]}), False),
        (affinity({"matchExpressions": [expr("gpu", "NotIn", "a100")]}), True),
        (affinity({"matchExpressions": [expr("gpu", "NotIn", "h100")]}), False),
        (affinity({"matchExpressions": [expr("absent", "NotIn", "x")]}), True),
        (affinity({"matchExpressions": [expr("zone", "Exists")]}), True),
        (affinity({"matchExpressions": [expr("absent", "Exists")]}), False),
        (affinity({"matchExpressions": [expr("absent", "DoesNotExist")]}), True),
        (affinity({"matchExpressions": [expr("zone", "DoesNotExist")]}), False),
        (affinity({"matchExpressions": [expr("gpus", "Gt", "4")]}), True),
        (affinity({"matchExpressions": [expr("gpus", "Gt", "8")]}), False),
        (affinity({"matchExpressions": [expr("gpus", "Lt", "10")]}), True),
        (affinity({"matchExpressions": [expr("gpus", "Lt", "8")]}), False),
        (affinity({"matchExpressions": [expr("gpu", "Gt", "1")]}), False),  # not an integer
        (affinity({"matchExpressions": [expr("absent", "Lt", "1")]}), False),
        # expressions ANDed
        (
            affinity({"matchExpressions": [expr("gpu", "In", "h100"), expr("zone", "In", "z2")]}),
            False,
        ),
        # terms ORed
        (
            affinity(
                {"matchExpressions": [expr("zone", "In", "z2")]},
                {"matchExpressions": [expr("gpu", "In", "h100")]},
            ),
            True,
        ),
        (affinity({"matchFields": [expr("metadata.name", "In", "node-a")]}), True),
        (affinity({"matchFields": [expr("metadata.name", "NotIn", "node-a")]}), False),
        (
            affinity(
                {
                    "matchExpressions": [expr("gpu", "In", "h100")],
                    "matchFields": [expr("metadata.name", "In", "node-b")],
                }
            ),
            False,
        ),
        (affinity({}), False),  # an empty term matches nothing
        # a required affinity with no terms matches no node (Kubernetes' NodeSelector.Match)
        (affinity(), False),
        (
            {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
            False,
        ),
        ({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}, True),
        # nodeSelector and affinity both apply
        (
            {"nodeSelector": {"gpu": "a100"}}
            | affinity({"matchExpressions": [expr("gpu", "Exists")]}),
            False,
        ),
    ],
)
def test_selection_follows_kubernetes_semantics(storage, selected):
    assert selection.matches(selection.parse(storage), NODE) is selected


def test_a_label_change_changes_the_answer_without_reparsing():
    parsed = selection.parse({"nodeSelector": {"pool": "batch"}})
    assert not selection.matches(parsed, NODE)
    relabelled = selection.Node(name="node-a", labels={**NODE.labels, "pool": "batch"})
    assert selection.matches(parsed, relabelled)


@pytest.mark.parametrize(
    ("storage", "field"),
    [
        (
            affinity({"matchExpressions": [expr("gpu", "Like", "h")]}),
            "matchExpressions[0].operator",
        ),
        (affinity({"matchExpressions": [expr("gpu", "In")]}), "matchExpressions[0].values"),
        (affinity({"matchExpressions": [expr("gpu", "Exists", "x")]}), ".values"),
        (affinity({"matchExpressions": [expr("gpu", "Gt", "1", "2")]}), ".values"),
        (affinity({"matchExpressions": [expr("gpu", "Lt", "ten")]}), ".values"),
        (affinity({"matchFields": [expr("metadata.uid", "In", "x")]}), "matchFields[0].key"),
        (affinity({"matchFields": [expr("metadata.name", "Exists")]}), "matchFields[0].operator"),
        (affinity("term"), "nodeSelectorTerms[0]"),
        ({"nodeSelector": ["gpu"]}, "spec.storage.nodeSelector"),
        ({"nodeSelector": {"gpu": 1}}, "spec.storage.nodeSelector[gpu]"),
        ({"nodeSelector": {f"k{i}": "v" for i in range(65)}}, "65 entries"),
        (affinity(*[{"matchExpressions": [expr("a", "Exists")]}] * 33), "33 terms"),
    ],
)
def test_invalid_selectors_are_rejected_naming_the_field(storage, field):
    with pytest.raises(errors.InvalidSpecError) as caught:
        selection.parse(storage)
    assert field in str(caught.value)
