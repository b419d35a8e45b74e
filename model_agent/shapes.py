"""GPU shapes: from a GPU inventory or an instance type to OME's shape alias, and the
TensorRT-LLM file filter that keeps only this node's shape.

Pure: no I/O and no NVML. ``model_agent.gpu`` reads the hardware and hands the inventory in.

Vocabulary:

- *alias*: OME's short name of a GPU shape (``H100``, ``A100-80G``, ``L40S``, ...). TensorRT-LLM
  model folders keep one engine directory per alias (``.../H100/rank0.engine``).
- *GPU shape name*: ``GPU.<alias>.<count>`` (``GPU.H100.8``), an accepted directory name too.
- *instance type*: the node label ``node.kubernetes.io/instance-type`` (fallback
  ``beta.kubernetes.io/instance-type``), mapped to an alias through ``INSTANCE_TYPE_MAP``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from model_agent import errors

__all__ = [
    "BETA_INSTANCE_TYPE_LABEL",
    "DEFAULT_INSTANCE_TYPE_MAP",
    "INSTANCE_TYPE_LABEL",
    "KNOWN_ALIASES",
    "TENSORRT_LLM_FORMAT",
    "GPUDevice",
    "GPUInventory",
    "ShapeInfo",
    "Source",
    "alias_for_gpu",
    "alias_from_instance_type",
    "applies",
    "filter_tensorrt_files",
    "gpu_shape_name",
    "instance_type_from_labels",
    "parse_gpu_shape_name",
    "resolve",
    "shape_from_inventory",
]

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
BETA_INSTANCE_TYPE_LABEL = "beta.kubernetes.io/instance-type"
TENSORRT_LLM_FORMAT = "tensorrtllm"
SERVING = "Serving"

#: OME's built-in map, used when ``INSTANCE_TYPE_MAP`` is unset or an empty object.
DEFAULT_INSTANCE_TYPE_MAP: Mapping[str, str] = {
    # Oracle Cloud
    "BM.GPU.A10.4": "A10",
    "BM.GPU.A100-v2.8": "A100-80G",
    "BM.GPU4.8": "A100-40G",
    "BM.GPU.B4.8": "A100-40G",
    "BM.GPU.H100.8": "H100",
    "BM.GPU.H100-NC.8": "H100",
    "BM.GPU.H200.8": "H200",
    "BM.GPU.H200-NC.8": "H200",
    "BM.GPU.B200.8": "B200",
    # AWS, Azure, Google Cloud
    "p5.48xlarge": "H100",
    "Standard_ND96isr_H100_v5": "H100",
    "a3-highgpu-8g": "H100",
    # CoreWeave
    "gd-8xh100ib-i128": "H100",
    "gd-8xh200ib-i128": "H200",
    "gd-8xl40-i128": "L40",
    # Nebius
    "gpu-h100-sxm": "H100",
    "gpu-h200-sxm": "H200",
    "gpu-b200-sxm": "B200",
    "gpu-l40s": "L40S",
}

#: A100s with at least this much memory are ``A100-80G`` (an 80 GB card reports 81920 MiB,
#: a 40 GB card 40960 MiB).
_A100_80G_MIN_MIB = 60 * 1024

# Product-name patterns, most specific first. A model number matches only as a whole token:
# "H200" is not "GH200", "A10" is not "A100" or "A10G", "L40" is not "L40S".
_BOUNDARY_BEFORE = r"(?<![A-Z0-9])"
_BOUNDARY_AFTER = r"(?![A-Z0-9])"
_MODEL_PATTERNS: tuple[tuple[str, str], ...] = (
    ("GB200", "GB200"),
    ("GH200", "GH200"),
    ("B200", "B200"),
    ("B100", "B100"),
    ("H200", "H200"),
    ("H100", "H100"),
    ("H800", "H800"),
    ("H20", "H20"),
    ("A100", "A100"),
    ("A800", "A800"),
    ("A10G", "A10G"),
    ("A10", "A10"),
    ("A30", "A30"),
    ("A40", "A40"),
    ("L40S", "L40S"),
    ("L40", "L40"),
    ("L4", "L4"),
    ("V100", "V100"),
    ("T4", "T4"),
)
_MODEL_RES = tuple(
    (re.compile(_BOUNDARY_BEFORE + token + _BOUNDARY_AFTER), alias)
    for token, alias in _MODEL_PATTERNS
)
# "NVIDIA A100-SXM4-80GB": the size token is part of the product name on A100s.
_SIZE_IN_NAME_RE = re.compile(r"(?<![0-9])(\d+)\s*GB(?![A-Z0-9])")

#: Every alias this module produces or OME's default map names; a directory with one of these
#: names (or a ``GPU.<model>.<count>`` name) is a shape directory.
KNOWN_ALIASES: frozenset[str] = frozenset(
    {alias for _, alias in _MODEL_PATTERNS if alias != "A100"}
    | {"A100-80G", "A100-40G"}
    | set(DEFAULT_INSTANCE_TYPE_MAP.values())
)

_GPU_SHAPE_RE = re.compile(r"GPU\.([A-Za-z0-9][A-Za-z0-9_-]*)\.([1-9][0-9]*)")

Source = Literal["instance-type-map", "nvml"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GPUDevice:
    """One GPU as NVML describes it."""

    index: int
    name: str
    memory_mib: int | None = None
    uuid: str | None = None
    compute_capability: tuple[int, int] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class GPUInventory:
    """Every GPU NVML sees on this machine, and the driver's version."""

    devices: tuple[GPUDevice, ...]
    driver_version: str | None = None

    @property
    def count(self) -> int:
        return len(self.devices)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShapeInfo:
    """This node's GPU shape.

    ``alias`` is what TensorRT-LLM directories are named after; ``gpu_name`` the product name
    NVML reports (None when NVML was not available); ``count`` the number of GPUs (None when
    unknown); ``source`` says which rule gave the alias.
    """

    alias: str
    source: Source
    gpu_name: str | None = None
    count: int | None = None
    instance_type: str | None = None

    @property
    def gpu_shape(self) -> str | None:
        """``GPU.<alias>.<count>``, or None when the count is unknown."""
        return gpu_shape_name(self.alias, self.count) if self.count else None

    @property
    def filter_key(self) -> str:
        """What to hand ``filter_tensorrt_files`` as its ``alias``: the ``GPU.<alias>.<count>``
        name when the count is known (it selects both naming styles), else the alias."""
        return self.gpu_shape or self.alias


