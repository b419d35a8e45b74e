"""GPU shapes from plain values, no NVML.

Covers: NVML product names (and memory sizes) to OME aliases, unknown GPUs; the
``GPU.<model>.<count>`` name; instance-type labels and the INSTANCE_TYPE_MAP lookup with OME's
built-in defaults; precedence of the map over NVML; when the TensorRT-LLM filter applies; and
the filter itself: this shape's directory (alias or GPU.<model>.<count>), shared files outside
every shape directory, other shapes dropped, nested paths, OME's exact ``/<alias>/`` match,
and a model with no file for the shape.
"""

from __future__ import annotations

import pytest

from model_agent import errors, shapes


@pytest.mark.parametrize(
    ("product", "memory_mib", "alias"),
    [
        ("NVIDIA H100 80GB HBM3", 81559, "H100"),
        ("NVIDIA H100 NVL", 95830, "H100"),
        ("NVIDIA H100 PCIe", 81559, "H100"),
        ("NVIDIA H200", 143771, "H200"),
        ("NVIDIA H200 NVL", 143771, "H200"),
        ("NVIDIA GH200 480GB", 97871, "GH200"),
        ("NVIDIA B200", 183359, "B200"),
        ("NVIDIA A100-SXM4-80GB", 81920, "A100-80G"),
        ("NVIDIA A100 80GB PCIe", 81920, "A100-80G"),
        ("NVIDIA A100-SXM4-40GB", 40960, "A100-40G"),
        ("NVIDIA A100-PCIE-40GB", 40960, "A100-40G"),
        ("NVIDIA A10", 23028, "A10"),
        ("NVIDIA A10G", 23028, "A10G"),
        ("NVIDIA L40S", 46068, "L40S"),
        ("NVIDIA L40", 46068, "L40"),
        ("NVIDIA L4", 23034, "L4"),
        ("Tesla V100-SXM2-16GB", 16384, "V100"),
        ("Tesla T4", 15360, "T4"),
        ("nvidia h100 80gb hbm3", 81559, "H100"),
    ],
)
def test_product_name_and_memory_give_omes_alias(product: str, memory_mib: int, alias: str) -> None:
    assert shapes.alias_for_gpu(product, memory_mib) == alias


@pytest.mark.parametrize(
    ("product", "alias"),
    [
        ("NVIDIA A100-SXM4-80GB", "A100-80G"),
        ("NVIDIA A100-SXM4-40GB", "A100-40G"),
        ("NVIDIA A100-SXM4", None),
        ("NVIDIA H100 80GB HBM3", "H100"),
    ],
)
def test_without_memory_the_size_in_the_name_tells_the_a100s_apart(
    product: str, alias: str | None
) -> None:
    assert shapes.alias_for_gpu(product, None) == alias


def test_memory_beats_the_name_for_the_a100() -> None:
    # A MIG-less A100 80GB reports 81920 MiB whatever its marketing name says.
    assert shapes.alias_for_gpu("NVIDIA A100-SXM4", 81920) == "A100-80G"
    assert shapes.alias_for_gpu("NVIDIA A100-SXM4", 40960) == "A100-40G"


@pytest.mark.parametrize(
    "product",
    ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000", "Quadro P1000", "AMD Instinct MI300X", ""],
)
def test_unknown_gpus_have_no_alias(product: str) -> None:
    assert shapes.alias_for_gpu(product, 24564) is None


def test_model_numbers_match_only_as_whole_tokens() -> None:
    assert shapes.alias_for_gpu("NVIDIA H20", 97871) == "H20"
    assert shapes.alias_for_gpu("NVIDIA A1000", 8192) is None
    assert shapes.alias_for_gpu("NVIDIA L4000", 8192) is None


def test_gpu_shape_name_round_trips() -> None:
    assert shapes.gpu_shape_name("H100", 8) == "GPU.H100.8"
    assert shapes.parse_gpu_shape_name("GPU.A100-80G.4") == ("A100-80G", 4)
    assert shapes.parse_gpu_shape_name("GPU.H100") is None
    assert shapes.parse_gpu_shape_name("BM.GPU.H100.8") is None
    assert shapes.parse_gpu_shape_name("GPU.H100.0") is None


def _inventory(*devices: tuple[str, int]) -> shapes.GPUInventory:
    return shapes.GPUInventory(
        devices=tuple(
            shapes.GPUDevice(index=i, name=name, memory_mib=mib)
            for i, (name, mib) in enumerate(devices)
        ),
        driver_version="550.54.15",
    )


def test_an_inventory_of_two_h100s_is_shape_gpu_h100_2() -> None:
    shape, reason = shapes.shape_from_inventory(
        _inventory(("NVIDIA H100 80GB HBM3", 81559), ("NVIDIA H100 80GB HBM3", 81559))
    )
    assert reason == ""
    assert shape is not None
    assert (shape.alias, shape.count, shape.source) == ("H100", 2, "nvml")
    assert shape.gpu_name == "NVIDIA H100 80GB HBM3"
    assert shape.gpu_shape == "GPU.H100.2"
    assert shape.filter_key == "GPU.H100.2"


