"""CRDs and examples: the YAML in manifests/ loads, the two CRDs differ only in identity, every
CONTRACT spec field is declared, and every model example validates against its CRD's schema."""

from __future__ import annotations

import pathlib
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRDS = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / "manifests" / "crds").glob("*.yaml")}
#: The model examples (other examples, such as the NetworkPolicy, are Kubernetes objects that
#: tests/unit/test_manifests.py validates against the Kubernetes schema).
EXAMPLES = sorted(
    path
    for path in (ROOT / "manifests" / "examples").glob("*.yaml")
    if yaml.safe_load(path.read_text())["kind"] in ("BaseModel", "ClusterBaseModel")
)

CONTRACT_SPEC_FIELDS = {
    "modelFormat",
    "modelType",
    "modelFramework",
    "modelArchitecture",
    "quantization",
    "modelParameterSize",
    "modelCapabilities",
    "apiCapabilities",
    "modelConfiguration",
    "storage",
    "displayName",
    "version",
    "disabled",
    "vendor",
    "compartmentID",
    "servingMode",
    "maxTokens",
    "diffusionPipeline",
    "additionalMetadata",
}
CONTRACT_STORAGE_FIELDS = {
    "storageUri",
    "path",
    "schemaPath",
    "parameters",
    "key",
    "nodeSelector",
    "nodeAffinity",
    "downloadPolicy",
}


def schema_of(kind: str) -> dict[str, Any]:
    for crd in CRDS.values():
        if crd["spec"]["names"]["kind"] == kind:
            version = crd["spec"]["versions"][0]
            assert version["name"] == "v1beta1"
            return dict(version["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD for {kind}")


def test_both_crds_exist_with_status_subresource() -> None:
    kinds = {c["spec"]["names"]["kind"]: c for c in CRDS.values()}
    assert set(kinds) == {"BaseModel", "ClusterBaseModel"}
    assert kinds["BaseModel"]["spec"]["scope"] == "Namespaced"
    assert kinds["ClusterBaseModel"]["spec"]["scope"] == "Cluster"
    for crd in kinds.values():
        assert crd["spec"]["group"] == "ome.io"
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_crds_share_one_schema() -> None:
    assert schema_of("BaseModel") == schema_of("ClusterBaseModel")


def test_every_contract_field_is_declared() -> None:
    spec = schema_of("BaseModel")["properties"]["spec"]
    assert CONTRACT_SPEC_FIELDS <= set(spec["properties"])
    assert spec["required"] == ["storage"]
    storage = spec["properties"]["storage"]
    assert CONTRACT_STORAGE_FIELDS <= set(storage["properties"])
    assert storage["required"] == ["storageUri"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_against_its_crd(path: pathlib.Path) -> None:
    example = yaml.safe_load(path.read_text())
    assert example["apiVersion"] == "ome.io/v1beta1"
    jsonschema.validate(example, schema_of(example["kind"]))


def test_schema_rejects_a_model_without_storage_uri() -> None:
    bad = {"apiVersion": "ome.io/v1beta1", "kind": "BaseModel", "spec": {"storage": {"path": "/x"}}}
    with pytest.raises(jsonschema.ValidationError, match="storageUri"):
        jsonschema.validate(bad, schema_of("BaseModel"))


def test_schema_rejects_an_unknown_download_policy() -> None:
    bad = {"spec": {"storage": {"storageUri": "hf://a/b", "downloadPolicy": "Sometimes"}}}
    with pytest.raises(jsonschema.ValidationError, match="Sometimes"):
        jsonschema.validate(bad, schema_of("ClusterBaseModel"))
