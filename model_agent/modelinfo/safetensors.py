"""Safetensors headers and shard indexes, parsed from bytes; dtype-aware parameter counting.

A safetensors file starts with an 8-byte little-endian header length, then that many bytes of
JSON: ``{"<tensor>": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``,
then the tensor data. This module validates the header against the file size (so a hostile
file cannot make the caller allocate gigabytes or trust impossible offsets) and counts
parameters the way a reader of the model means them:

- every tensor's elements count, integer buffers included (an ``I64`` ``position_ids``);
- packed quantized weights count their real elements: GPTQ/AWQ ``qweight`` and
  compressed-tensors ``weight_packed`` in ``I32`` hold ``32 / bits`` values, FP4 ``*_blocks`` /
  ``weight_packed`` in ``U8`` and bitsandbytes 4-bit weights hold 2;
- quantization auxiliaries (scales, zero points, ``g_idx``, bitsandbytes quant state) are not
  parameters, but their bytes still count towards the memory the weights take.

No I/O: ``model_agent.inspection`` reads the bytes and passes them in.
"""

from __future__ import annotations

import dataclasses
import json
import math
import posixpath
import struct
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from model_agent import errors

__all__ = [
    "DTYPE_BITS",
    "MAX_HEADER_BYTES",
    "PREFIX_BYTES",
    "Header",
    "ParameterCount",
    "Tensor",
    "count_parameters",
    "header_length",
    "merge_counts",
    "parse_header",
    "parse_index",
    "select_files",
]

#: The 8-byte length prefix.
PREFIX_BYTES = 8
#: Largest header we accept. The format allows 100,000,000 bytes, but parsing a header costs
#: about 5x its size in memory (30 MB measured at 150 MB peak), and the largest real headers
#: are well under 1 MB (a few thousand tensors per file); 16 MiB still admits ~140k tensors.
MAX_HEADER_BYTES = 16 * 1024 * 1024
_MAX_RANK = 64
_INT64_MAX = 2**63 - 1

#: Storage bits per element of every safetensors dtype.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}

#: Last name components that are quantization bookkeeping, never parameters.
_AUXILIARY = frozenset(
    {
        "scales",
        "qzeros",
        "zeros",
        "g_idx",
        "weight_scale",
        "weight_scale_inv",
        "weight_scale_2",
        "input_scale",
        "output_scale",
        "k_scale",
        "v_scale",
        "q_scale",
        "prob_scale",
        "weight_zero_point",
        "input_zero_point",
        "weight_g_idx",
        "weight_shape",
        "weight_global_scale",
        "input_global_scale",
        "input_scale_ub",
        "SCB",
        "absmax",
        "quant_map",
        "nested_absmax",
        "nested_quant_map",
        "weight_format",
    }
)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Header:
    """One file's validated header: its tensors and the ``__metadata__`` strings."""

    source: str
    tensors: tuple[Tensor, ...]
    metadata: Mapping[str, str]
    header_bytes: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParameterCount:
    """Parameters by logical dtype (packed ones under ``I4``/``F4``...), and storage bytes."""

    by_dtype: Mapping[str, int]
    tensor_bytes: int
    tensors: int

    @property
    def total(self) -> int:
        return sum(self.by_dtype.values())


def header_length(prefix: bytes, *, source: str, file_size: int) -> int:
    """The header length from the first 8 bytes, checked against the cap and the file size."""
    if file_size < PREFIX_BYTES or len(prefix) < PREFIX_BYTES:
        raise errors.ModelInfoError(
            f"{source}: not a safetensors file: {file_size} bytes, shorter than the "
            f"{PREFIX_BYTES}-byte header length"
        )
    (length,) = struct.unpack("<Q", prefix[:PREFIX_BYTES])
    if length > MAX_HEADER_BYTES:
        raise errors.ModelInfoError(
            f"{source}: safetensors header length {length} exceeds the "
            f"{MAX_HEADER_BYTES}-byte limit"
        )
    if length > file_size - PREFIX_BYTES:
        raise errors.ModelInfoError(
            f"{source}: safetensors header length {length} runs past the end of the file "
            f"({file_size} bytes): truncated or not safetensors"
        )
    if length < 2:
        raise errors.ModelInfoError(f"{source}: safetensors header length {length} is too short")
    return int(length)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Entry(NamedTuple):
    """A tensor entry as the JSON parser hands it over: lists already turned into tuples and
    the dtype string shared, so a header with 100k tensors does not hold 100k dicts."""

    dtype: Any
    shape: Any
    offsets: Any