def gpu_shape_name(alias: str, count: int) -> str:
    """``GPU.H100.8`` from ``("H100", 8)``."""
    return f"GPU.{alias}.{count}"


def parse_gpu_shape_name(name: str) -> tuple[str, int] | None:
    """``("H100", 8)`` from ``GPU.H100.8``; None for anything else."""
    match = _GPU_SHAPE_RE.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


def alias_for_gpu(product_name: str, memory_mib: int | None = None) -> str | None:
    """OME's alias for one GPU from its NVML product name and memory size, or None when the
    product is not one this agent knows (set ``INSTANCE_TYPE_MAP`` for such nodes).

    Memory tells the two A100s apart; when it is unknown, a size in the name (``-80GB``) does.
    """
    name = product_name.upper()
    for pattern, alias in _MODEL_RES:
        if not pattern.search(name):
            continue
        if alias != "A100":
            return alias
        if memory_mib is not None:
            return "A100-80G" if memory_mib >= _A100_80G_MIN_MIB else "A100-40G"
        size = _SIZE_IN_NAME_RE.search(name)
        if size is None:
            return None
        return "A100-80G" if int(size.group(1)) >= 60 else "A100-40G"
    return None


def shape_from_inventory(inventory: GPUInventory) -> tuple[ShapeInfo | None, str]:
    """The shape of a machine from its GPUs, with a reason when there is none (no GPUs,
    an unknown product, or GPUs of different shapes)."""
    if not inventory.devices:
        return None, "NVML reports no GPUs"
    aliases = {d.index: alias_for_gpu(d.name, d.memory_mib) for d in inventory.devices}
    first = inventory.devices[0]
    unknown = sorted({d.name for d in inventory.devices if aliases[d.index] is None})
    if unknown:
        return None, f"unknown GPU model {', '.join(repr(n) for n in unknown)}"
    distinct = sorted({a for a in aliases.values() if a is not None})
    if len(distinct) > 1:
        return None, f"GPUs of different shapes on one node: {', '.join(distinct)}"
    alias = aliases[first.index]
    assert alias is not None
    return (
        ShapeInfo(alias=alias, source="nvml", gpu_name=first.name, count=inventory.count),
        "",
    )


def instance_type_from_labels(labels: Mapping[str, str] | None) -> str | None:
    """The node's instance type: ``node.kubernetes.io/instance-type``, else the deprecated
    ``beta.kubernetes.io/instance-type``; None when neither is set."""
    if not labels:
        return None
    return labels.get(INSTANCE_TYPE_LABEL) or labels.get(BETA_INSTANCE_TYPE_LABEL) or None


def alias_from_instance_type(
    instance_type: str | None, instance_type_map: Mapping[str, str]
) -> str | None:
    """The alias ``INSTANCE_TYPE_MAP`` gives an instance type (OME's built-in map when the
    given map is empty), or None when the type is unset or not in the map."""
    if not instance_type:
        return None
    table = instance_type_map or DEFAULT_INSTANCE_TYPE_MAP
    return table.get(instance_type) or None


