"""The pynvml adapter: this machine's GPU inventory, and the node's GPU shape.

NVML is optional. Where there is no NVIDIA driver (``NVMLError_LibraryNotFound``), the driver
is not loaded, NVML fails to initialise, or it reports no GPUs, the inventory is None with a
reason, and the node has no shape unless ``INSTANCE_TYPE_MAP`` names its instance type:
TensorRT-LLM shape filtering is then off, and ``detect_shape`` says so in one log line.

Every successful ``nvmlInit`` is paired with ``nvmlShutdown``. The calls are synchronous and
take milliseconds to about a second on a large machine: call ``detect_shape`` from a thread
(``asyncio.to_thread``) inside the event loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pynvml

from model_agent import logs, shapes

__all__ = ["Detection", "detect", "detect_shape", "read_inventory"]

_log = logs.logger.getChild("gpu")

_MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class Detection:
    """What ``detect`` found: the NVML inventory (None without NVML), the shape (None when
    neither the instance-type map nor NVML gives one), and why each is missing."""

    inventory: shapes.GPUInventory | None
    shape: shapes.ShapeInfo | None
    nvml_reason: str = ""
    reason: str = ""


def _nvml_error_text(exc: pynvml.NVMLError) -> str:
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:  # pragma: no cover - str() of an NVMLError may call into the library
        text = f"NVML error {getattr(exc, 'value', '?')}"
    return f"{name}: {text}"


def _optional(call: Any, *args: Any) -> Any:
    """A field that some drivers or GPUs do not support: None instead of an error."""
    try:
        return call(*args)
    except pynvml.NVMLError:
        return None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _read_device(index: int) -> shapes.GPUDevice:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = _as_text(pynvml.nvmlDeviceGetName(handle)) or ""
    memory = _optional(pynvml.nvmlDeviceGetMemoryInfo, handle)
    capability = _optional(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    return shapes.GPUDevice(
        index=index,
        name=name.strip(),
        memory_mib=int(memory.total) // _MIB if memory is not None else None,
        uuid=_as_text(_optional(pynvml.nvmlDeviceGetUUID, handle)),
        compute_capability=(int(capability[0]), int(capability[1])) if capability else None,
    )


def read_inventory() -> tuple[shapes.GPUInventory | None, str]:
    """Every GPU NVML reports, or None and the reason NVML gave none (no library, driver not
    loaded, an init error, or no devices)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return None, "no NVIDIA driver (NVML library not found)"
    except pynvml.NVMLError_DriverNotLoaded:
        return None, "NVIDIA driver not loaded"
    except pynvml.NVMLError as exc:
        return None, f"NVML init failed ({_nvml_error_text(exc)})"
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return None, "NVML reports no GPUs"
        devices = tuple(_read_device(i) for i in range(count))
        driver = _as_text(_optional(pynvml.nvmlSystemGetDriverVersion))
        return shapes.GPUInventory(devices=devices, driver_version=driver), ""
    except pynvml.NVMLError as exc:
        return None, f"NVML query failed ({_nvml_error_text(exc)})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError as exc:  # pragma: no cover - nothing to do but say so
            _log.debug("nvmlShutdown failed: %s", _nvml_error_text(exc))


def detect(*, instance_type: str | None, instance_type_map: Mapping[str, str]) -> Detection:
    """Read NVML and resolve the shape: an ``INSTANCE_TYPE_MAP`` match for ``instance_type``
    first, else the GPUs NVML reports. Never raises for a missing or broken NVML."""
    inventory, nvml_reason = read_inventory()
    shape, reason = shapes.resolve(
        instance_type=instance_type,
        instance_type_map=instance_type_map,
        inventory=inventory,
        nvml_reason=nvml_reason,
    )
    return Detection(inventory=inventory, shape=shape, nvml_reason=nvml_reason, reason=reason)


def detect_shape(
    *, instance_type: str | None, instance_type_map: Mapping[str, str]
) -> shapes.ShapeInfo | None:
    """This node's GPU shape, or None with one log line saying TensorRT-LLM shape filtering
    is off (and why)."""
    found = detect(instance_type=instance_type, instance_type_map=instance_type_map)
    if found.shape is None:
        _log.info(
            "no GPU shape for this node (%s): TensorRT-LLM shape filtering is off", found.reason
        )
    else:
        _log.info(
            "GPU shape %s from %s",
            found.shape.filter_key,
            found.shape.source,
            extra={"gpu_shape": found.shape.alias, "shape_source": found.shape.source},
        )
    return found.shape
