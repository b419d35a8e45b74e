"""The spec fields the write-back fills: OME's fields, OME's values, unset fields only.

Written from OME's ``updateModelSpec`` and ``extractModelMetadataFromHF``
(pkg/modelagent/config_parser.go): safetensors 1.0.0 and transformers for every Transformers
checkpoint, diffusers and its version for a pipeline, quantization only ``int4``/``fp8`` by a
substring of ``quant_method``, a set ``modelFormat`` is one with a name.
"""

from __future__ import annotations

from typing import Any

import pytest

from model_agent.modelinfo import specfill


def config(**decoded: Any) -> dict[str, Any]:
    base = {
        "model_type": "llama",
        "architecture": "LlamaForCausalLM",
        "context_length": 8192,
        "parameter_count": "8.03B",
        "has_vision": False,
        "is_embedding": False,
        "transformers_version": "4.43.0",
        "torch_dtype": "bfloat16",
        "model_size_bytes": 16_060_000_000,
        "parameter_count_exact": 8_030_261_248,
    }
    base.update(decoded)
    return {
        "modelType": "llama",
        "modelArchitecture": "LlamaForCausalLM",
        "modelFramework": {"name": "transformers", "version": "4.43.0"},
        "modelFormat": {"name": "safetensors", "version": "1.0.0"},
        "modelParameterSize": "8.03B",
        "maxTokens": 8192,
        "modelCapabilities": ["TEXT_TO_TEXT"],
        "quantization": "int8",
        "decodedModelConfiguration": base,
    }


def test_every_unset_field_gets_omes_value() -> None:
    filled = specfill.fill({}, config())
    assert filled == {
        "modelType": "llama",
        "modelArchitecture": "LlamaForCausalLM",
        "modelFramework": {"name": "transformers", "version": "4.43.0"},
        "modelFormat": {"name": "safetensors", "version": "1.0.0"},
        "modelParameterSize": "8.03B",
        "maxTokens": 8192,
        "modelCapabilities": ["TEXT_TO_TEXT"],
        "modelConfiguration": {
            "model_type": "llama",
            "architecture": "LlamaForCausalLM",
            "context_length": 8192,
            "parameter_count": "8.03B",
            "has_vision": False,
            "is_embedding": False,
            "transformers_version": "4.43.0",
            "torch_dtype": "bfloat16",
            "model_size_bytes": 16_060_000_000,
        },
    }
    assert "quantization" not in filled  # the ConfigMap's int8 is not OME's vocabulary


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("fp8", "fp8"),
        ("fbgemm_fp8", "fp8"),
        ("FP8", "fp8"),
        ("w4a16_int4", "int4"),
        ("awq", None),
        ("gptq", None),
        ("compressed-tensors", None),
        ("bitsandbytes", None),
        ("", None),
    ],
)
def test_quantization_is_omes_substring_rule_on_quant_method(
    method: str, expected: str | None
) -> None:
    filled = specfill.fill({}, config(quantization_method=method))
    assert filled.get("quantization") == expected


def test_a_set_field_is_never_changed_and_a_complete_spec_needs_no_write() -> None:
    spec = {
        "modelType": "custom",
        "modelFormat": {"name": "safetensors"},
        "modelCapabilities": ["TEXT_TO_EMBEDDING"],
        "quantization": "int4",
    }
    filled = specfill.fill(spec, config(quantization_method="fp8"))
    assert not {"modelType", "modelFormat", "modelCapabilities", "quantization"} & set(filled)
    assert specfill.fill({**spec, **filled}, config(quantization_method="fp8")) == {}


def test_a_model_format_without_a_name_counts_as_unset_as_in_ome() -> None:
    filled = specfill.fill({"modelFormat": {"version": "2"}}, config())
    assert filled["modelFormat"] == {"name": "safetensors", "version": "1.0.0"}


def test_a_failed_analysis_writes_nothing() -> None:
    assert specfill.fill({}, {"analysisError": "x: bad", "artifact": {}}) == {}


def test_a_diffusers_pipeline_gets_diffusers_and_its_components() -> None:
    analysed = {
        "modelType": "diffusers",
        "modelArchitecture": "QwenImagePipeline",
        "modelFramework": {"name": "diffusers", "version": "0.35.0"},
        "modelFormat": {"name": "diffusers", "version": "0.35.0"},
        "maxTokens": 512,
        "modelCapabilities": ["TEXT_TO_IMAGE"],
        "decodedModelConfiguration": {
            "model_type": "diffusers",
            "architecture": "QwenImagePipeline",
            "diffusion_components": {
                "scheduler": {"library": "diffusers", "type": "FlowMatchEulerDiscreteScheduler"},
                "text_encoder": {"library": "transformers", "type": "Qwen2_5_VL"},
                "transformer": {"library": "diffusers", "type": "QwenImageTransformer2DModel"},
                "vae": {"library": "diffusers", "type": "AutoencoderKLQwenImage"},
                "processor": {"library": "transformers", "type": "Qwen2VLProcessor"},
            },
        },
    }
    filled = specfill.fill({}, analysed)
    assert filled["modelFormat"] == {"name": "diffusers", "version": "0.35.0"}
    assert filled["modelFramework"] == {"name": "diffusers", "version": "0.35.0"}
    pipeline = filled["diffusionPipeline"]
    assert pipeline["className"] == "QwenImagePipeline"
    assert pipeline["textEncoder"] == {"library": "transformers", "type": "Qwen2_5_VL"}
    assert pipeline["additionalComponents"] == {
        "processor": {"library": "transformers", "type": "Qwen2VLProcessor"}
    }
    assert "quantization" not in filled
