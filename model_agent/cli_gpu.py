"""`model-agent gpu-shape`: print this machine's GPU inventory and shape as JSON.

Exit 0 whether or not a shape is found (``source`` is ``none`` then, with a ``reason``): a
machine without GPUs is a normal answer, not a failure.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from model_agent import gpu, settings, shapes


def _inventory_json(inventory: shapes.GPUInventory | None) -> dict[str, Any] | None:
    if inventory is None:
        return None
    return {
        "driver_version": inventory.driver_version,
        "count": inventory.count,
        "devices": [
            {
                "index": d.index,
                "name": d.name,
                "memory_mib": d.memory_mib,
                "uuid": d.uuid,
                "compute_capability": (
                    f"{d.compute_capability[0]}.{d.compute_capability[1]}"
                    if d.compute_capability
                    else None
                ),
            }
            for d in inventory.devices
        ],
    }


def report(found: gpu.Detection, instance_type: str | None) -> dict[str, Any]:
    """The JSON document ``gpu-shape`` prints."""
    shape = found.shape
    return {
        "source": shape.source if shape else "none",
        "alias": shape.alias if shape else None,
        "gpu_shape": shape.gpu_shape if shape else None,
        "count": shape.count if shape else None,
        "gpu_name": shape.gpu_name if shape else None,
        "instance_type": instance_type,
        "tensorrt_llm_filter": "on" if shape else "off",
        "reason": found.reason or None,
        "nvml": {"available": found.inventory is not None, "reason": found.nvml_reason or None},
        "inventory": _inventory_json(found.inventory),
    }


def run(args: argparse.Namespace, config: settings.Settings) -> int:
    instance_type = getattr(args, "instance_type", None) or None
    found = gpu.detect(instance_type=instance_type, instance_type_map=config.instance_type_map)
    print(json.dumps(report(found, instance_type), indent=2))
    return 0
