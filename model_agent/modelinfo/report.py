"""The ConfigMap entry's ``config`` object, built from facts and header counts.

Field names and nesting are OME's (``modelType``, ``modelArchitecture``, ``modelFramework``,
``modelFormat``, ``modelParameterSize``, ``maxTokens``, ``modelCapabilities``,
``quantization``, ``decodedModelConfiguration``); empty values are left out as Go's
``omitempty`` does. ``decodedModelConfiguration`` has OME's nine keys plus extensions OME's
controller ignores: ``parameter_count_exact`` (only when counted from safetensors headers),
``parameter_count_source``, ``parameters_by_dtype``, ``quantization_method`` and the MoE facts.
``artifact`` is the pipeline's to add.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model_agent.modelinfo import capabilities, config, formatting, safetensors

__all__ = [
    "SAFETENSORS_FORMAT_VERSION",
    "diffusers_config",
    "estimate_parameters",
    "transformers_config",
]

SAFETENSORS_FORMAT_VERSION = "1.0.0"

#: Bytes per parameter by torch dtype name, for estimates only (headers give real bytes).
_DTYPE_BYTES: dict[str, float] = {
    "float64": 8.0,
    "float32": 4.0,
    "float": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "half": 2.0,
    "int8": 1.0,
    "uint8": 1.0,
    "float8_e4m3fn": 1.0,
    "float8_e5m2": 1.0,
    "fp8": 1.0,
    "int4": 0.5,
}
#: Safetensors dtype -> torch dtype name, to name a checkpoint's dtype when config omits it.
_TORCH_NAMES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "BF16": "bfloat16",
    "F16": "float16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


def estimate_parameters(facts: config.ModelFacts) -> int:
    """A rough parameter count from the architecture, for checkpoints without safetensors."""
    hidden, layers = facts.hidden_size, facts.num_layers
    if not hidden or not layers:
        return 0
    heads = facts.num_attention_heads or 1
    head_dim = hidden // heads or 1
    attention = 2 * hidden * hidden + 2 * hidden * facts.num_kv_heads * head_dim
    intermediate = facts.intermediate_size or 4 * hidden
    if facts.is_moe:
        expert = facts.moe_intermediate_size or intermediate
        mlp = facts.num_experts * 3 * hidden * expert + hidden * facts.num_experts
    else:
        mlp = 3 * hidden * intermediate
    embeddings = facts.vocab_size * hidden * (1 if facts.tied_embeddings else 2)
    return embeddings + layers * (attention + mlp + 2 * hidden)


def _dominant_dtype(count: safetensors.ParameterCount | None) -> str:
    if count is None or not count.by_dtype:
        return ""
    dtype = max(count.by_dtype.items(), key=lambda item: item[1])[0]
    return _TORCH_NAMES.get(dtype, "")


def _parameters(
    count: safetensors.ParameterCount | None, estimate: int, dtype: str, quant_bits: int | None
) -> tuple[int, int, str]:
    """(parameters, model size bytes, source)."""
    if count is not None and count.tensors:
        return count.total, count.tensor_bytes, "safetensors"
    if estimate:
        per = quant_bits / 8 if quant_bits else _DTYPE_BYTES.get(dtype.lower(), 4.0)
        return estimate, int(estimate * per), "config-estimate"
    return 0, 0, "none"


def _omit_empty(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v not in ("", 0, None, [], {})}


def _decoded(
    *,
    model_type: str,
    architecture: str,
    context: int,
    params: int,
    source: str,
    size: int,
    vision: bool,
    embedding: bool,
    transformers_version: str,
    dtype: str,
    count: safetensors.ParameterCount | None,
) -> dict[str, Any]:
    decoded: dict[str, Any] = {
        "model_type": model_type,
        "architecture": architecture,
        "context_length": context,
        "parameter_count": formatting.format_parameter_count(params),
        "has_vision": vision,
        "is_embedding": embedding,
        "transformers_version": transformers_version,
        "torch_dtype": dtype,
        "model_size_bytes": size,
    }
    if source == "safetensors":
        decoded["parameter_count_exact"] = params
    decoded["parameter_count_source"] = source
    if count is not None and count.by_dtype:
        decoded["parameters_by_dtype"] = dict(sorted(count.by_dtype.items()))
    return decoded


def transformers_config(
    facts: config.ModelFacts, count: safetensors.ParameterCount | None
) -> dict[str, Any]:
    """The ``config`` object for a Transformers checkpoint; ``count`` from its headers."""
    quant = facts.quantization
    dtype = facts.torch_dtype or _dominant_dtype(count)
    params, size, source = _parameters(
        count, estimate_parameters(facts), dtype, quant.bits if quant else None
    )
    decoded = _decoded(
        model_type=facts.model_type,
        architecture=facts.architecture,
        context=facts.context_length,
        params=params,
        source=source,
        size=size,
        vision=facts.has_vision,
        embedding=facts.is_embedding,
        transformers_version=facts.transformers_version,
        dtype=dtype,
        count=count,
    )
    if quant is not None:
        decoded["quantization_method"] = quant.method
        if quant.bits:
            decoded["quantization_bits"] = quant.bits
    decoded["is_moe"] = facts.is_moe
    if facts.is_moe:
        decoded["num_experts"] = facts.num_experts
        if facts.experts_per_token:
            decoded["num_experts_per_token"] = facts.experts_per_token
    framework = _omit_empty(
        {
            "name": facts.framework_name,
            "version": facts.framework_version or facts.transformers_version,
        }
    )
    return _omit_empty(
        {
            "modelType": facts.model_type,
            "modelArchitecture": facts.architecture,
            "modelFramework": framework,
            "modelFormat": _omit_empty(
                {"name": facts.format_name, "version": facts.format_version}
            ),
            "modelParameterSize": formatting.format_parameter_count(params) if params else "",
            "maxTokens": facts.context_length,
            "modelCapabilities": capabilities.for_model(facts),
            "quantization": quant.label if quant else "",
            "decodedModelConfiguration": decoded,
        }
    )


def diffusers_config(
    facts: config.DiffusersFacts,
    count: safetensors.ParameterCount | None,
    *,
    context_length: int,
    torch_dtype: str,
) -> dict[str, Any]:
    """The ``config`` object for a diffusers pipeline; ``count`` over all its components,
    context and dtype from its text encoder."""
    dtype = torch_dtype or _dominant_dtype(count)
    params, size, source = _parameters(count, 0, dtype, None)
    caps = capabilities.for_diffusers(
        facts.class_name, [cls for _, cls in facts.components.values()]
    )
    image_input = caps[0] in (capabilities.IMAGE_TEXT_TO_IMAGE, capabilities.IMAGE_TEXT_TO_VIDEO)
    decoded = _decoded(
        model_type="diffusers",
        architecture=facts.class_name,
        context=context_length,
        params=params,
        source=source,
        size=size,
        vision=image_input,
        embedding=False,
        transformers_version="",
        dtype=dtype,
        count=count,
    )
    decoded["diffusion_components"] = {
        name: {"library": lib, "type": cls} for name, (lib, cls) in sorted(facts.components.items())
    }
    version = _omit_empty({"name": "diffusers", "version": facts.diffusers_version})
    return _omit_empty(
        {
            "modelType": "diffusers",
            "modelArchitecture": facts.class_name,
            "modelFramework": version,
            "modelFormat": dict(version),
            "modelParameterSize": formatting.format_parameter_count(params) if params else "",
            "maxTokens": context_length,
            "modelCapabilities": caps,
            "decodedModelConfiguration": decoded,
        }
    )
