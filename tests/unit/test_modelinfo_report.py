"""The ConfigMap ``config`` object built from facts and counts.

Aspects covered:
- OME's field names and nesting, exactly (top level and decodedModelConfiguration's nine keys),
  plus our extensions (parameter_count_exact, parameters_by_dtype, quantization_method, MoE);
- the exact count and the formatted size agree; model_size_bytes is the real tensor bytes;
- quantization label present only for quantized models (OME's omitempty);
- estimates from the architecture when there are no safetensors: no exact count, and the
  size from the dtype; nothing at all when the config has no dimensions;
- the dtype named from the headers when the config omits it;
- diffusers pipelines: framework and format ``diffusers`` with the pipeline's version.
"""

from __future__ import annotations

import json

from model_agent.modelinfo import config, report, safetensors
from tests.unit import test_modelinfo_config as configs

OME_TOP = {
    "modelType",
    "modelArchitecture",
    "modelFramework",
    "modelFormat",
    "modelParameterSize",
    "maxTokens",
    "modelCapabilities",
    "decodedModelConfiguration",
}
OME_DECODED = {
    "model_type",
    "architecture",
    "context_length",
    "parameter_count",
    "has_vision",
    "is_embedding",
    "transformers_version",
    "torch_dtype",
    "model_size_bytes",
}


def _count(by_dtype: dict[str, int], tensor_bytes: int) -> safetensors.ParameterCount:
    return safetensors.ParameterCount(by_dtype=by_dtype, tensor_bytes=tensor_bytes, tensors=3)


def test_a_llama_checkpoint_gives_omes_field_names_and_the_exact_count() -> None:
    facts = config.model_facts(configs.LLAMA_3_1_8B)
    result = report.transformers_config(facts, _count({"BF16": 8_030_261_248}, 16_060_522_496))
    assert set(result) == OME_TOP
    assert result["modelType"] == "llama"
    assert result["modelArchitecture"] == "LlamaForCausalLM"
    assert result["modelFramework"] == {"name": "transformers", "version": "4.43.0.dev0"}
    assert result["modelFormat"] == {"name": "safetensors", "version": "1.0.0"}
    assert result["modelParameterSize"] == "8.03B"
    assert result["maxTokens"] == 131072
    assert result["modelCapabilities"] == ["TEXT_TO_TEXT"]
    decoded = result["decodedModelConfiguration"]
    assert OME_DECODED <= set(decoded)
    assert decoded["parameter_count"] == "8.03B"
    assert decoded["parameter_count_exact"] == 8_030_261_248
    assert decoded["model_size_bytes"] == 16_060_522_496
    assert decoded["parameters_by_dtype"] == {"BF16": 8_030_261_248}
    assert decoded["is_moe"] is False
    json.dumps(result, allow_nan=False)  # plain JSON, nothing Go cannot read


def test_a_quantized_moe_model_reports_label_method_and_experts() -> None:
    facts = config.model_facts(configs.DEEPSEEK_V3)
    result = report.transformers_config(
        facts, _count({"F8_E4M3": 680_000_000_000, "BF16": 4_000_000_000}, 700_000_000_000)
    )
    assert result["quantization"] == "fp8"
    decoded = result["decodedModelConfiguration"]
    assert decoded["quantization_method"] == "fp8"
    assert (decoded["is_moe"], decoded["num_experts"], decoded["num_experts_per_token"]) == (
        True,
        256,
        8,
    )
    assert result["modelParameterSize"] == "684B"


def test_without_safetensors_the_size_is_estimated_and_no_exact_count_is_claimed() -> None:
    facts = config.model_facts(configs.LLAMA_3_1_8B)
    result = report.transformers_config(facts, None)
    decoded = result["decodedModelConfiguration"]
    assert "parameter_count_exact" not in decoded
    assert decoded["parameter_count_source"] == "config-estimate"
    estimate = report.estimate_parameters(facts)
    assert 7_500_000_000 < estimate < 8_500_000_000  # Llama 3.1 8B has 8.03B
    assert decoded["model_size_bytes"] == estimate * 2  # bfloat16


def test_a_config_without_dimensions_or_weights_has_no_parameter_size() -> None:
    facts = config.model_facts({"model_type": "mystery", "architectures": ["MysteryModel"]})
    result = report.transformers_config(facts, None)
    assert "modelParameterSize" not in result
    assert "maxTokens" not in result
    assert "quantization" not in result
    assert result["decodedModelConfiguration"]["parameter_count"] == "0"


def test_the_dtype_comes_from_the_headers_when_the_config_omits_it() -> None:
    facts = config.model_facts({"model_type": "llama"})
    result = report.transformers_config(facts, _count({"F16": 10, "I64": 2}, 28))
    assert result["decodedModelConfiguration"]["torch_dtype"] == "float16"
    assert "version" not in result["modelFramework"]


def test_a_diffusers_pipeline_reports_diffusers_framework_and_format() -> None:
    facts = config.diffusers_facts(configs.SDXL_INDEX, source="model_index.json")
    result = report.diffusers_config(
        facts, _count({"F32": 3_500_000_000}, 14_000_000_000), context_length=77, torch_dtype=""
    )
    assert result["modelType"] == "diffusers"
    assert result["modelArchitecture"] == "StableDiffusionXLPipeline"
    assert result["modelFramework"] == {"name": "diffusers", "version": "0.19.0.dev0"}
    assert result["modelFormat"] == {"name": "diffusers", "version": "0.19.0.dev0"}
    assert result["modelParameterSize"] == "3.5B"
    assert result["maxTokens"] == 77
    assert result["modelCapabilities"] == ["TEXT_TO_IMAGE"]
    decoded = result["decodedModelConfiguration"]
    assert decoded["torch_dtype"] == "float32"
    assert decoded["diffusion_components"]["unet"] == {
        "library": "diffusers",
        "type": "UNet2DConditionModel",
    }
