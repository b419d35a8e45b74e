"""Models shaped like OME's ``config/models`` samples: our CRDs accept them without pruning a
field, and the agent selects and places them as OME's agent does.

Each case is written here from the *shapes* found in OME's ~200 sample files (none is copied):
ClusterBaseModels, ``hf://org/repo`` URIs, ``storage.path`` as ``/raid/models/<vendor>/<name>``,
no nodeSelector (every node the agent runs on: OME's DaemonSet puts it on GPU nodes only),
``vendor``, ``version`` (``"1.0.0"``, ``"1.5.0"``, ``"0.1"``), ``displayName``,
``disabled: false``, preset ``modelCapabilities`` of OME's vocabulary, a preset
``modelFormat``/``modelFramework``/``modelArchitecture``/``modelType``/``modelParameterSize``
on some, ``storage.key: hf-token`` on many; plus the TensorRT-LLM and OCI variants OME's docs
describe.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from model_agent import selection, spec
from tests.unit.test_crds import schema_of

ROOT = "/raid/models"


def sample(name: str, vendor: str, uri: str, **spec_fields: Any) -> dict[str, Any]:
    storage = {"storageUri": uri, "path": f"{ROOT}/{vendor}/{name}"}
    storage.update(spec_fields.pop("storage", {}))
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {
            "vendor": vendor,
            "disabled": False,
            "version": spec_fields.pop("version", "1.0.0"),
            "displayName": f"{vendor}.{name}",
            "storage": storage,
            **spec_fields,
        },
    }


SHAPES = {
    "gated-minimal": sample(
        "llama-tiny-instruct",
        "meta",
        "hf://meta-llama/Tiny-Instruct",
        modelCapabilities=["TEXT_TO_TEXT"],
        storage={"key": "hf-token"},
    ),
    "preset-format-and-size": sample(
        "minicpm-v-tiny",
        "openbmb",
        "hf://openbmb/MiniCPM-V-Tiny",
        modelCapabilities=["IMAGE_TEXT_TO_TEXT"],
        modelFormat={"name": "safetensors", "version": "1.0.0"},
        modelFramework={"name": "transformers", "version": "4.40.0"},
        modelArchitecture="MiniCPMV",
        modelType="MiniCPMV",
        modelParameterSize="8B",
    ),
    "image-to-text": sample(
        "ocr-tiny",
        "rednote-hilab",
        "hf://rednote-hilab/ocr-tiny",
        modelCapabilities=["IMAGE_TO_TEXT"],
    ),
    "embedding": sample(
        "embed-tiny",
        "BAAI",
        "hf://BAAI/embed-tiny",
        modelCapabilities=["TEXT_TO_EMBEDDING"],
        version="1.5.0",
    ),
    "multimodal-embedding": sample(
        "gme-tiny",
        "Alibaba-NLP",
        "hf://Alibaba-NLP/gme-tiny",
        modelCapabilities=["IMAGE_TEXT_TO_EMBEDDING"],
        version="0.1",
    ),
    "video": sample(
        "llava-video-tiny",
        "lmms-lab",
        "hf://lmms-lab/llava-video-tiny",
        modelCapabilities=["VIDEO_TEXT_TO_TEXT", "IMAGE_TEXT_TO_TEXT"],
    ),
    "reward": sample(
        "reward-tiny",
        "skywork",
        "hf://Skywork/reward-tiny",
        modelCapabilities=["REWARD_SCORING"],
        storage={"key": "hf-token"},
    ),
    "tensorrt-llm-oci": sample(
        "llama-trt",
        "meta",
        "oci://n/tenancy/b/engines/o/llama-3-8b/trtllm",
        modelCapabilities=["TEXT_TO_TEXT"],
        modelFormat={"name": "tensorrtllm", "version": "0.11.0"},
        additionalMetadata={"type": "Serving"},
        storage={"parameters": {"auth": "InstancePrincipal", "region": "us-ashburn-1"}},
    ),
    "oci-safetensors": sample(
        "llama-oci",
        "meta",
        "oci://n/tenancy/b/models/o/meta/llama-3-8b",
        modelCapabilities=["TEXT_TO_TEXT"],
        storage={"parameters": {"auth": "InstancePrincipal"}},
    ),
}


def undeclared(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Paths in ``value`` the schema does not declare (a real API server would prune them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        missing: list[str] = []
        for key, item in value.items():
            if properties is not None and key in properties:
                missing += undeclared(item, properties[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                missing += undeclared(item, extra, f"{where}.{key}")
            elif extra is not True:
                missing.append(f"{where}.{key}")
        return missing
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [m for item in value for m in undeclared(item, schema["items"], f"{where}[]")]
    return []


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_sample_shape_validates_against_our_crd_without_pruning(shape: str) -> None:
    body = SHAPES[shape]
    schema = schema_of(body["kind"])
    jsonschema.validate(body, schema)
    assert undeclared(body["spec"], schema["properties"]["spec"], "spec") == []


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_sample_shape_is_placed_at_its_path_on_any_node_the_agent_runs_on(shape: str) -> None:
    body = SHAPES[shape]
    parsed = spec.parse(body, models_root_dir=ROOT)
    assert parsed.path == body["spec"]["storage"]["path"]
    assert parsed.ref.configmap_key == f"clusterbasemodel.{body['metadata']['name']}"
    for labels in ({}, {"nvidia.com/gpu": "true"}, {"node.kubernetes.io/instance-type": "x"}):
        assert parsed.selects(selection.Node(name="gpu-1", labels=labels))
    assert parsed.filters_by_shape == (shape == "tensorrt-llm-oci")
    assert parsed.secret_name == body["spec"]["storage"].get("key")


def test_the_pruning_check_catches_an_undeclared_field() -> None:
    schema = schema_of("ClusterBaseModel")["properties"]["spec"]
    assert undeclared({"vendr": "meta", "storage": {"pth": "/x"}}, schema, "spec") == [
        "spec.vendr",
        "spec.storage.pth",
    ]