def test_an_inventory_without_gpus_or_with_mixed_or_unknown_gpus_has_no_shape() -> None:
    assert shapes.shape_from_inventory(_inventory()) == (None, "NVML reports no GPUs")
    shape, reason = shapes.shape_from_inventory(
        _inventory(("NVIDIA A10", 23028), ("NVIDIA L40S", 46068))
    )
    assert shape is None and "A10, L40S" in reason
    shape, reason = shapes.shape_from_inventory(_inventory(("NVIDIA GeForce RTX 4090", 24564)))
    assert shape is None and "RTX 4090" in reason


@pytest.mark.parametrize(
    ("instance_type", "alias"),
    [
        ("BM.GPU.H100.8", "H100"),
        ("BM.GPU.A100-v2.8", "A100-80G"),
        ("BM.GPU4.8", "A100-40G"),
        ("BM.GPU.H200.8", "H200"),
        ("BM.GPU.B200.8", "B200"),
        ("BM.GPU.A10.4", "A10"),
        ("p5.48xlarge", "H100"),
        ("a3-highgpu-8g", "H100"),
        ("gpu-l40s", "L40S"),
        ("gd-8xl40-i128", "L40"),
        ("unknown-instance-type", None),
        ("", None),
        (None, None),
    ],
)
def test_an_unset_or_empty_map_falls_back_to_omes_defaults(
    instance_type: str | None, alias: str | None
) -> None:
    assert shapes.alias_from_instance_type(instance_type, {}) == alias


def test_a_given_map_replaces_the_defaults() -> None:
    table = {"my.gpu.box": "L40S"}
    assert shapes.alias_from_instance_type("my.gpu.box", table) == "L40S"
    assert shapes.alias_from_instance_type("BM.GPU.H100.8", table) is None


def test_the_instance_type_label_wins_over_the_deprecated_beta_label() -> None:
    both = {shapes.INSTANCE_TYPE_LABEL: "p5.48xlarge", shapes.BETA_INSTANCE_TYPE_LABEL: "old"}
    assert shapes.instance_type_from_labels(both) == "p5.48xlarge"
    beta_only = {shapes.BETA_INSTANCE_TYPE_LABEL: "BM.GPU4.8", "other": "x"}
    assert shapes.instance_type_from_labels(beta_only) == "BM.GPU4.8"
    assert shapes.instance_type_from_labels({"kubernetes.io/hostname": "n1"}) is None
    assert shapes.instance_type_from_labels(None) is None


def test_a_map_match_beats_nvml_and_keeps_nvmls_count() -> None:
    inventory = _inventory(*[("NVIDIA A100-SXM4-40GB", 40960)] * 8)
    shape, _ = shapes.resolve(
        instance_type="box", instance_type_map={"box": "A100-80G"}, inventory=inventory
    )
    assert shape is not None
    assert (shape.alias, shape.source, shape.count) == ("A100-80G", "instance-type-map", 8)
    assert shape.instance_type == "box"
    assert shape.gpu_shape == "GPU.A100-80G.8"


def test_without_a_map_match_nvml_decides() -> None:
    inventory = _inventory(("NVIDIA L40S", 46068))
    shape, _ = shapes.resolve(
        instance_type="unmapped", instance_type_map={"box": "H100"}, inventory=inventory
    )
    assert shape is not None
    assert (shape.alias, shape.source, shape.count) == ("L40S", "nvml", 1)


def test_a_map_match_without_nvml_has_no_count() -> None:
    shape, _ = shapes.resolve(instance_type="p5.48xlarge", instance_type_map={}, inventory=None)
    assert shape is not None
    assert (shape.alias, shape.count, shape.gpu_shape, shape.filter_key) == (
        "H100",
        None,
        None,
        "H100",
    )


def test_no_map_match_and_no_nvml_is_no_shape_with_both_reasons() -> None:
    shape, reason = shapes.resolve(
        instance_type="VM.Standard.E4",
        instance_type_map={},
        inventory=None,
        nvml_reason="no NVIDIA driver",
    )
    assert shape is None
    assert "'VM.Standard.E4' is not in INSTANCE_TYPE_MAP" in reason
    assert "no NVIDIA driver" in reason


@pytest.mark.parametrize(
    ("model_format", "model_type", "expected"),
    [
        ("tensorrtllm", None, True),
        ("tensorrtllm", "Serving", True),
        ("tensorrtllm", "Training", False),
        ("tensorrtllm", "", False),
        ("safetensors", None, False),
        (None, None, False),
        ("TensorRTLLM", None, False),
    ],
)
def test_the_filter_applies_to_serving_tensorrtllm_models_only(
    model_format: str | None, model_type: str | None, expected: bool
) -> None:
    assert shapes.applies(model_format, model_type) is expected


