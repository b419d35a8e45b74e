"""Builders for model folders on disk: safetensors files (header + zero or patterned tensor
data), sharded models with an index, config.json and tokenizer files.

Plain functions, no fixtures: tests of the analysis, the pipeline and the operator use them to
make realistic yet tiny models. Shapes are kept as given, so a test can describe a 7B model's
header while writing only small shapes, or write the real byte count when it needs it.
"""

from __future__ import annotations

import json
import math
import pathlib
import struct
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_TENSORS",
    "DTYPE_BITS",
    "TINY_LLAMA_TENSORS",
    "safetensors_header",
    "tensor_nbytes",
    "tiny_llama_files",
    "write_model",
    "write_safetensors",
]

#: Storage bits per element of each safetensors dtype name.
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
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}

#: A tiny Llama-like config used when a test does not pass one.
DEFAULT_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_attention_heads": 2,
    "num_hidden_layers": 1,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "vocab_size": 64,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0",
}

#: Tensors matching DEFAULT_CONFIG (4,656 parameters, all BF16).
DEFAULT_TENSORS: dict[str, tuple[str, Sequence[int]]] = {
    "model.embed_tokens.weight": ("BF16", (64, 16)),
    "model.layers.0.self_attn.q_proj.weight": ("BF16", (16, 16)),
    "model.layers.0.self_attn.k_proj.weight": ("BF16", (16, 16)),
    "model.layers.0.self_attn.v_proj.weight": ("BF16", (16, 16)),
    "model.layers.0.self_attn.o_proj.weight": ("BF16", (16, 16)),
    "model.layers.0.mlp.gate_proj.weight": ("BF16", (32, 16)),
    "model.layers.0.mlp.up_proj.weight": ("BF16", (32, 16)),
    "model.layers.0.mlp.down_proj.weight": ("BF16", (16, 32)),
    "model.layers.0.input_layernorm.weight": ("BF16", (16,)),
    "model.layers.0.post_attention_layernorm.weight": ("BF16", (16,)),
    "model.norm.weight": ("BF16", (16,)),
    "lm_head.weight": ("BF16", (64, 16)),
}


def tensor_nbytes(dtype: str, shape: Sequence[int]) -> int:
    """Bytes a tensor of this dtype and shape occupies in a safetensors file."""
    return math.ceil(math.prod(shape) * DTYPE_BITS[dtype] / 8)


