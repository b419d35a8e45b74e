"""Quantization declared by a config: method, bit width, kind, and the ConfigMap label.

Reads ``quantization_config`` (or ``compression_config``) at the top level or in the language
sub-config. Labels follow OME's vocabulary where it has one (``fp8``, ``fbgemm_fp8``,
``int4``) and name the scheme otherwise (``int8``, ``mxfp4``, ``nvfp4``, ``nf4``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Quantization", "quantization"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quantization:
    """A model's quantization: ``method`` as the config names it (``awq``, ``fp8``...),
    ``bits`` and ``kind`` (``int``/``float``) of the weights, and ``label``: the short value
    written to the ConfigMap's ``quantization`` (OME's ``fp8``, ``fbgemm_fp8``, ``int4``...)."""

    method: str
    bits: int | None
    kind: str | None
    label: str


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


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


def quantization(scopes: Sequence[Mapping[str, Any]]) -> Quantization | None:
    """The quantization declared in ``scopes`` (the top level last, and it wins), or None."""
    qc: Mapping[str, Any] | None = None
    for scope in reversed(scopes):
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