_CANONICAL_DTYPES = {name: name for name in DTYPE_BITS}
_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})


def _compact(pairs: list[tuple[str, Any]]) -> Any:
    """``object_pairs_hook``: tensor entries become ``_Entry`` tuples as soon as they parse."""
    if len(pairs) >= 3 and _ENTRY_KEYS <= {k for k, _ in pairs}:
        entry = dict(pairs)
        dtype = entry["dtype"]
        if isinstance(dtype, str):
            dtype = _CANONICAL_DTYPES.get(dtype, dtype)
        shape, offsets = entry["shape"], entry["data_offsets"]
        return _Entry(
            dtype,
            tuple(shape) if isinstance(shape, list) else shape,
            tuple(offsets) if isinstance(offsets, list) else offsets,
        )
    return dict(pairs)


def _tensor(name: str, entry: Any, *, source: str, data_size: int | None) -> Tensor:
    where = f"{source}: tensor {name!r}"
    if not isinstance(entry, _Entry):
        raise errors.ModelInfoError(
            f"{where}: entry is not an object with dtype, shape and data_offsets"
        )
    dtype, shape, offsets = entry
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise errors.ModelInfoError(f"{where}: unknown dtype {dtype!r}")
    if not isinstance(shape, tuple) or len(shape) > _MAX_RANK:
        raise errors.ModelInfoError(f"{where}: shape must be a list of at most {_MAX_RANK} ints")
    for dim in shape:
        value = _int(dim)
        if value is None or value < 0 or value > _INT64_MAX:
            raise errors.ModelInfoError(
                f"{where}: invalid dimension {dim!r} in shape {list(shape)}"
            )
    if not isinstance(offsets, tuple) or len(offsets) != 2:
        raise errors.ModelInfoError(f"{where}: data_offsets must be [begin, end]")
    begin, end = _int(offsets[0]), _int(offsets[1])
    if begin is None or end is None or not 0 <= begin <= end:
        raise errors.ModelInfoError(f"{where}: invalid data_offsets {list(offsets)}")
    if data_size is not None and end > data_size:
        raise errors.ModelInfoError(
            f"{where}: data_offsets {list(offsets)} run past the {data_size}-byte data section"
        )
    elements = math.prod(shape)
    if elements > _INT64_MAX:
        raise errors.ModelInfoError(f"{where}: shape {list(shape)} overflows 64 bits")
    expected = (elements * DTYPE_BITS[dtype] + 7) // 8
    if end - begin != expected:
        raise errors.ModelInfoError(
            f"{where}: shape {list(shape)} of {dtype} needs {expected} bytes, "
            f"data_offsets {list(offsets)} hold {end - begin}"
        )
    return Tensor(name=name, dtype=dtype, shape=shape, begin=begin, end=end)


def parse_header(data: bytes, *, source: str, file_size: int | None = None) -> Header:
    """Validate and parse the JSON header bytes (without the 8-byte prefix).

    ``file_size``, when given, is the whole file's size: offsets must stay inside its data
    section. Raises ``errors.ModelInfoError`` naming ``source`` for anything malformed.
    """
    try:
        raw = json.loads(data.decode("utf-8"), object_pairs_hook=_compact)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise errors.ModelInfoError(
            f"{source}: safetensors header is not valid JSON: {exc}"
        ) from exc
    if not isinstance(raw, dict):
        raise errors.ModelInfoError(f"{source}: safetensors header is not a JSON object")
    data_size = None if file_size is None else file_size - PREFIX_BYTES - len(data)
    if data_size is not None and data_size < 0:
        raise errors.ModelInfoError(f"{source}: header is larger than the file")
    metadata: dict[str, str] = {}
    tensors: list[Tensor] = []
    for name, entry in raw.items():
        if name == "__metadata__":
            if isinstance(entry, dict):
                metadata = {str(k): str(v) for k, v in entry.items()}
            continue
        tensors.append(_tensor(name, entry, source=source, data_size=data_size))
    return Header(source=source, tensors=tuple(tensors), metadata=metadata, header_bytes=len(data))


def _is_auxiliary(name: str, names: frozenset[str]) -> bool:
    last = name.rsplit(".", 1)[-1]
    if last in _AUXILIARY or ".quant_state." in name or last.startswith("quant_state"):
        return True
    # gpt-oss MXFP4: ``experts.down_proj_scales`` accompany ``experts.down_proj_blocks``.
    return last.endswith("_scales") and name[: -len("_scales")] + "_blocks" in names


