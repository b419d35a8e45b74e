"""Analysing model folders on disk: ``inspection.inspect_directory`` and ``model-agent inspect``.

Aspects covered:
- a single-file and a sharded model give the same exact count, equal to the element sum;
- a packed GPTQ int4 model counts its real weights; a sentence-transformers folder is an
  embedding model; a config in a usual subfolder is found; a diffusers pipeline sums its
  components (without double-counting fp16 variants) and takes its context from the text
  encoder;
- headers are read by the safetensors library (fixtures come from its serializer) after this
  project's own length cap; what it refuses fails naming the file, an unknown dtype names the
  tensor;
- errors name the file: a missing shard, a 2^63 or 200 MB header claim, a truncated file,
  non-JSON config, a 50 MB config.json, a folder that is not a model; memory stays bounded
  while rejecting them;
- read-only: names, sizes, mtimes and bytes of every file are unchanged afterwards;
- headers only: on 100 sparse shards (about 6.7 GB apparent) the bytes read are a tiny
  fraction of the model and the analysis takes well under a second;
- the CLI prints only JSON on stdout and exits 0, or exits 1 with one line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import struct
import subprocess
import sys
import tracemalloc
from typing import Any

import pytest

from model_agent import errors, inspection
from tests.harness import modelfiles


def _snapshot(root: pathlib.Path) -> dict[str, tuple[int, int, str]]:
    state = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        state[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, digest)
    return state


def _elements(tensors: dict[str, tuple[str, tuple[int, ...]]]) -> int:
    return sum(math.prod(shape) for _, shape in tensors.values())


def test_single_file_and_sharded_models_give_the_same_exact_count(tmp_path: pathlib.Path) -> None:
    single = inspection.inspect_directory(modelfiles.write_model(tmp_path / "one"))
    sharded = inspection.inspect_directory(modelfiles.write_model(tmp_path / "four", shards=4))
    expected = _elements(dict(modelfiles.DEFAULT_TENSORS))  # type: ignore[arg-type]
    for result in (single, sharded):
        decoded = result["decodedModelConfiguration"]
        assert decoded["parameter_count_exact"] == expected == 4656
        assert decoded["model_size_bytes"] == expected * 2
        assert result["modelParameterSize"] == "4.66K"
        assert result["modelType"] == "llama"
        assert result["maxTokens"] == 4096
        assert "artifact" not in result
    assert single == sharded


def test_a_gptq_int4_folder_counts_its_unpacked_weights(tmp_path: pathlib.Path) -> None:
    cfg = {
        **modelfiles.DEFAULT_CONFIG,
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 32},
    }
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {
        "model.embed_tokens.weight": ("F16", (64, 16)),
        "model.layers.0.mlp.up_proj.qweight": ("I32", (64 // 8, 128)),
        "model.layers.0.mlp.up_proj.qzeros": ("I32", (2, 128 // 8)),
        "model.layers.0.mlp.up_proj.scales": ("F16", (2, 128)),
        "model.layers.0.mlp.up_proj.g_idx": ("I32", (64,)),
    }
    modelfiles.write_model(tmp_path, config=cfg, tensors=tensors, shards=2)
    result = inspection.inspect_directory(tmp_path)
    decoded = result["decodedModelConfiguration"]
    assert decoded["parameter_count_exact"] == 64 * 16 + 64 * 128
    assert decoded["parameters_by_dtype"] == {"F16": 1024, "I4": 8192}
    assert result["quantization"] == "int4"
    assert decoded["quantization_method"] == "gptq"


def test_a_sentence_transformers_folder_is_an_embedding_model(tmp_path: pathlib.Path) -> None:
    cfg = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "max_position_embeddings": 512,
        "torch_dtype": "float32",
        "transformers_version": "4.30.0",
    }
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {
        "embeddings.word_embeddings.weight": ("F32", (100, 8)),
        "embeddings.position_ids": ("I64", (1, 512)),
    }
    modelfiles.write_model(tmp_path, config=cfg, tensors=tensors)
    (tmp_path / "config_sentence_transformers.json").write_text('{"similarity_fn_name": "cosine"}')
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 8}')
    result = inspection.inspect_directory(tmp_path)
    assert result["modelCapabilities"] == ["EMBEDDING"]
    assert result["decodedModelConfiguration"]["is_embedding"] is True
    assert result["decodedModelConfiguration"]["parameter_count_exact"] == 800 + 512


def test_a_config_in_a_usual_subfolder_is_found(tmp_path: pathlib.Path) -> None:
    modelfiles.write_model(tmp_path / "safetensors")
    (tmp_path / "README.md").write_text("weights live in safetensors/")
    result = inspection.inspect_directory(tmp_path)
    assert result["decodedModelConfiguration"]["parameter_count_exact"] == 4656


def _component(
    folder: pathlib.Path, tensors: dict[str, tuple[str, tuple[int, ...]]], cfg: dict[str, Any]
) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    modelfiles.write_safetensors(folder / "diffusion_pytorch_model.safetensors", tensors)


def test_a_diffusers_pipeline_sums_its_components_once(tmp_path: pathlib.Path) -> None:
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.27.0",
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "safety_checker": [None, None],
    }
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    encoder = tmp_path / "text_encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["CLIPTextModel"],
                "model_type": "clip_text_model",
                "max_position_embeddings": 77,
                "torch_dtype": "float16",
            }
        )
    )
    modelfiles.write_safetensors(encoder / "model.safetensors", {"w": ("F16", (100, 10))})
    _component(tmp_path / "unet", {"conv.weight": ("F32", (8, 4, 3, 3))}, {"_class_name": "U"})
    modelfiles.write_safetensors(
        tmp_path / "unet" / "diffusion_pytorch_model.fp16.safetensors",
        {"conv.weight": ("F16", (8, 4, 3, 3))},
    )
    _component(tmp_path / "vae", {"dec.weight": ("F32", (16, 16))}, {"_class_name": "V"})
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text("{}")
    result = inspection.inspect_directory(tmp_path)
    assert result["modelType"] == "diffusers"
    assert result["modelArchitecture"] == "StableDiffusionPipeline"
    assert result["modelCapabilities"] == ["TEXT_TO_IMAGE"]
    assert result["maxTokens"] == 77
    assert result["modelFormat"] == {"name": "diffusers", "version": "0.27.0"}
    decoded = result["decodedModelConfiguration"]
    assert decoded["parameter_count_exact"] == 1000 + 288 + 256
    assert decoded["torch_dtype"] == "float16"


def test_a_tensorrt_llm_engine_in_a_shape_folder_is_analysed(tmp_path: pathlib.Path) -> None:
    engine = tmp_path / "H100"
    engine.mkdir()
    (engine / "config.json").write_text(
        json.dumps(
            {
                "version": "0.15.0",
                "pretrained_config": {
                    "architecture": "Qwen2ForCausalLM",
                    "dtype": "float16",
                    "hidden_size": 896,
                    "num_hidden_layers": 24,
                    "num_attention_heads": 14,
                    "num_key_value_heads": 2,
                    "intermediate_size": 4864,
                    "vocab_size": 151936,
                    "max_position_embeddings": 32768,
                    "quantization": {"quant_algo": "W4A16_AWQ"},
                },
                "build_config": {"max_seq_len": 8192},
            }
        )
    )
    (engine / "rank0.engine").write_bytes(b"\0" * 64)
    result = inspection.inspect_directory(tmp_path)
    assert result["modelType"] == "qwen2"
    assert result["modelArchitecture"] == "Qwen2ForCausalLM"
    assert result["modelFormat"] == {"name": "tensorrtllm", "version": "0.15.0"}
    assert result["maxTokens"] == 8192
    assert result["quantization"] == "int4"
    decoded = result["decodedModelConfiguration"]
    assert decoded["parameter_count_source"] == "config-estimate"
    assert "parameter_count_exact" not in decoded


def test_a_diffusers_component_name_cannot_point_outside_the_folder(
    tmp_path: pathlib.Path,
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    index = {"_class_name": "FluxPipeline", "../elsewhere": ["diffusers", "X"]}
    (model / "model_index.json").write_text(json.dumps(index))
    modelfiles.write_safetensors(tmp_path / "elsewhere" / "w.safetensors", {"w": ("F32", (4,))})
    with pytest.raises(errors.ModelInfoError, match="unsafe component name"):
        inspection.inspect_directory(model)


# --- errors -----------------------------------------------------------------------------------


def test_a_shard_listed_in_the_index_but_missing_is_an_error(tmp_path: pathlib.Path) -> None:
    modelfiles.write_model(tmp_path, shards=3)
    missing = tmp_path / "model-00002-of-00003.safetensors"
    missing.unlink()
    with pytest.raises(errors.ModelInfoError, match="missing") as caught:
        inspection.inspect_directory(tmp_path)
    assert str(missing) in str(caught.value)


def _hostile(path: pathlib.Path, length: int, *, size: int) -> None:
    with path.open("wb") as out:
        out.write(struct.pack("<Q", length))
        out.truncate(size)


@pytest.mark.parametrize(
    ("length", "size", "message"),
    [
        (2**63, 4096, "exceeds"),
        (200_000_000, 200_000_100, "exceeds"),
        (10_000_000, 4096, "past the end"),
    ],
    ids=["2^63", "200MB-claim", "claim-past-end"],
)
def test_hostile_header_lengths_fail_cleanly_with_bounded_memory(
    tmp_path: pathlib.Path, length: int, size: int, message: str
) -> None:
    modelfiles.write_model(tmp_path, tensors={})
    (tmp_path / "model.safetensors").unlink()
    _hostile(tmp_path / "model.safetensors", length, size=size)
    tracemalloc.start()
    try:
        with pytest.raises(errors.ModelInfoError, match=message) as caught:
            inspection.inspect_directory(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert str(tmp_path / "model.safetensors") in str(caught.value)


def test_a_truncated_safetensors_file_is_an_error_naming_it(tmp_path: pathlib.Path) -> None:
    modelfiles.write_model(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(errors.ModelInfoError, match="run past") as caught:
        inspection.inspect_directory(tmp_path)
    assert str(path) in str(caught.value)
    path.write_bytes(data[:5])
    with pytest.raises(errors.ModelInfoError, match="shorter than"):
        inspection.inspect_directory(tmp_path)


def _raw_file(path: pathlib.Path, header: dict[str, Any], data_size: int) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data_size))


def test_the_reference_reader_reads_what_the_reference_serializer_wrote(
    tmp_path: pathlib.Path,
) -> None:
    tensors = {"a": ("BF16", (4, 8)), "b": ("F8_E4M3", (16,)), "c": ("I64", (3,))}
    path = tmp_path / "model.safetensors"
    modelfiles.write_safetensors(path, tensors, metadata={"format": "pt"})
    header = inspection.read_header(path)
    assert {t.name: (t.dtype, t.shape) for t in header.tensors} == {
        "a": ("BF16", (4, 8)),
        "b": ("F8_E4M3", (16,)),
        "c": ("I64", (3,)),
    }
    assert header.metadata == {"format": "pt"}
    assert sum(t.end - t.begin for t in header.tensors) == 64 + 16 + 24


def test_overlapping_tensors_that_pass_size_checks_are_refused_by_the_reference_reader(
    tmp_path: pathlib.Path,
) -> None:
    # Each entry alone is consistent (4 F32 = 16 bytes inside a 16-byte data section), so
    # only a reader that checks that offsets tile the data (the library) refuses the file.
    path = tmp_path / "model.safetensors"
    entry = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    _raw_file(path, {"a": entry, "b": entry}, 16)
    with pytest.raises(errors.ModelInfoError, match="invalid safetensors header") as caught:
        inspection.read_header(path)
    assert str(path) in str(caught.value)


def test_an_unknown_dtype_is_named_with_its_tensor(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "model.safetensors"
    _raw_file(path, {"w": {"dtype": "F2_NEW", "shape": [4], "data_offsets": [0, 1]}}, 1)
    with pytest.raises(errors.ModelInfoError, match=r"tensor 'w': unknown dtype 'F2_NEW'"):
        inspection.read_header(path)


def test_a_header_over_the_cap_is_refused_before_the_library_parses_it(
    tmp_path: pathlib.Path,
) -> None:
    # 20 MiB is within the format's 100 MB limit (the library would parse it) but over ours.
    path = tmp_path / "model.safetensors"
    length = 20 * 1024 * 1024
    with path.open("wb") as out:
        out.write(struct.pack("<Q", length))
        out.truncate(8 + length + 16)
    tracemalloc.start()
    try:
        with pytest.raises(errors.ModelInfoError, match="exceeds"):
            inspection.read_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_a_non_json_config_is_an_error_naming_it(tmp_path: pathlib.Path) -> None:
    modelfiles.write_model(tmp_path)
    (tmp_path / "config.json").write_text("{'model_type': 'llama'")
    with pytest.raises(errors.ModelInfoError, match="not valid JSON") as caught:
        inspection.inspect_directory(tmp_path)
    assert str(tmp_path / "config.json") in str(caught.value)


def test_a_50_mb_config_is_refused_without_reading_it(tmp_path: pathlib.Path) -> None:
    modelfiles.write_model(tmp_path)
    with (tmp_path / "config.json").open("r+b") as out:
        out.truncate(50 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(errors.ModelInfoError, match="limit") as caught:
            inspection.inspect_directory(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert "config.json" in str(caught.value)


def test_a_folder_without_a_model_is_not_a_model(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(errors.ModelInfoError, match="not a model folder"):
        inspection.inspect_directory(tmp_path)
    with pytest.raises(errors.ModelInfoError, match="not a directory"):
        inspection.inspect_directory(tmp_path / "notes.txt")


def test_a_config_json_that_is_not_a_model_config_is_rejected(tmp_path: pathlib.Path) -> None:
    (tmp_path / "config.json").write_text('{"word_embedding_dimension": 384}')
    with pytest.raises(errors.ModelInfoError, match="not a model config"):
        inspection.inspect_directory(tmp_path)


# --- read-only and headers-only ---------------------------------------------------------------


def test_inspecting_leaves_the_folder_unchanged(tmp_path: pathlib.Path) -> None:
    modelfiles.write_model(tmp_path, shards=2)
    before = _snapshot(tmp_path)
    dir_mtime = tmp_path.stat().st_mtime_ns
    inspection.inspect_directory(tmp_path)
    assert _snapshot(tmp_path) == before
    assert tmp_path.stat().st_mtime_ns == dir_mtime


def _bytes_read() -> int:
    for line in pathlib.Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture(scope="module")
def hundred_shards(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """100 shards of 2 tensors each, 64 MiB of (sparse, never written) data per shard."""
    root = tmp_path_factory.mktemp("hundred")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for i in range(100):
        tensors[f"model.layers.{i}.mlp.weight"] = ("BF16", (4096, 8192))
        tensors[f"model.layers.{i}.norm.weight"] = ("BF16", (4096,))
    modelfiles.write_model(root, tensors=tensors, shards=100, sparse=True)
    return root


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_a_hundred_shards_are_analysed_from_headers_alone(
    hundred_shards: pathlib.Path,
) -> None:
    model_bytes = sum(p.stat().st_size for p in hundred_shards.glob("*.safetensors"))
    assert model_bytes > 6_500_000_000
    read_before = _bytes_read()
    result = inspection.inspect_directory(hundred_shards)
    read = _bytes_read() - read_before
    assert result["decodedModelConfiguration"]["parameter_count_exact"] == 100 * (
        4096 * 8192 + 4096
    )
    assert result["modelParameterSize"] == "3.36B"
    assert read < 64_000, read  # 100 headers of ~200 B, config and index: << 6.7 GB
    assert read < model_bytes / 10_000


# --- the command ------------------------------------------------------------------------------


def _inspect(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_agent.cli", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_prints_only_the_json_and_exits_zero(hundred_shards: pathlib.Path) -> None:
    result = _inspect(hundred_shards)
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert parsed == inspection.inspect_directory(hundred_shards)


def test_the_command_exits_one_with_one_line_naming_the_bad_file(tmp_path: pathlib.Path) -> None:
    modelfiles.write_model(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", 2**63) + b"{}")
    result = _inspect(tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(tmp_path / "model.safetensors") in lines[0]


def test_the_command_says_when_a_folder_is_not_a_model(tmp_path: pathlib.Path) -> None:
    result = _inspect(tmp_path)
    assert result.returncode == 1
    assert "not a model folder" in result.stderr
    assert result.stdout == ""
