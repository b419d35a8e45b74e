"""Capabilities in OME's vocabulary (``TEXT_TO_TEXT``, ``EMBEDDING``, ``IMAGE_TEXT_TO_TEXT``...).

The order of the checks follows OME's agent, so the same model gets the same list, except
where OME is wrong: a causal LM is ``TEXT_TO_TEXT`` (OME calls ``MistralForCausalLM`` an
embedding model), a cross-encoder (``...ForSequenceClassification`` on an encoder) is
``RERANK``, and every diffusers text-to-image pipeline is ``TEXT_TO_IMAGE`` (OME falls through
to ``IMAGE_TEXT_TO_TEXT`` for class names without "image", such as ``FluxPipeline``).
"""

from __future__ import annotations

from collections.abc import Sequence

from model_agent.modelinfo import config

__all__ = [
    "AUDIO_TO_AUDIO",
    "AUDIO_TO_TEXT",
    "EMBEDDING",
    "IMAGE_TEXT_TO_AUDIO",
    "IMAGE_TEXT_TO_IMAGE",
    "IMAGE_TEXT_TO_TEXT",
    "IMAGE_TEXT_TO_VIDEO",
    "RERANK",
    "TEXT_TO_AUDIO",
    "TEXT_TO_IMAGE",
    "TEXT_TO_TEXT",
    "TEXT_TO_VIDEO",
    "VIDEO_TEXT_TO_AUDIO",
    "for_diffusers",
    "for_model",
]

TEXT_TO_TEXT = "TEXT_TO_TEXT"
EMBEDDING = "EMBEDDING"
RERANK = "RERANK"
TEXT_TO_AUDIO = "TEXT_TO_AUDIO"
TEXT_TO_IMAGE = "TEXT_TO_IMAGE"
TEXT_TO_VIDEO = "TEXT_TO_VIDEO"
IMAGE_TEXT_TO_TEXT = "IMAGE_TEXT_TO_TEXT"
IMAGE_TEXT_TO_AUDIO = "IMAGE_TEXT_TO_AUDIO"
IMAGE_TEXT_TO_IMAGE = "IMAGE_TEXT_TO_IMAGE"
IMAGE_TEXT_TO_VIDEO = "IMAGE_TEXT_TO_VIDEO"
VIDEO_TEXT_TO_AUDIO = "VIDEO_TEXT_TO_AUDIO"
AUDIO_TO_TEXT = "AUDIO_TO_TEXT"
AUDIO_TO_AUDIO = "AUDIO_TO_AUDIO"

_IMAGE_INPUT = ("imageedit", "edit", "pix2pix", "img2img", "inpaint", "controlnet", "kontext")


def for_diffusers(class_name: str, component_types: Sequence[str] = ()) -> list[str]:
    """Capabilities of a diffusers pipeline, from its class name and, for names that say
    nothing (``WanPipeline``, ``LTXPipeline``), its components (a ``...3DModel`` makes video)."""
    name = class_name.lower()
    three_d = any("3d" in t.lower() for t in component_types)
    if "video" in name or "t2v" in name or "i2v" in name or three_d:
        image_input = any(h in name for h in ("imagetovideo", "image2video", "i2v", "img2vid"))
        return [IMAGE_TEXT_TO_VIDEO if image_input else TEXT_TO_VIDEO]
    if "audio" in name:
        return [TEXT_TO_AUDIO]
    if any(h in name for h in _IMAGE_INPUT):
        return [IMAGE_TEXT_TO_IMAGE]
    return [TEXT_TO_IMAGE]


def for_model(facts: config.ModelFacts) -> list[str]:
    """Capabilities of a Transformers model."""
    architecture = facts.architecture.lower()
    if "nemotronh_nano" in facts.model_type.lower():
        return [IMAGE_TEXT_TO_TEXT, TEXT_TO_TEXT, AUDIO_TO_TEXT]
    if "omni" in architecture or "omni" in facts.model_type.lower():
        return [IMAGE_TEXT_TO_TEXT, TEXT_TO_AUDIO, AUDIO_TO_TEXT, AUDIO_TO_AUDIO]
    if facts.has_vision:
        return [IMAGE_TEXT_TO_TEXT]
    if facts.has_audio:
        return [AUDIO_TO_TEXT]
    if facts.is_reranker:
        return [RERANK]
    if facts.is_embedding:
        return [EMBEDDING]
    return [TEXT_TO_TEXT]
