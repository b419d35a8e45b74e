"""The family table: one row per ``model_type``, saying how to read that family's config.

A row names the family's usual architecture, the context length Transformers assumes when the
config leaves ``max_position_embeddings`` out (Gemma 3 saves none and means 131072), whether
the family is multimodal, audio, an encoder-only embedder, or a decoder whose head-less
``<Name>Model`` checkpoints are embedding models. Unknown types get an empty row.
"""

from __future__ import annotations

import dataclasses

__all__ = ["FAMILIES", "Family", "family"]


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
    #: Keys tried before the usual ones (Qwen v1 and ChatGLM say ``seq_length``).
    context_keys: tuple[str, ...] = ()


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
    "qwen": Family(architecture="QWenLMHeadModel", context=8192, context_keys=("seq_length",)),
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
    "chatglm": Family(architecture="ChatGLMModel", context_keys=("seq_length",)),
    "glm4": _DECODER,
    "glm4_moe": Family(),
    "cohere": Family(architecture="CohereForCausalLM", context=8192),
    "cohere2": Family(architecture="Cohere2ForCausalLM", context=8192),
    "dbrx": Family(architecture="DbrxForCausalLM", context=2048),
    "baichuan": Family(architecture="BaichuanForCausalLM", context_keys=("model_max_length",)),
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


def family(model_type: str) -> Family:
    """The row for ``model_type``, or an empty row (generic reading, no defaults)."""
    return FAMILIES.get(model_type, _GENERIC)


_GENERIC = Family()
