"""The spec fields OME's agent fills after analysis, with OME's values, from our ``config``.

OME's ``updateModelSpec`` (pkg/modelagent/config_parser.go) sets a field only when it is
unset: ``modelType``, ``modelArchitecture``, ``modelFramework``, ``modelFormat``,
``modelParameterSize``, ``maxTokens``, ``modelCapabilities``, ``quantization``,
``modelConfiguration`` and ``diffusionPipeline`` (``apiCapabilities`` is in its list but
its analysis never produces a value, so neither does ours). Its values, which we reproduce:

- ``modelFormat``: ``{name: safetensors, version: "1.0.0"}`` for every Transformers
  checkpoint, ``{name: diffusers, version: <diffusers version>}`` for a pipeline.
- ``modelFramework``: ``{name: transformers, version: <transformers_version>}`` or diffusers.
- ``quantization``: only ``int4`` (the config's ``quant_method`` contains ``int4``) or ``fp8``
  (it contains ``fp8``, so ``fbgemm_fp8`` too); anything else leaves it unset. The runtime
  selector compares this field exactly, so the ConfigMap's finer label never goes here.
- ``modelConfiguration``: the nine keys of ``decodedModelConfiguration``, nothing more.

Pure: ``fill(spec, config)`` returns the merge-patch ``spec`` fragment (empty when nothing is
missing), so a second call with the patched spec returns nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FIELDS", "fill", "ome_quantization", "values"]

FIELDS = (
    "modelType",
    "modelArchitecture",
    "modelFramework",
    "modelFormat",
    "modelParameterSize",
    "maxTokens",
    "modelCapabilities",
    "quantization",
    "modelConfiguration",
    "diffusionPipeline",
)
#: OME's ``modelConfiguration`` keys (the Go struct it marshals), in its order.
_CONFIGURATION_KEYS = (
    "model_type",
    "architecture",
    "context_length",
    "parameter_count",
    "has_vision",
    "is_embedding",
    "transformers_version",
    "torch_dtype",
    "model_size_bytes",
)
_NAMED_COMPONENTS = {
    "scheduler": "scheduler",
    "text_encoder": "textEncoder",
    "tokenizer": "tokenizer",
    "transformer": "transformer",
    "vae": "vae",
}
_DEFAULTS: dict[str, Any] = {
    "model_type": "",
    "architecture": "",
    "context_length": 0,
    "parameter_count": "",
    "has_vision": False,
    "is_embedding": False,
    "transformers_version": "",
    "torch_dtype": "",
    "model_size_bytes": 0,
}


def ome_quantization(method: str) -> str:
    """OME's ``spec.quantization`` for a config's ``quant_method`` (``""``: leave it unset)."""
    lowered = method.lower()
    if "int4" in lowered:
        return "int4"
    if "fp8" in lowered:
        return "fp8"
    return ""


def _diffusion_pipeline(decoded: Mapping[str, Any], class_name: str) -> dict[str, Any]:
    pipeline: dict[str, Any] = {"className": class_name} if class_name else {}
    additional: dict[str, Any] = {}
    components = decoded.get("diffusion_components") or {}
    for name, component in sorted(components.items()):
        if not isinstance(component, Mapping):
            continue
        value = {k: component[k] for k in ("library", "type") if component.get(k)}
        if name in _NAMED_COMPONENTS:
            pipeline[_NAMED_COMPONENTS[name]] = value
        else:
            additional[name] = value
    if additional:
        pipeline["additionalComponents"] = additional
    return pipeline


def values(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every field OME would write for this analysis, with OME's values (unset ones left out).
    An analysis that failed (``analysisError``, no ``modelType``) writes nothing, as OME's
    parser returns before it updates the model."""
    decoded = config.get("decodedModelConfiguration")
    if not isinstance(decoded, Mapping) or not config.get("modelType"):
        return {}
    diffusion = config.get("modelType") == "diffusers"
    out: dict[str, Any] = {
        "modelType": config.get("modelType"),
        "modelArchitecture": config.get("modelArchitecture"),
        "modelParameterSize": config.get("modelParameterSize"),
        "maxTokens": config.get("maxTokens"),
        "modelCapabilities": list(config.get("modelCapabilities") or []),
        "modelConfiguration": {k: decoded.get(k, _DEFAULTS[k]) for k in _CONFIGURATION_KEYS},
    }
    if diffusion:
        version = str((config.get("modelFormat") or {}).get("version") or "")
        out["modelFormat"] = {"name": "diffusers", "version": version}
        out["modelFramework"] = {"name": "diffusers", "version": version}
        out["diffusionPipeline"] = _diffusion_pipeline(
            decoded, str(config.get("modelArchitecture") or "")
        )
    else:
        out["modelFormat"] = {"name": "safetensors", "version": "1.0.0"}
        framework = {"name": "transformers"}
        if decoded.get("transformers_version"):
            framework["version"] = str(decoded["transformers_version"])
        out["modelFramework"] = framework
        out["quantization"] = ome_quantization(str(decoded.get("quantization_method") or ""))
    return {k: v for k, v in out.items() if v not in (None, "", 0, [], {})}


def _is_set(spec: Mapping[str, Any], field: str) -> bool:
    value = spec.get(field)
    if field == "modelFormat":  # a struct, not a pointer, in OME: set when it has a name
        return isinstance(value, Mapping) and bool(value.get("name"))
    return value not in (None, "", [], {})


def fill(spec: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``spec`` that are unset and that the analysis can fill."""
    return {
        field: value
        for field, value in values(config).items()
        if field in FIELDS and not _is_set(spec, field)
    }