def safetensors_header(
    tensors: Mapping[str, tuple[str, Sequence[int]]],
    *,
    metadata: Mapping[str, str] | None = None,
) -> tuple[bytes, int]:
    """The length-prefixed header for ``tensors`` laid out back to back; and the data size."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = tensor_nbytes(dtype, shape)
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(raw)) + raw, offset


#: The reference serializer's names of the safetensors dtypes it writes (numpy's where numpy
#: has the type). F4 and F6 are missing: those files are laid out by ``safetensors_header``.
_REFERENCE_DTYPES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "U32": "uint32",
    "I32": "int32",
    "U64": "uint64",
    "I64": "int64",
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "C64": "complex64",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}


def _pattern(fill: bytes, size: int) -> bytes:
    unit = fill or b"\0"
    return (unit * (size // len(unit) + 1))[:size]


def write_safetensors(
    path: pathlib.Path | str,
    tensors: Mapping[str, tuple[str, Sequence[int]]],
    *,
    fill: bytes = b"\0",
    sparse: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write a valid safetensors file and return its size (header + data).

    Written by the format's reference serializer (``safetensors.numpy.save_file`` when every
    dtype is a numpy type, else the same library's ``serialize_file``), so the agent's reader
    is proven against it. ``fill`` is repeated over the tensor data. With ``sparse=True`` (a
    "7B" file that costs no disk) or a dtype the library cannot write (F4, F6), the file is
    laid out by ``safetensors_header`` and the data region is a hole or the pattern.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not sparse and all(dtype in _REFERENCE_DTYPES for dtype, _ in tensors.values()):
        return _write_reference(path, tensors, fill, metadata)
    head, data_size = safetensors_header(tensors, metadata=metadata)
    with path.open("wb") as out:
        out.write(head)
        if sparse:
            out.truncate(len(head) + data_size)
        else:
            unit = fill or b"\0"
            chunk = unit * ((1 << 16) // len(unit) + 1)
            remaining = data_size
            while remaining > 0:
                piece = chunk[: min(remaining, len(chunk))]
                out.write(piece)
                remaining -= len(piece)
    return len(head) + data_size


def _write_reference(
    path: pathlib.Path,
    tensors: Mapping[str, tuple[str, Sequence[int]]],
    fill: bytes,
    metadata: Mapping[str, str] | None,
) -> int:
    import numpy as np
    import safetensors
    import safetensors.numpy

    meta = dict(metadata) if metadata is not None else None
    names = {dtype: _REFERENCE_DTYPES[dtype] for dtype, _ in tensors.values()}
    if all(hasattr(np, name) for name in names.values()):
        arrays = {
            name: np.frombuffer(
                _pattern(fill, tensor_nbytes(dtype, shape)), dtype=names[dtype]
            ).reshape(tuple(shape))
            for name, (dtype, shape) in tensors.items()
        }
        safetensors.numpy.save_file(arrays, str(path), metadata=meta)
    else:
        buffers = {
            name: np.frombuffer(_pattern(fill, tensor_nbytes(dtype, shape)), dtype=np.uint8)
            for name, (dtype, shape) in tensors.items()
        }
        specs = {
            name: safetensors.TensorSpec(
                dtype=names[dtype],
                shape=tuple(shape),
                data_ptr=buffers[name].ctypes.data,
                data_len=buffers[name].nbytes,
            )
            for name, (dtype, shape) in tensors.items()
        }
        safetensors.serialize_file(specs, str(path), metadata=meta)
    return path.stat().st_size


def _split(
    tensors: Mapping[str, tuple[str, Sequence[int]]], shards: int
) -> list[dict[str, tuple[str, Sequence[int]]]]:
    names = list(tensors)
    parts: list[dict[str, tuple[str, Sequence[int]]]] = [{} for _ in range(shards)]
    for i, name in enumerate(names):
        parts[i * shards // max(len(names), 1)][name] = tensors[name]
    return parts


def write_model(
    directory: pathlib.Path | str,
    *,
    config: Mapping[str, Any] | None = None,
    shards: int = 1,
    tensors: Mapping[str, tuple[str, Sequence[int]]] | None = None,
    tokenizer: bool = True,
    sparse: bool = False,
) -> pathlib.Path:
    """Write a small Hugging Face style model folder and return it.

    Files: config.json; model.safetensors (shards == 1) or
    model-0000i-of-0000n.safetensors plus model.safetensors.index.json; with ``tokenizer``,
    tokenizer.json, tokenizer_config.json and special_tokens_map.json. Each shard holds at least
    one tensor when there are enough tensors; extra shards would be empty and are still valid.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = dict(DEFAULT_CONFIG if config is None else config)
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    all_tensors = dict(DEFAULT_TENSORS if tensors is None else tensors)
    if shards <= 1:
        write_safetensors(directory / "model.safetensors", all_tensors, sparse=sparse)
    else:
        weight_map: dict[str, str] = {}
        total = 0
        for i, part in enumerate(_split(all_tensors, shards), start=1):
            name = f"model-{i:05d}-of-{shards:05d}.safetensors"
            total += write_safetensors(directory / name, part, sparse=sparse)
            for tensor in part:
                weight_map[tensor] = name
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    if tokenizer:
        (directory / "tokenizer.json").write_text(
            json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}})
        )
        (directory / "tokenizer_config.json").write_text(
            json.dumps({"model_max_length": cfg.get("max_position_embeddings", 2048)})
        )
        (directory / "special_tokens_map.json").write_text(json.dumps({"eos_token": "</s>"}))
    return directory


#: Two 8x8 F32 tensors: a llama small enough for operator tests to pull in milliseconds.
TINY_LLAMA_TENSORS: dict[str, tuple[str, list[int]]] = {
    "model.embed_tokens.weight": ("F32", [8, 8]),
    "lm_head.weight": ("F32", [8, 8]),
}


def tiny_llama_files(
    directory: pathlib.Path, *, extra: Mapping[str, bytes] | None = None, **config: Any
) -> dict[str, bytes]:
    """A tiny llama model (config.json with ``config`` overrides, safetensors, tokenizer)
    written to ``directory``, plus ``extra`` files, as ``{file name: bytes}`` for a repo."""
    folder = write_model(
        directory,
        config={
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "max_position_embeddings": 4096,
            "torch_dtype": "float32",
            **config,
        },
        tensors=TINY_LLAMA_TENSORS,
    )
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files.update(extra or {})
    return files