def resolve(
    *,
    instance_type: str | None,
    instance_type_map: Mapping[str, str],
    inventory: GPUInventory | None,
    nvml_reason: str = "NVML is not available",
) -> tuple[ShapeInfo | None, str]:
    """This node's shape: an ``INSTANCE_TYPE_MAP`` match first (the override), else the GPUs
    NVML reports. Returns the shape, or None and the reason there is none.

    When the map decides, NVML's GPU count and product name still fill ``count`` and
    ``gpu_name`` when NVML is available.
    """
    mapped = alias_from_instance_type(instance_type, instance_type_map)
    if mapped is not None:
        return (
            ShapeInfo(
                alias=mapped,
                source="instance-type-map",
                gpu_name=inventory.devices[0].name if inventory and inventory.devices else None,
                count=inventory.count if inventory and inventory.devices else None,
                instance_type=instance_type,
            ),
            "",
        )
    if inventory is None:
        reason = nvml_reason
    else:
        shape, reason = shape_from_inventory(inventory)
        if shape is not None:
            return dataclasses.replace(shape, instance_type=instance_type), ""
    if instance_type:
        reason = f"instance type {instance_type!r} is not in INSTANCE_TYPE_MAP; {reason}"
    return None, reason


def applies(model_format: str | None, additional_metadata_type: str | None) -> bool:
    """Whether the TensorRT-LLM shape filter applies: ``spec.modelFormat.name`` is
    ``tensorrtllm`` and ``spec.additionalMetadata.type`` is ``Serving`` (its default when
    absent). Both compared exactly, as OME does."""
    model_type = SERVING if additional_metadata_type is None else additional_metadata_type
    return model_format == TENSORRT_LLM_FORMAT and model_type == SERVING


def _selectors(alias: str) -> frozenset[str]:
    """Directory names that hold this shape's files."""
    names = {alias}
    parsed = parse_gpu_shape_name(alias)
    if parsed is not None:
        names.add(parsed[0])
    return frozenset(names)


_KNOWN_UPPER = frozenset(a.upper() for a in KNOWN_ALIASES)


def _is_shape_directory(name: str, extra: frozenset[str]) -> bool:
    upper = name.upper()
    return upper in _KNOWN_UPPER or upper in extra or _GPU_SHAPE_RE.fullmatch(name) is not None


def filter_tensorrt_files(
    paths: Sequence[str],
    alias: str,
    *,
    count: int | None = None,
    known_aliases: Iterable[str] = (),
) -> list[str]:
    """Keep the files of a TensorRT-LLM model that this node's shape needs, in input order.

    ``alias`` is the shape alias (``H100``) or a ``GPU.<alias>.<count>`` name (``GPU.H100.8``,
    which selects ``GPU.H100.8/`` and ``H100/`` directories); ``count`` adds
    ``GPU.<alias>.<count>/`` to an alias. Pass paths as the source names them (object names
    with their prefix, or repository paths): as in OME, a file is this shape's when a
    *directory* component of its path equals the alias exactly (OME: the name contains
    ``/<alias>/``).

    Kept: this shape's files, and shape-agnostic files that sit outside every shape directory
    (tokenizer, config). Dropped: files under another shape's directory, i.e. a directory
    named like a known alias, one of ``known_aliases`` (e.g. ``INSTANCE_TYPE_MAP``'s values),
    or ``GPU.<model>.<count>``.

    Raises ``errors.ShapeMismatchError`` naming the shape and the shapes found when no file
    belongs to this shape.
    """
    if not alias:
        raise ValueError("filter_tensorrt_files needs a shape alias")
    selectors = set(_selectors(alias))
    if count:
        selectors.add(gpu_shape_name(alias, count))
    extra = frozenset(a.upper() for a in known_aliases if a) | frozenset(
        s.upper() for s in selectors
    )
    kept: list[str] = []
    found: set[str] = set()
    matched = 0
    for path in paths:
        directories = [part for part in path.split("/")[:-1] if part]
        if any(part in selectors for part in directories):
            kept.append(path)
            matched += 1
            continue
        shape_dirs = [part for part in directories if _is_shape_directory(part, extra)]
        if shape_dirs:
            found.update(shape_dirs)
        else:
            kept.append(path)
    if matched == 0:
        wanted = " or ".join(sorted(selectors))
        shapes = ", ".join(sorted(found)) if found else "none"
        raise errors.ShapeMismatchError(
            f"TensorRT-LLM model has no files for GPU shape {alias} "
            f"(looked for directories named {wanted}); shapes found: {shapes}"
        )
    return kept