MODEL = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "H100/config.json",
    "H100/rank0.engine",
    "H100/rank1.engine",
    "A100-80G/config.json",
    "A100-80G/rank0.engine",
    "GPU.H100.8/rank0.engine",
    "GPU.H100.2/rank0.engine",
    "docs/README.md",
]


def test_the_filter_keeps_this_shapes_directory_and_the_shared_files() -> None:
    assert shapes.filter_tensorrt_files(MODEL, "H100") == [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "H100/config.json",
        "H100/rank0.engine",
        "H100/rank1.engine",
        "docs/README.md",
    ]


def test_the_filter_drops_other_shapes_files() -> None:
    kept = shapes.filter_tensorrt_files(MODEL, "A100-80G")
    assert "A100-80G/rank0.engine" in kept
    assert not [p for p in kept if p.startswith(("H100/", "GPU."))]


def test_a_gpu_shape_name_selects_its_directory_and_the_alias_directory() -> None:
    kept = shapes.filter_tensorrt_files(MODEL, "GPU.H100.8")
    assert "GPU.H100.8/rank0.engine" in kept
    assert "H100/rank0.engine" in kept
    assert "GPU.H100.2/rank0.engine" not in kept
    assert "A100-80G/rank0.engine" not in kept


def test_an_alias_with_a_count_selects_the_gpu_shape_directory() -> None:
    kept = shapes.filter_tensorrt_files(MODEL, "H100", count=2)
    assert "GPU.H100.2/rank0.engine" in kept
    assert "GPU.H100.8/rank0.engine" not in kept


def test_an_alias_without_a_count_does_not_guess_among_gpu_shape_directories() -> None:
    kept = shapes.filter_tensorrt_files(MODEL, "H100")
    assert not [p for p in kept if p.startswith("GPU.")]


def test_shape_directories_match_at_any_depth_like_omes_slash_alias_slash() -> None:
    paths = [
        "models/llama-70b/H100/engine/rank0.engine",
        "models/llama-70b/L40S/engine/rank0.engine",
        "models/llama-70b/tokenizer/tokenizer.json",
        "models/llama-70b/config.json",
    ]
    assert shapes.filter_tensorrt_files(paths, "H100") == [
        "models/llama-70b/H100/engine/rank0.engine",
        "models/llama-70b/tokenizer/tokenizer.json",
        "models/llama-70b/config.json",
    ]


def test_only_a_whole_directory_name_matches_the_alias() -> None:
    paths = ["H100-old/rank0.engine", "notes/H100", "myH100/x", "H100/rank0.engine"]
    # "H100-old" and "myH100" are not shape directories: they stay as shared files; a FILE
    # named H100 is not a directory (OME needs the trailing slash too).
    assert shapes.filter_tensorrt_files(paths, "H100") == paths
    with pytest.raises(errors.ShapeMismatchError):
        shapes.filter_tensorrt_files(paths[:3], "H100")


def test_the_alias_match_is_exact_as_in_ome() -> None:
    with pytest.raises(errors.ShapeMismatchError) as caught:
        shapes.filter_tensorrt_files(["h100/rank0.engine", "config.json"], "H100")
    assert "h100" in str(caught.value)


def test_map_values_given_as_known_aliases_are_shape_directories() -> None:
    paths = ["H100/rank0.engine", "MI300X/rank0.engine", "config.json"]
    assert shapes.filter_tensorrt_files(paths, "H100") == paths
    assert shapes.filter_tensorrt_files(paths, "H100", known_aliases=["MI300X"]) == [
        "H100/rank0.engine",
        "config.json",
    ]


def test_a_custom_alias_selects_its_directory() -> None:
    paths = ["RTX4090/rank0.engine", "H100/rank0.engine", "tokenizer.json"]
    assert shapes.filter_tensorrt_files(paths, "RTX4090") == [
        "RTX4090/rank0.engine",
        "tokenizer.json",
    ]


def test_a_model_without_files_for_this_shape_names_the_shape_and_the_shapes_found() -> None:
    with pytest.raises(errors.ShapeMismatchError) as caught:
        shapes.filter_tensorrt_files(MODEL, "L40S")
    message = str(caught.value)
    assert "L40S" in message
    assert "shapes found: A100-80G, GPU.H100.2, GPU.H100.8, H100" in message
    assert caught.value.retryable is False
    assert caught.value.reason == "NoFilesForShape"


def test_a_model_without_any_shape_directory_has_no_files_for_the_shape() -> None:
    with pytest.raises(errors.ShapeMismatchError, match="shapes found: none"):
        shapes.filter_tensorrt_files(["config.json", "rank0.engine"], "H100")


def test_the_filter_refuses_an_empty_alias() -> None:
    with pytest.raises(ValueError, match="alias"):
        shapes.filter_tensorrt_files(MODEL, "")
