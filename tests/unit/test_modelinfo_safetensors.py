"""Safetensors header parsing and parameter counting, from hand-built header bytes.

Aspects covered:
- exact element sums per dtype, integer buffers (an I64 ``position_ids``) included, and the
  real all-MiniLM-L6-v2 tensor list giving OME's "22.71M";
- packed quantized weights expanded (GPTQ and AWQ int4 in I32, GPTQ int8, compressed-tensors
  int4 and NVFP4, gpt-oss MXFP4 blocks, bitsandbytes 4-bit) and their scales, zeros, g_idx
  and quant state excluded, while their bytes still count as tensor bytes;
- hostile headers: length 2^63, a 200 MB claim, a length past the end of the file, short
  files, non-JSON, non-objects, unknown dtypes, negative, boolean, float and overflowing
  dimensions, offsets that disagree with the shape or run past the data; every error names
  the file;
- shard indexes: shards deduplicated, unsafe or empty names rejected;
- which files hold the weights when there is no index (model.safetensors, consolidated
  duplicates, diffusers variants);
- OME's parameter-size strings.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence

import pytest

from model_agent import errors
from model_agent.modelinfo import formatting, safetensors
from tests.harness import modelfiles

Tensors = Mapping[str, tuple[str, Sequence[int]]]
SOURCE = "/models/m/model.safetensors"


def _parse(tensors: Tensors) -> safetensors.Header:
    head, data_size = modelfiles.safetensors_header(tensors)
    return safetensors.parse_header(head[8:], source=SOURCE, file_size=len(head) + data_size)


def _count(tensors: Tensors, *, int_bits: int = 4) -> safetensors.ParameterCount:
    return safetensors.count_parameters(_parse(tensors), int_bits=int_bits)


def _raw_header(header: object, *, data_size: int = 0) -> tuple[bytes, int]:
    raw = json.dumps(header).encode()
    return raw, 8 + len(raw) + data_size


def test_every_tensor_counts_its_elements_integer_buffers_included() -> None:
    tensors = {
        "embed.weight": ("BF16", (1000, 64)),
        "norm.weight": ("F32", (64,)),
        "embeddings.position_ids": ("I64", (1, 512)),
        "scalar": ("F32", ()),
    }
    count = _count(tensors)
    assert count.by_dtype == {"BF16": 64000, "F32": 65, "I64": 512}
    assert count.total == 64000 + 64 + 512 + 1
    assert count.tensor_bytes == 64000 * 2 + 64 * 4 + 512 * 8 + 4
    assert count.tensors == 4


def _minilm_tensors() -> dict[str, tuple[str, tuple[int, ...]]]:
    h, inner, vocab = 384, 1536, 30522
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {
        "embeddings.word_embeddings.weight": ("F32", (vocab, h)),
        "embeddings.position_embeddings.weight": ("F32", (512, h)),
        "embeddings.token_type_embeddings.weight": ("F32", (2, h)),
        "embeddings.LayerNorm.weight": ("F32", (h,)),
        "embeddings.LayerNorm.bias": ("F32", (h,)),
        "embeddings.position_ids": ("I64", (1, 512)),
        "pooler.dense.weight": ("F32", (h, h)),
        "pooler.dense.bias": ("F32", (h,)),
    }
    for i in range(6):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            tensors[f"{p}attention.self.{name}.weight"] = ("F32", (h, h))
            tensors[f"{p}attention.self.{name}.bias"] = ("F32", (h,))
        tensors[f"{p}attention.output.dense.weight"] = ("F32", (h, h))
        tensors[f"{p}attention.output.dense.bias"] = ("F32", (h,))
        tensors[f"{p}attention.output.LayerNorm.weight"] = ("F32", (h,))
        tensors[f"{p}attention.output.LayerNorm.bias"] = ("F32", (h,))
        tensors[f"{p}intermediate.dense.weight"] = ("F32", (inner, h))
        tensors[f"{p}intermediate.dense.bias"] = ("F32", (inner,))
        tensors[f"{p}output.dense.weight"] = ("F32", (h, inner))
        tensors[f"{p}output.dense.bias"] = ("F32", (h,))
        tensors[f"{p}output.LayerNorm.weight"] = ("F32", (h,))
        tensors[f"{p}output.LayerNorm.bias"] = ("F32", (h,))
    return tensors


def test_all_minilm_l6_v2_counts_to_omes_22_71m() -> None:
    tensors = _minilm_tensors()
    count = _count(tensors)
    assert count.total == sum(math.prod(shape) for _, shape in tensors.values()) == 22_713_728
    assert formatting.format_parameter_count(count.total) == "22.71M"


def test_gptq_int4_qweight_counts_eight_values_per_int32_and_skips_its_auxiliaries() -> None:
    d_in, d_out, group = 4096, 1024, 128
    tensors = {
        "layer.qweight": ("I32", (d_in // 8, d_out)),
        "layer.qzeros": ("I32", (d_in // group, d_out // 8)),
        "layer.scales": ("F16", (d_in // group, d_out)),
        "layer.g_idx": ("I32", (d_in,)),
        "layer.bias": ("F16", (d_out,)),
        "embed.weight": ("F16", (100, 64)),
    }
    count = _count(tensors, int_bits=4)
    assert count.by_dtype == {"I4": d_in * d_out, "F16": d_out + 6400}
    stored = sum(modelfiles.tensor_nbytes(dt, shape) for dt, shape in tensors.values())
    assert count.tensor_bytes == stored


def test_awq_qweight_packs_along_the_output_dimension_and_counts_the_same() -> None:
    d_in, d_out = 2048, 512
    tensors = {
        "mlp.qweight": ("I32", (d_in, d_out // 8)),
        "mlp.qzeros": ("I32", (d_in // 128, d_out // 8)),
        "mlp.scales": ("F16", (d_in // 128, d_out)),
    }
    assert _count(tensors).by_dtype == {"I4": d_in * d_out}


def test_gptq_int8_qweight_counts_four_values_per_int32() -> None:
    assert _count({"l.qweight": ("I32", (256, 64))}, int_bits=8).by_dtype == {"I8": 256 * 64 * 4}


def test_compressed_tensors_packed_int4_and_nvfp4_are_expanded_and_metadata_skipped() -> None:
    tensors = {
        "a.weight_packed": ("I32", (64, 16)),
        "a.weight_scale": ("BF16", (64, 1)),
        "a.weight_shape": ("I64", (2,)),
        "a.weight_zero_point": ("I32", (64, 1)),
        "b.weight_packed": ("U8", (64, 64)),
        "b.weight_scale": ("F8_E4M3", (64, 8)),
        "b.weight_global_scale": ("F32", (1,)),
        "b.input_global_scale": ("F32", (1,)),
    }
    assert _count(tensors).by_dtype == {"I4": 64 * 16 * 8, "F4": 64 * 64 * 2}


def test_gpt_oss_mxfp4_blocks_hold_two_values_per_byte_and_their_scales_are_skipped() -> None:
    experts, out, blocks = 4, 64, 3
    tensors = {
        "model.layers.0.mlp.experts.gate_up_proj_blocks": ("U8", (experts, out, blocks, 16)),
        "model.layers.0.mlp.experts.gate_up_proj_scales": ("U8", (experts, out, blocks)),
        "model.layers.0.mlp.experts.gate_up_proj_bias": ("BF16", (experts, out)),
        "model.layers.0.mlp.router.weight": ("BF16", (experts, 96)),
    }
    count = _count(tensors)
    assert count.by_dtype == {"F4": experts * out * blocks * 32, "BF16": experts * out + 4 * 96}


def test_an_unrelated_tensor_ending_in_scales_is_still_a_parameter() -> None:
    # Only ``*_scales`` next to a matching ``*_blocks`` are MXFP4 scales.
    assert _count({"head.feature_scales": ("F32", (10,))}).total == 10
    assert _count({"clip.logit_scale": ("F32", ())}).total == 1


def test_bitsandbytes_4bit_weights_are_expanded_and_their_quant_state_skipped() -> None:
    tensors = {
        "q.weight": ("U8", (512, 1)),
        "q.weight.absmax": ("F32", (16,)),
        "q.weight.quant_map": ("F32", (16,)),
        "q.weight.quant_state.bitsandbytes__nf4": ("U8", (80,)),
        "norm.weight": ("F16", (32,)),
    }
    assert _count(tensors).by_dtype == {"U4": 1024, "F16": 32}


def test_fp8_weights_count_as_is_and_their_inverse_scales_are_skipped() -> None:
    tensors = {
        "mlp.weight": ("F8_E4M3", (256, 128)),
        "mlp.weight_scale_inv": ("F32", (2, 1)),
        "attn.k_scale": ("F32", ()),
    }
    count = _count(tensors)
    assert count.by_dtype == {"F8_E4M3": 256 * 128}
    assert count.tensor_bytes == 256 * 128 + 8 + 4


def test_counts_merge_across_shards() -> None:
    one = _count({"a": ("BF16", (10,))})
    two = _count({"b": ("BF16", (5,)), "c": ("F32", (2,))})
    merged = safetensors.merge_counts([one, two])
    assert merged.by_dtype == {"BF16": 15, "F32": 2}
    assert (merged.total, merged.tensor_bytes, merged.tensors) == (17, 20 + 10 + 8, 3)


def test_metadata_is_kept_and_not_counted() -> None:
    head, size = modelfiles.safetensors_header({"w": ("F16", (4,))}, metadata={"format": "pt"})
    header = safetensors.parse_header(head[8:], source=SOURCE, file_size=len(head) + size)
    assert header.metadata == {"format": "pt"}
    assert safetensors.count_parameters(header).total == 4


# --- hostile headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "file_size", "message"),
    [
        (2**63, 10**12, "exceeds"),
        (2**64 - 1, 10**12, "exceeds"),
        (200_000_000, 300_000_000, "exceeds"),
        (1000, 500, "past the end"),
        (1, 100, "too short"),
    ],
    ids=["2^63", "2^64-1", "200MB-claim", "past-end", "tiny"],
)
def test_bad_header_lengths_are_rejected_before_anything_is_allocated(
    length: int, file_size: int, message: str
) -> None:
    with pytest.raises(errors.ModelInfoError, match=message) as caught:
        safetensors.header_length(struct.pack("<Q", length), source=SOURCE, file_size=file_size)
    assert SOURCE in str(caught.value)


def test_a_header_length_at_the_cap_is_accepted_and_one_byte_more_is_not() -> None:
    cap = safetensors.MAX_HEADER_BYTES
    prefix = struct.pack("<Q", cap)
    assert safetensors.header_length(prefix, source=SOURCE, file_size=cap + 8) == cap
    with pytest.raises(errors.ModelInfoError, match="exceeds"):
        safetensors.header_length(struct.pack("<Q", cap + 1), source=SOURCE, file_size=cap * 2)


def test_an_entry_with_extra_keys_is_read_for_its_three_known_ones() -> None:
    header = {"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8], "future": 1}}
    raw, size = _raw_header(header, data_size=8)
    parsed = safetensors.parse_header(raw, source=SOURCE, file_size=size)
    assert safetensors.count_parameters(parsed).total == 4


def test_a_file_shorter_than_the_length_prefix_is_rejected() -> None:
    with pytest.raises(errors.ModelInfoError, match="shorter than"):
        safetensors.header_length(b"\x01\x02", source=SOURCE, file_size=2)


def _entry(dtype: str = "F32", shape: object = (2, 2), offsets: object = (0, 16)) -> object:
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}  # fmt: skip


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"not json at all", "not valid JSON"),
        (b"\xff\xfe\xfd", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"[" * 50_000 + b"]" * 50_000, "not valid JSON"),
        ({"w": "a string"}, "not an object"),
        ({"w": _entry(dtype="F128")}, "unknown dtype"),
        ({"w": _entry(shape=(2, -2))}, "invalid dimension"),
        ({"w": _entry(shape=(True, 2))}, "invalid dimension"),
        ({"w": _entry(shape=(2.0, 2))}, "invalid dimension"),
        ({"w": _entry(shape=(2**64, 1))}, "invalid dimension"),
        ({"w": _entry(shape=(2**62, 2**62), offsets=(0, 16))}, "overflows"),
        ({"w": _entry(shape="2x2")}, "shape must be"),
        ({"w": _entry(shape=[1] * 65)}, "shape must be"),
        ({"w": _entry(offsets=(16, 0))}, "invalid data_offsets"),
        ({"w": _entry(offsets=(-16, 0))}, "invalid data_offsets"),
        ({"w": _entry(offsets=(0,))}, "data_offsets must be"),
        ({"w": _entry(offsets=(0, 12))}, "needs 16 bytes"),
        ({"w": _entry(offsets=(0, 4096))}, "run past"),
    ],
    ids=[
        "text",
        "bad-utf8",
        "array",
        "deep-nesting",
        "entry-not-object",
        "unknown-dtype",
        "negative-dim",
        "bool-dim",
        "float-dim",
        "dim-beyond-int64",
        "overflowing-shape",
        "shape-not-list",
        "rank-65",
        "offsets-reversed",
        "offsets-negative",
        "offsets-short",
        "offsets-disagree-with-shape",
        "offsets-past-data",
    ],
)
def test_malformed_headers_raise_a_model_info_error_naming_the_file(
    header: object, message: str
) -> None:
    if isinstance(header, bytes):
        raw, size = header, 8 + len(header) + 16
    else:
        raw, size = _raw_header(header, data_size=16)
    with pytest.raises(errors.ModelInfoError, match=message) as caught:
        safetensors.parse_header(raw, source=SOURCE, file_size=size)
    assert SOURCE in str(caught.value)


def test_a_zero_size_tensor_is_valid() -> None:
    assert _count({"empty": ("F32", (0, 16))}).total == 0


# --- indexes and file selection ---------------------------------------------------------------


def _index(weight_map: object) -> bytes:
    return json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}).encode()


def test_an_index_lists_each_shard_once_in_order() -> None:
    data = _index(
        {
            "a": "model-00002-of-00002.safetensors",
            "b": "model-00001-of-00002.safetensors",
            "c": "model-00002-of-00002.safetensors",
        }
    )
    assert safetensors.parse_index(data, source="idx") == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]


@pytest.mark.parametrize(
    "weight_map",
    [
        {},
        [],
        {"a": ""},
        {"a": 3},
        {"a": "../outside.safetensors"},
        {"a": "/etc/passwd.safetensors"},
        {"a": "sub\\x.safetensors"},
        {"a": "sub/../../x.safetensors"},
        {"a": "pytorch_model.bin"},
    ],
    ids=["empty", "list", "blank", "number", "dotdot", "absolute", "backslash", "escape", "bin"],
)
def test_an_index_with_unsafe_or_missing_shard_names_is_rejected(weight_map: object) -> None:
    with pytest.raises(errors.ModelInfoError, match=r"model\.safetensors\.index\.json"):
        safetensors.parse_index(_index(weight_map), source="/m/model.safetensors.index.json")


def test_an_index_that_is_not_json_is_rejected() -> None:
    with pytest.raises(errors.ModelInfoError, match="not valid JSON"):
        safetensors.parse_index(b"{", source="idx")


@pytest.mark.parametrize(
    ("names", "chosen"),
    [
        (["model.safetensors", "consolidated.safetensors"], ["model.safetensors"]),
        (["consolidated.safetensors", "x.txt"], ["consolidated.safetensors"]),
        (
            ["consolidated.safetensors", "a-1.safetensors", "a-2.safetensors"],
            ["a-1.safetensors", "a-2.safetensors"],
        ),
        (
            ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
            ["diffusion_pytorch_model.safetensors"],
        ),
        (
            ["diffusion_pytorch_model.fp16.safetensors"],
            ["diffusion_pytorch_model.fp16.safetensors"],
        ),
        (["pytorch_model.bin", "config.json"], []),
    ],
    ids=[
        "model-wins",
        "consolidated-alone",
        "consolidated-duplicate",
        "variant",
        "only-variant",
        "none",
    ],
)
def test_weight_files_are_chosen_without_double_counting(
    names: list[str], chosen: list[str]
) -> None:
    assert safetensors.select_files(names) == chosen


# --- OME's parameter-size strings -------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (7_615_616_512, "7.62B"),
        (685_000_000_000, "685B"),
        (671_026_419_200, "671.03B"),
        (22_713_216, "22.71M"),
        (1_500_000, "1.5M"),
        (1_000, "1K"),
        (999, "999"),
        (0, "0"),
        (1_000_000_000_000, "1T"),
        (1_234_500_000_000, "1.23T"),
        (8_030_261_248, "8.03B"),
        (2**63 - 1, "9223372.04T"),
    ],
)
def test_parameter_sizes_are_formatted_as_ome_does(count: int, text: str) -> None:
    assert formatting.format_parameter_count(count) == text


def test_a_negative_parameter_count_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        formatting.format_parameter_count(-1)
