"""GPU detection through the real pynvml and the C stand-in of libnvidia-ml.so.1.

Covers: the adapter reads count, product names, memory, UUIDs, compute capability and driver
version; 2 x H100 80GB is H100 / GPU.H100.2; memory tells A100-40G from A100-80G; fields a
driver does not support come back empty without losing the shape; the instance-type map beats
NVML; an init error, a driver that is not loaded and zero devices give no shape and ONE log
line saying TensorRT-LLM filtering is off; every nvmlInit is shut down; and the
``model-agent gpu-shape`` command as a subprocess: with the stand-in, with ``--instance-type``
mapped through INSTANCE_TYPE_MAP, without any NVML library (source none, exit 0) and with an
init error (a reason, no traceback).
"""

from __future__ import annotations

import ctypes.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pynvml
import pytest

from model_agent import gpu
from tests.harness import fixtures_nvml

FakeNvmlFactory = Callable[..., fixtures_nvml.FakeNvml]

H100 = ("NVIDIA H100 80GB HBM3", 81559)


def gpu_shape_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_agent.cli", "gpu-shape", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def parse(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def test_two_h100s_are_shape_h100_and_gpu_h100_2(fake_nvml: FakeNvmlFactory) -> None:
    nvml = fake_nvml(devices=[H100, H100])
    shape = gpu.detect_shape(instance_type=None, instance_type_map={})
    assert shape is not None
    assert (shape.alias, shape.gpu_shape, shape.count, shape.source) == (
        "H100",
        "GPU.H100.2",
        2,
        "nvml",
    )
    assert shape.gpu_name == "NVIDIA H100 80GB HBM3"
    assert nvml.active_inits() == 0


def test_the_inventory_has_every_field_nvml_reports(fake_nvml: FakeNvmlFactory) -> None:
    fake_nvml(devices=[H100, ("NVIDIA H100 80GB HBM3", 81559, (9, 0))], driver_version="560.1")
    inventory, reason = gpu.read_inventory()
    assert reason == ""
    assert inventory is not None
    assert inventory.driver_version == "560.1"
    assert [d.index for d in inventory.devices] == [0, 1]
    first = inventory.devices[0]
    assert (first.name, first.memory_mib, first.compute_capability) == (
        "NVIDIA H100 80GB HBM3",
        81559,
        (9, 0),
    )
    assert first.uuid is not None and first.uuid.startswith("GPU-")
    assert first.uuid != inventory.devices[1].uuid


@pytest.mark.parametrize(
    ("device", "alias"),
    [
        (("NVIDIA A100-SXM4-80GB", 81920), "A100-80G"),
        (("NVIDIA A100-SXM4-40GB", 40960), "A100-40G"),
        (("NVIDIA L40S", 46068), "L40S"),
        (("NVIDIA B200", 183359), "B200"),
    ],
)
def test_nvml_product_and_memory_give_the_alias(
    fake_nvml: FakeNvmlFactory, device: tuple[str, int], alias: str
) -> None:
    fake_nvml(devices=[device] * 4)
    shape = gpu.detect_shape(instance_type=None, instance_type_map={})
    assert shape is not None
    assert shape.alias == alias
    assert shape.gpu_shape == f"GPU.{alias}.4"


def test_unsupported_optional_fields_are_empty_but_the_shape_stands(
    fake_nvml: FakeNvmlFactory,
) -> None:
    fake_nvml(
        devices=[H100],
        unsupported=[
            "nvmlDeviceGetUUID",
            "nvmlDeviceGetCudaComputeCapability",
            "nvmlSystemGetDriverVersion",
        ],
    )
    detection = gpu.detect(instance_type=None, instance_type_map={})
    assert detection.inventory is not None
    device = detection.inventory.devices[0]
    assert (device.uuid, device.compute_capability) == (None, None)
    assert detection.inventory.driver_version is None
    assert detection.shape is not None and detection.shape.alias == "H100"


def test_a_failing_product_name_query_is_no_inventory_with_a_reason(
    fake_nvml: FakeNvmlFactory,
) -> None:
    nvml = fake_nvml(devices=[H100], unsupported=["nvmlDeviceGetName"])
    inventory, reason = gpu.read_inventory()
    assert inventory is None
    assert "NVML query failed" in reason and "NotSupported" in reason
    assert nvml.active_inits() == 0


def test_an_instance_type_map_match_beats_nvml(fake_nvml: FakeNvmlFactory) -> None:
    fake_nvml(devices=[("NVIDIA A100-SXM4-40GB", 40960)] * 8)
    shape = gpu.detect_shape(instance_type="box", instance_type_map={"box": "A100-80G"})
    assert shape is not None
    assert (shape.alias, shape.source, shape.gpu_shape) == (
        "A100-80G",
        "instance-type-map",
        "GPU.A100-80G.8",
    )


