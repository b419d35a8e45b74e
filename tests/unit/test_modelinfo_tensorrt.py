"""TensorRT-LLM config.json files read as Transformers configs.

Aspects covered:
- an engine's config (``pretrained_config`` + ``build_config`` + ``version``) and a
  checkpoint's config (top-level ``architecture``) are recognised, a Transformers one is not;
- architecture, model_type (from the family table), dtype, the engine's ``max_seq_len`` as
  context, and ``quant_algo`` mapped to OME's quantization labels;
- the version becomes the format and framework version.
"""

from __future__ import annotations

from typing import Any

import pytest

from model_agent.modelinfo import config, tensorrt

PRETRAINED: dict[str, Any] = {
    "architecture": "LlamaForCausalLM",
    "dtype": "bfloat16",
    "vocab_size": 128256,
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mapping": {"world_size": 2, "tp_size": 2, "pp_size": 1},
    "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"},
}
ENGINE = {
    "version": "0.15.0",
    "pretrained_config": PRETRAINED,
    "build_config": {"max_input_len": 8192, "max_seq_len": 16384, "max_batch_size": 64},
}


def test_engine_and_checkpoint_configs_are_recognised_and_transformers_ones_are_not() -> None:
    assert tensorrt.is_tensorrt_llm(ENGINE)
    assert tensorrt.is_tensorrt_llm(PRETRAINED)
    assert not tensorrt.is_tensorrt_llm({"model_type": "llama", "architectures": ["X"]})
    assert not tensorrt.is_tensorrt_llm({"foo": 1})


def test_an_engine_config_gives_the_engines_context_and_quantization() -> None:
    raw, version = tensorrt.to_transformers(ENGINE)
    facts = config.model_facts(raw)
    assert version == "0.15.0"
    assert (facts.model_type, facts.architecture) == ("llama", "LlamaForCausalLM")
    assert facts.context_length == 16384  # build_config.max_seq_len, not the model's 131072
    assert facts.torch_dtype == "bfloat16"
    assert facts.quantization is not None and facts.quantization.label == "fp8"
    assert facts.hidden_size == 4096


def test_a_checkpoint_config_keeps_the_models_context_and_has_no_version() -> None:
    raw, version = tensorrt.to_transformers(PRETRAINED)
    assert version == ""
    assert config.model_facts(raw).context_length == 131072


@pytest.mark.parametrize(
    ("algo", "label"),
    [
        ("FP8", "fp8"),
        ("FP8_BLOCK_SCALES", "fp8"),
        ("NVFP4", "nvfp4"),
        ("W4A16_AWQ", "int4"),
        ("W4A16_GPTQ", "int4"),
        ("W4A8_AWQ", "int4"),
        ("W8A16", "int8"),
        ("W8A8_SQ_PER_CHANNEL", "int8"),
        ("W4A16", "int4"),
    ],
)
def test_quant_algos_map_to_omes_labels(algo: str, label: str) -> None:
    raw, _ = tensorrt.to_transformers({**PRETRAINED, "quantization": {"quant_algo": algo}})
    quant = config.model_facts(raw).quantization
    assert quant is not None and quant.label == label


def test_no_quant_algo_means_no_quantization() -> None:
    raw, _ = tensorrt.to_transformers({**PRETRAINED, "quantization": {"quant_algo": None}})
    assert config.model_facts(raw).quantization is None
