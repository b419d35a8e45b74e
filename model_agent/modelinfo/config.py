"""Facts about a model from its config files, table-driven: one row per ``model_type``.

Inputs are the parsed JSON of ``config.json`` (Transformers), ``model_index.json`` (diffusers)
and whether ``config_sentence_transformers.json`` is present. Outputs are ``ModelFacts``:
model type, architecture, context length, dtype, Transformers version, quantization, vision,
audio, embedding and mixture-of-experts facts.

One generic reader serves every family: facts are looked up in the family's language sub-config
(``text_config``, ``llm_config``, ``language_config``) first, then at the top level, then in
the family's defaults (the value Transformers assumes when the key is absent: Gemma 3 saves no
``max_position_embeddings`` and means 131072). Unknown ``model_type`` values get the same reader
with no defaults. Two known OME mistakes are not reproduced: a Mistral chat model is not an
embedding model, and Gemma 3's context is its ``max_position_embeddings``, not sliding window
times the RoPE factor.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from model_agent import errors

__all__ = [
    "FAMILIES",
    "NESTED_KEYS",
    "DiffusersFacts",
    "Family",
    "ModelFacts",
    "Quantization",
    "diffusers_facts",
    "load_json",
    "model_facts",
    "quantization",
]

#: Keys under which multimodal configs keep their language model's config.
NESTED_KEYS = ("text_config", "llm_config", "language_config", "thinker_config")
_CONTEXT_KEYS = (
    "max_position_embeddings",
    "max_sequence_length",
    "seq_length",
    "max_seq_len",
    "n_positions",
    "n_ctx",
    "model_max_length",
    "max_target_positions",
)
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
_TOP_K_KEYS = ("num_experts_per_tok", "experts_per_token", "num_experts_per_token", "moe_top_k")
_INT32_MAX = 2**31 - 1
_AUDIO_HINTS = ("whisper", "wav2vec2", "hubert", "forctc", "forspeechseq2seq", "speechtotext")
_NOT_EMBEDDING_HEADS = (
    "ForSequenceClassification",
    "ForTokenClassification",
    "ForQuestionAnswering",
    "ForMultipleChoice",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Family:
    """How to read one ``model_type``.

    ``vision``: True or False when the family always is or is not multimodal, None to decide
    by a ``vision_config`` in the file. ``encoder``: an encoder-only family whose bare or
    pre-training heads are sentence/text embedders. ``bare_model_embeds``: a decoder family
    whose head-less ``<Name>Model`` checkpoints are embedding models (e5-mistral, gte-Qwen).
    """

    architecture: str = ""
    context: int = 0
    vision: bool | None = None
    audio: bool = False
    encoder: bool = False
    bare_model_embeds: bool = False


_DECODER = Family(bare_model_embeds=True)
_VLM = Family(vision=True)
_ENCODER = Family(encoder=True, context=512)

FAMILIES: dict[str, Family] = {
    "llama": Family(architecture="LlamaForCausalLM", context=2048, bare_model_embeds=True),
    "llama4": Family(architecture="Llama4ForConditionalGeneration", context=131072),
    "llama4_text": Family(architecture="Llama4ForCausalLM", context=131072),
    "mllama": Family(architecture="MllamaForConditionalGeneration", context=131072, vision=True),
    "mistral": Family(architecture="MistralForCausalLM", context=131072, bare_model_embeds=True),
    "mistral3": Family(architecture="Mistral3ForConditionalGeneration", vision=True),
    "mixtral": Family(architecture="MixtralForCausalLM", context=131072),
    "qwen": Family(architecture="QWenLMHeadModel", context=8192),
    "qwen2": Family(architecture="Qwen2ForCausalLM", context=32768, bare_model_embeds=True),
    "qwen2_moe": Family(architecture="Qwen2MoeForCausalLM", context=32768),
    "qwen2_vl": Family(architecture="Qwen2VLForConditionalGeneration", context=32768, vision=True),
    "qwen2_5_vl": Family(
        architecture="Qwen2_5_VLForConditionalGeneration", context=128000, vision=True
    ),
    "qwen2_audio": Family(architecture="Qwen2AudioForConditionalGeneration", audio=True),
    "qwen2_5_omni": Family(architecture="Qwen2_5OmniModel", vision=True, audio=True),
    "qwen3": Family(architecture="Qwen3ForCausalLM", context=32768, bare_model_embeds=True),
    "qwen3_moe": Family(architecture="Qwen3MoeForCausalLM", context=32768),
    "qwen3_next": Family(architecture="Qwen3NextForCausalLM", context=32768),
    "qwen3_vl": Family(architecture="Qwen3VLForConditionalGeneration", context=262144, vision=True),
    "qwen3_vl_moe": Family(
        architecture="Qwen3VLMoeForConditionalGeneration", context=262144, vision=True
    ),
    "deepseek_v2": Family(architecture="DeepseekV2ForCausalLM"),
    "deepseek_v3": Family(architecture="DeepseekV3ForCausalLM"),
    "kimi_k2": Family(architecture="DeepseekV3ForCausalLM"),
    "deepseek_vl_v2": _VLM,
    "janus": _VLM,
    "multi_modality": _VLM,
    "gemma": Family(architecture="GemmaForCausalLM", context=8192, bare_model_embeds=True),
    "gemma2": Family(architecture="Gemma2ForCausalLM", context=8192, bare_model_embeds=True),
    "gemma3_text": Family(architecture="Gemma3ForCausalLM", context=131072),
    "gemma3": Family(architecture="Gemma3ForConditionalGeneration", context=131072, vision=True),
    "gemma3n": Family(architecture="Gemma3nForConditionalGeneration", vision=True, audio=True),
    "paligemma": _VLM,
    "phi": Family(architecture="PhiForCausalLM", context=2048),
    "phi3": Family(architecture="Phi3ForCausalLM", context=4096, bare_model_embeds=True),
    "phi3small": Family(architecture="Phi3SmallForCausalLM"),
    "phi3_v": Family(architecture="Phi3VForCausalLM", context=131072, vision=True),
    "phimoe": Family(architecture="PhimoeForCausalLM", context=131072),
    "phi4mm": Family(vision=True, audio=True),
    "phi4_multimodal": Family(vision=True, audio=True),
    "gpt_oss": Family(architecture="GptOssForCausalLM", context=131072),
    "llava": Family(architecture="LlavaForConditionalGeneration", vision=True),
    "llava_next": Family(architecture="LlavaNextForConditionalGeneration", vision=True),
    "llava_onevision": Family(architecture="LlavaOnevisionForConditionalGeneration", vision=True),
    "llava_next_video": _VLM,
    "idefics2": _VLM,
    "idefics3": _VLM,
    "internvl_chat": _VLM,
    "internvl": _VLM,
    "minicpmv": _VLM,
    "pixtral": _VLM,
    "whisper": Family(architecture="WhisperForConditionalGeneration", audio=True, context=448),
    "wav2vec2": Family(audio=True),
    "hubert": Family(audio=True),
    "bert": Family(architecture="BertModel", encoder=True, context=512),
    "roberta": Family(encoder=True, context=514),
    "xlm-roberta": Family(encoder=True, context=514),
    "xlm-roberta-xl": Family(encoder=True, context=514),
    "camembert": Family(encoder=True, context=514),
    "distilbert": _ENCODER,
    "mpnet": _ENCODER,
    "electra": _ENCODER,
    "nomic_bert": Family(encoder=True, context=2048),
    "new": Family(encoder=True, context=8192),
    "modernbert": Family(encoder=True, context=8192),
    "jina_bert": Family(encoder=True, context=8192),
    "chatglm": Family(architecture="ChatGLMModel"),
    "glm4": _DECODER,
    "glm4_moe": Family(),
    "cohere": Family(architecture="CohereForCausalLM", context=8192),
    "cohere2": Family(architecture="Cohere2ForCausalLM", context=8192),
    "dbrx": Family(architecture="DbrxForCausalLM", context=2048),
    "baichuan": Family(architecture="BaichuanForCausalLM"),
    "internlm": Family(architecture="InternLMForCausalLM"),
    "internlm2": Family(architecture="InternLM2ForCausalLM"),
    "exaone": Family(architecture="ExaoneForCausalLM"),
    "minicpm": Family(architecture="MiniCPMForCausalLM"),
    "minicpm3": Family(architecture="MiniCPM3ForCausalLM"),
    "stablelm": Family(architecture="StableLmForCausalLM", context=4096),
    "starcoder2": _DECODER,
    "granite": _DECODER,
    "olmo2": _DECODER,
    "nemotron": _DECODER,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quantization:
    """A model's quantization: ``method`` as the config names it (``awq``, ``fp8``...),
    ``bits`` and ``kind`` (``int``/``float``) of the weights, and ``label``: the short value
    written to the ConfigMap's ``quantization`` (OME's ``fp8``, ``fbgemm_fp8``, ``int4``...)."""

    method: str
    bits: int | None
    kind: str | None
    label: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelFacts:
    model_type: str
    architecture: str
    context_length: int
    torch_dtype: str
    transformers_version: str
    quantization: Quantization | None
    has_vision: bool
    has_audio: bool
    is_embedding: bool
    is_reranker: bool
    num_experts: int
    experts_per_token: int
    hidden_size: int
    num_layers: int
    intermediate_size: int
    moe_intermediate_size: int
    vocab_size: int
    num_attention_heads: int
    num_kv_heads: int
    tied_embeddings: bool
    #: What the ConfigMap's modelFormat / modelFramework say; TensorRT-LLM folders differ.
    format_name: str = "safetensors"
    format_version: str = "1.0.0"
    framework_name: str = "transformers"
    framework_version: str = ""

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusersFacts:
    """What ``model_index.json`` says: the pipeline class, diffusers version, components."""

    class_name: str
    diffusers_version: str
    components: Mapping[str, tuple[str, str]]


def load_json(data: bytes, *, source: str) -> dict[str, Any]:
    """Parse a JSON object, tolerating Python's ``Infinity``/``-Infinity``/``NaN`` literals."""
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise errors.ModelInfoError(f"{source}: not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise errors.ModelInfoError(f"{source}: expected a JSON object, got {type(value).__name__}")
    return value


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _scopes(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Where to look, in order: the language sub-config(s), then the top level."""
    nested = [config[k] for k in NESTED_KEYS if isinstance(config.get(k), dict)]
    return [*nested, config]


def _first_int(scopes: list[Mapping[str, Any]], keys: tuple[str, ...]) -> int:
    for scope in scopes:
        for key in keys:
            value = _positive_int(scope.get(key))
            if value is not None:
                return value
    return 0


def _first_str(scopes: list[Mapping[str, Any]], keys: tuple[str, ...]) -> str:
    for scope in reversed(scopes):  # the top level says what the checkpoint as a whole is
        for key in keys:
            if _str(scope.get(key)):
                return _str(scope.get(key))
    return ""


def _compressed_tensors(qc: Mapping[str, Any]) -> tuple[int | None, str | None, str]:
    groups = qc.get("config_groups")
    weights: Mapping[str, Any] = {}
    if isinstance(groups, dict):
        for group in groups.values():
            if isinstance(group, dict) and isinstance(group.get("weights"), dict):
                weights = group["weights"]
                break
    bits = _positive_int(weights.get("num_bits"))
    kind = _str(weights.get("type")) or None
    fmt = _str(qc.get("format")).lower()
    if kind == "float" and bits == 8:
        return bits, kind, "fp8"
    if (kind == "float" and bits == 4) or "nvfp4" in fmt:
        return bits or 4, "float", "nvfp4"
    if kind == "int" and bits:
        return bits, kind, f"int{bits}"
    return bits, kind, "compressed-tensors"


def quantization(config: Mapping[str, Any]) -> Quantization | None:
    """The quantization a config declares (``quantization_config`` or ``compression_config``,
    top level or in the language sub-config), or None."""
    qc: Mapping[str, Any] | None = None
    for scope in reversed(_scopes(config)):
        for key in ("quantization_config", "compression_config"):
            if isinstance(scope.get(key), dict):
                qc = scope[key]
                break
        if qc is not None:
            break
    if qc is None:
        return None
    method = _str(qc.get("quant_method")).lower()
    if not method:
        if qc.get("load_in_4bit") or qc.get("load_in_8bit") or qc.get("_load_in_4bit"):
            method = "bitsandbytes"
        elif "config_groups" in qc:
            method = "compressed-tensors"
        elif _str(qc.get("fmt")) or _str(qc.get("activation_scheme")):
            method = "fp8"
        else:
            return None
    method = {"compressed_tensors": "compressed-tensors"}.get(method, method)
    bits: int | None
    kind: str | None
    if method in ("fp8", "fbgemm_fp8"):
        bits, kind, label = 8, "float", method
    elif method == "mxfp4":
        bits, kind, label = 4, "float", "mxfp4"
    elif method == "bitsandbytes":
        four = bool(qc.get("load_in_4bit") or qc.get("_load_in_4bit"))
        bits, kind = (4, "float") if four else (8, "int")
        label = _str(qc.get("bnb_4bit_quant_type")) or "fp4" if four else "int8"
    elif method == "compressed-tensors":
        bits, kind, label = _compressed_tensors(qc)
    elif method == "modelopt":
        algo = _str(qc.get("quant_algo")).lower()
        bits, kind, label = (8, "float", "fp8") if "fp8" in algo else (4, "float", algo or method)
    else:  # awq, gptq, their marlin kernels, auto-round, hqq, ...
        bits = _positive_int(qc.get("bits")) or _positive_int(qc.get("w_bit")) or 4
        kind, label = "int", f"int{bits}"
    return Quantization(method=method, bits=bits, kind=kind, label=label)


def _vision(family: Family, config: Mapping[str, Any]) -> bool:
    if family.vision is not None:
        return family.vision
    return any(isinstance(config.get(k), dict) for k in ("vision_config", "visual")) or bool(
        config.get("mm_vision_tower")
    )


def _embedding(family: Family, architecture: str, sentence_transformers: bool) -> tuple[bool, bool]:
    """(is_embedding, is_reranker)."""
    if family.encoder and architecture.endswith(_NOT_EMBEDDING_HEADS):
        return False, architecture.endswith("ForSequenceClassification")
    if sentence_transformers or family.encoder:
        return True, False
    lowered = architecture.lower()
    if "embedding" in lowered or "sentence" in lowered:
        return True, False
    bare = architecture.endswith("Model") and not architecture.endswith(
        ("LMHeadModel", "ChatModel")
    )
    return family.bare_model_embeds and bare, False


def model_facts(
    config: Mapping[str, Any],
    *,
    sentence_transformers: bool = False,
) -> ModelFacts:
    """Facts from a parsed ``config.json``; ``sentence_transformers`` when the folder has a
    ``config_sentence_transformers.json`` (an embedding model, whatever its head)."""
    model_type = _str(config.get("model_type"))
    family = FAMILIES.get(model_type, Family())
    scopes = _scopes(config)
    architectures = config.get("architectures")
    architecture = ""
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        architecture = architectures[0]
    architecture = architecture or family.architecture
    context = _first_int(scopes, _CONTEXT_KEYS) or family.context
    lowered = architecture.lower()
    audio = (
        family.audio
        or any(h in lowered for h in _AUDIO_HINTS)
        or isinstance(config.get("audio_config"), dict)
    )
    embedding, reranker = _embedding(family, architecture, sentence_transformers)
    ffn = config.get("ffn_config")
    expert_scopes = [*scopes, ffn] if isinstance(ffn, dict) else scopes
    hidden = _first_int(scopes, ("hidden_size", "d_model", "n_embd", "dim"))
    heads = _first_int(scopes, ("num_attention_heads", "n_head", "n_heads"))
    return ModelFacts(
        model_type=model_type,
        architecture=architecture,
        context_length=min(context, _INT32_MAX),
        torch_dtype=_first_str(scopes, ("torch_dtype", "dtype")),
        transformers_version=_first_str(scopes, ("transformers_version",)),
        quantization=quantization(config),
        has_vision=_vision(family, config),
        has_audio=audio,
        is_embedding=embedding,
        is_reranker=reranker,
        num_experts=_first_int(expert_scopes, _EXPERT_KEYS),
        experts_per_token=_first_int(expert_scopes, _TOP_K_KEYS),
        hidden_size=hidden,
        num_layers=_first_int(scopes, ("num_hidden_layers", "n_layer", "n_layers", "num_layers")),
        intermediate_size=_first_int(scopes, ("intermediate_size", "ffn_hidden_size", "n_inner")),
        moe_intermediate_size=_first_int(scopes, ("moe_intermediate_size",)),
        vocab_size=_first_int(scopes, ("vocab_size", "padded_vocab_size")),
        num_attention_heads=heads,
        num_kv_heads=_first_int(scopes, ("num_key_value_heads", "multi_query_group_num")) or heads,
        tied_embeddings=config.get("tie_word_embeddings") is True,
    )


def _component(value: Any) -> tuple[str, str] | None:
    if isinstance(value, list) and len(value) == 2:
        library, cls = value
        if isinstance(library, str) and isinstance(cls, str):
            return library, cls
    return None


def diffusers_facts(index: Mapping[str, Any], *, source: str) -> DiffusersFacts:
    """The pipeline described by a diffusers ``model_index.json``."""
    class_name = _str(index.get("_class_name"))
    components = {
        name: comp
        for name, value in index.items()
        if not name.startswith("_") and (comp := _component(value)) is not None
    }
    if not class_name and not components:
        raise errors.ModelInfoError(f"{source}: no diffusers pipeline (_class_name, components)")
    return DiffusersFacts(
        class_name=class_name,
        diffusers_version=_str(index.get("_diffusers_version")),
        components=components,
    )