@pytest.mark.parametrize(
    ("configure", "reason"),
    [
        ({"devices": [H100], "init_error": pynvml.NVML_ERROR_NO_PERMISSION}, "init failed"),
        ({"devices": [H100], "init_error": pynvml.NVML_ERROR_DRIVER_NOT_LOADED}, "not loaded"),
        ({"devices": []}, "no GPUs"),
    ],
)
def test_no_nvml_answer_is_no_shape_and_one_log_line_saying_filtering_is_off(
    fake_nvml: FakeNvmlFactory,
    caplog: pytest.LogCaptureFixture,
    configure: dict[str, Any],
    reason: str,
) -> None:
    nvml = fake_nvml(**configure)
    with caplog.at_level(logging.INFO, logger="model_agent"):
        assert gpu.detect_shape(instance_type=None, instance_type_map={}) is None
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("model_agent")]
    assert len(lines) == 1, lines
    assert "TensorRT-LLM shape filtering is off" in lines[0]
    assert reason in lines[0]
    assert nvml.active_inits() == 0


def test_the_stand_in_refuses_calls_before_init_like_the_real_library(
    fake_nvml: FakeNvmlFactory,
) -> None:
    fake_nvml(devices=[H100])
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()


def test_gpu_shape_command_prints_the_inventory_and_the_shape(
    fake_nvml: FakeNvmlFactory,
) -> None:
    nvml = fake_nvml(devices=[H100, H100])
    document = parse(gpu_shape_command(env=nvml.env))
    assert document["source"] == "nvml"
    assert document["alias"] == "H100"
    assert document["gpu_shape"] == "GPU.H100.2"
    assert document["tensorrt_llm_filter"] == "on"
    inventory = document["inventory"]
    assert inventory["count"] == 2
    assert inventory["driver_version"] == "550.54.15"
    assert inventory["devices"][1] == {
        "index": 1,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_mib": 81559,
        "uuid": inventory["devices"][1]["uuid"],
        "compute_capability": "9.0",
    }


def test_gpu_shape_command_maps_an_instance_type_through_instance_type_map(
    fake_nvml: FakeNvmlFactory,
) -> None:
    nvml = fake_nvml(devices=[("NVIDIA L40S", 46068)] * 2)
    env = {**nvml.env, "INSTANCE_TYPE_MAP": json.dumps({"gpu.large": "H200"})}
    document = parse(gpu_shape_command("--instance-type", "gpu.large", env=env))
    assert (document["source"], document["alias"], document["gpu_shape"]) == (
        "instance-type-map",
        "H200",
        "GPU.H200.2",
    )
    assert document["instance_type"] == "gpu.large"
    assert document["inventory"]["devices"][0]["name"] == "NVIDIA L40S"


def test_gpu_shape_command_uses_omes_default_map_when_instance_type_map_is_unset(
    fake_nvml: FakeNvmlFactory,
) -> None:
    nvml = fake_nvml(devices=[H100])
    env = {k: v for k, v in nvml.env.items() if k != "INSTANCE_TYPE_MAP"}
    document = parse(gpu_shape_command("--instance-type", "BM.GPU4.8", env=env))
    assert (document["source"], document["alias"]) == ("instance-type-map", "A100-40G")


@pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None,
    reason="this machine has a real NVIDIA driver",
)
def test_gpu_shape_command_without_nvml_is_source_none_and_exit_zero() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_NVML")}
    env["LD_LIBRARY_PATH"] = ""
    env.pop("INSTANCE_TYPE_MAP", None)
    document = parse(gpu_shape_command(env=env))
    assert document["source"] == "none"
    assert document["alias"] is None and document["inventory"] is None
    assert document["tensorrt_llm_filter"] == "off"
    assert document["nvml"] == {
        "available": False,
        "reason": "no NVIDIA driver (NVML library not found)",
    }
    mapped = parse(gpu_shape_command("--instance-type", "p5.48xlarge", env=env))
    assert (mapped["source"], mapped["alias"], mapped["gpu_shape"]) == (
        "instance-type-map",
        "H100",
        None,
    )


def test_gpu_shape_command_with_an_init_error_is_a_clean_none_with_a_reason(
    fake_nvml: FakeNvmlFactory,
) -> None:
    nvml = fake_nvml(devices=[H100], init_error=pynvml.NVML_ERROR_UNKNOWN)
    result = gpu_shape_command("--instance-type", "VM.Standard.E4.Flex", env=nvml.env)
    document = parse(result)
    assert document["source"] == "none"
    assert "NVML init failed" in document["reason"]
    assert "'VM.Standard.E4.Flex' is not in INSTANCE_TYPE_MAP" in document["reason"]
    assert result.stderr == ""
