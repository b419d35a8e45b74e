"""Facts about a model from its config files, driven by the family table in ``families``.

Inputs are the parsed JSON of ``config.json`` (Transformers), ``model_index.json`` (diffusers)
and whether ``config_sentence_transformers.json`` is present. Outputs are ``ModelFacts``:
model type, architecture, context length, dtype, Transformers version, quantization, vision,
audio, embedding and mixture-of-experts facts.

One generic reader serves every family: facts are looked up in the family's language sub-config
(``text_config``, ``llm_config``, ``language_config``) first, then at the top level, then in
the family's defaults (the value Transformers assumes when the key is absent: Gemma 3 saves no
``max_position_embeddings`` and means 131072). Unknown ``model_type`` values get the same
reader with no defaults. Quantization is read by ``quantization``. Two known OME mistakes are
not reproduced: a Mistral chat model is not an embedding model, and Gemma 3's context is its
``max_position_embeddings``, not sliding window times the RoPE factor.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from model_agent import errors
from model_agent.modelinfo import families
from model_agent.modelinfo import quantization as quantizations

__all__ = [
    "NESTED_KEYS",
    "DiffusersFacts",
    "ModelFacts",
    "diffusers_facts",
    "load_json",
    "model_facts",
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
class ModelFacts:
    model_type: str
    architecture: str
    context_length: int
    torch_dtype: str
    transformers_version: str
    quantization: quantizations.Quantization | None
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


def _vision(family: families.Family, config: Mapping[str, Any]) -> bool:
    if family.vision is not None:
        return family.vision
    return any(isinstance(config.get(k), dict) for k in ("vision_config", "visual")) or bool(
        config.get("mm_vision_tower")
    )


def _embedding(
    family: families.Family, architecture: str, sentence_transformers: bool
) -> tuple[bool, bool]:
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
    family = families.family(model_type)
    scopes = _scopes(config)
    architectures = config.get("architectures")
    architecture = ""
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        architecture = architectures[0]
    architecture = architecture or family.architecture
    nested_type = _str(scopes[0].get("model_type")) if len(scopes) > 1 else ""
    context = (
        _first_int(scopes, family.context_keys + _CONTEXT_KEYS)
        or family.context
        or families.family(nested_type).context
    )
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
        quantization=quantizations.quantization(scopes),
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
