"""TensorRT-LLM folders: their config.json, read as a Transformers config.

A TensorRT-LLM checkpoint's config.json has ``architecture``, ``dtype`` and a ``quantization``
object at the top level; an engine's wraps the same in ``pretrained_config`` next to
``build_config`` (whose ``max_seq_len`` is the engine's real context limit) and ``version``.
Neither has ``model_type``. ``to_transformers`` rewrites either into the keys the generic
reader understands, so OME's TensorRT-LLM models get an analysis instead of an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model_agent.modelinfo import families

__all__ = ["FORMAT", "is_tensorrt_llm", "to_transformers"]

FORMAT = "tensorrtllm"


def _pretrained(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    nested = raw.get("pretrained_config")
    if isinstance(nested, dict) and isinstance(nested.get("architecture"), str):
        return nested
    if isinstance(raw.get("architecture"), str) and "model_type" not in raw:
        return raw
    return None


def is_tensorrt_llm(raw: Mapping[str, Any]) -> bool:
    """True for a TensorRT-LLM checkpoint or engine config.json."""
    return "model_type" not in raw and _pretrained(raw) is not None


def _quantization(algo: str) -> dict[str, Any] | None:
    upper = algo.upper()
    if not upper or upper == "NONE":
        return None
    if "FP8" in upper or "FP4" in upper:
        return {"quant_method": "modelopt", "quant_algo": algo}
    if "AWQ" in upper:
        return {"quant_method": "awq", "bits": 4}
    if "GPTQ" in upper:
        return {"quant_method": "gptq", "bits": 4}
    bits = 4 if upper.startswith("W4") or "INT4" in upper else 8
    return {"quant_method": algo.lower(), "bits": bits}


def _model_type(architecture: str) -> str:
    for name, family in families.FAMILIES.items():
        if family.architecture == architecture:
            return name
    return ""


def to_transformers(raw: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(an HF-style config dict, the TensorRT-LLM version or "") for a TensorRT-LLM config."""
    pretrained = _pretrained(raw) or {}
    architecture = str(pretrained.get("architecture", ""))
    converted: dict[str, Any] = {
        k: v for k, v in pretrained.items() if k not in ("architecture", "quantization")
    }
    converted["architectures"] = [architecture]
    converted["model_type"] = _model_type(architecture)
    if isinstance(pretrained.get("dtype"), str):
        converted["torch_dtype"] = pretrained["dtype"]
    quant = pretrained.get("quantization")
    if isinstance(quant, dict) and isinstance(quant.get("quant_algo"), str):
        qc = _quantization(quant["quant_algo"])
        if qc is not None:
            converted["quantization_config"] = qc
    build = raw.get("build_config")
    if isinstance(build, dict) and isinstance(build.get("max_seq_len"), int):
        converted["max_position_embeddings"] = build["max_seq_len"]
    version = raw.get("version")
    return converted, version if isinstance(version, str) else ""