def _packed(tensor: Tensor, names: frozenset[str], int_bits: int) -> tuple[str, int] | None:
    """(logical dtype, values per stored element) for a packed weight, else None."""
    last = tensor.name.rsplit(".", 1)[-1]
    if tensor.dtype in ("I32", "U32") and last in ("qweight", "weight_packed"):
        bits = int_bits if int_bits in (2, 3, 4, 8) else 4
        return f"I{bits}", 32 // bits if 32 % bits == 0 else 0
    if tensor.dtype == "U8":
        if last == "weight_packed" or last.endswith("_blocks"):
            return "F4", 2
        if f"{tensor.name}.absmax" in names or any(
            n.startswith(f"{tensor.name}.quant_state.bitsandbytes__") for n in names
        ):
            return "U4", 2
    return None


def count_parameters(header: Header, *, int_bits: int = 4) -> ParameterCount:
    """Parameters per logical dtype in one file's header; ``int_bits`` is the quantization's
    bit width for integer-packed weights (GPTQ/AWQ ``bits``, compressed-tensors ``num_bits``)."""
    names = frozenset(t.name for t in header.tensors)
    by_dtype: dict[str, int] = {}
    tensor_bytes = 0
    for tensor in header.tensors:
        tensor_bytes += tensor.end - tensor.begin
        if _is_auxiliary(tensor.name, names):
            continue
        packed = _packed(tensor, names, int_bits)
        if packed is None:
            dtype, elements = tensor.dtype, tensor.elements
        elif packed[1] == 0:  # 3-bit GPTQ: 32 bits do not split evenly, count stored bits
            dtype, elements = packed[0], tensor.elements * 32 // int_bits
        else:
            dtype, elements = packed[0], tensor.elements * packed[1]
        by_dtype[dtype] = by_dtype.get(dtype, 0) + elements
    return ParameterCount(by_dtype=by_dtype, tensor_bytes=tensor_bytes, tensors=len(header.tensors))


def merge_counts(counts: Sequence[ParameterCount]) -> ParameterCount:
    by_dtype: dict[str, int] = {}
    for count in counts:
        for dtype, n in count.by_dtype.items():
            by_dtype[dtype] = by_dtype.get(dtype, 0) + n
    return ParameterCount(
        by_dtype=by_dtype,
        tensor_bytes=sum(c.tensor_bytes for c in counts),
        tensors=sum(c.tensors for c in counts),
    )


def parse_index(data: bytes, *, source: str) -> list[str]:
    """The shard file names a ``*.safetensors.index.json`` refers to, sorted, deduplicated.

    Names must be relative paths that stay inside the folder (no ``..``, no absolute path,
    no backslash): a hostile index cannot make the reader open files elsewhere.
    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise errors.ModelInfoError(f"{source}: not valid JSON: {exc}") from exc
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise errors.ModelInfoError(f"{source}: no 'weight_map' object with tensors in it")
    shards: set[str] = set()
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise errors.ModelInfoError(f"{source}: tensor {tensor!r} maps to {shard!r}")
        normal = posixpath.normpath(shard)
        if (
            "\\" in shard
            or "\0" in shard
            or normal.startswith(("/", "../"))
            or normal in ("..", ".")
            or not normal.endswith(".safetensors")
        ):
            raise errors.ModelInfoError(f"{source}: unsafe or invalid shard name {shard!r}")
        shards.add(normal)
    return sorted(shards)


def select_files(names: Sequence[str]) -> list[str]:
    """Which ``*.safetensors`` files of a folder hold the model, when there is no index.

    ``model.safetensors`` alone when present; otherwise every safetensors file, except
    Mistral's ``consolidated*.safetensors`` duplicates when other files exist and diffusers'
    variant copies (``x.fp16.safetensors`` next to ``x.safetensors``).
    """
    files = sorted(n for n in names if n.endswith(".safetensors"))
    if "model.safetensors" in files:
        return ["model.safetensors"]
    others = [n for n in files if not n.startswith("consolidated")]
    files = others or files
    present = set(files)
    kept = []
    for name in files:
        stem = name[: -len(".safetensors")]
        base, _, variant = stem.rpartition(".")
        if base and variant and f"{base}.safetensors" in present:
            continue
        kept.append(name)
    return kept
