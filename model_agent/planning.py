"""Which remote files a pull fetches, where they land, and how a file is cut into parts.

Owns: path safety of remote names (``safe_relative_path``: no ``..``, no absolute paths, no
backslashes, no NUL or control characters), allow/ignore glob filtering, the default skip
rules, and part sizes for multipart downloads.

Default skip rules (only when the user gave no ``allow`` patterns, and only when the repo has
safetensors weights): ``original/`` (Meta's consolidated checkpoints), every ``*.gguf``, and in
a directory that holds ``*.safetensors`` the duplicate weight formats ``*.bin``, ``*.pth``,
``*.pt``, ``*.h5``, ``*.msgpack``, ``*.ot``, plus the ``onnx/`` and ``openvino/`` exports.
A serving runtime (vLLM, SGLang, TensorRT-LLM's HF loader) loads none of them.

Pure: stdlib only, no I/O.
"""

from __future__ import annotations

import fnmatch
import math
import posixpath
from collections.abc import Iterable, Sequence

from model_agent import errors

__all__ = [
    "DUPLICATE_WEIGHT_SUFFIXES",
    "SKIPPED_DIRECTORIES",
    "is_default_skipped",
    "parse_patterns",
    "part_size",
    "safe_relative_path",
    "select",
    "weight_directories",
]

#: Weight formats that duplicate safetensors in the same directory.
DUPLICATE_WEIGHT_SUFFIXES = (".bin", ".pth", ".pt", ".h5", ".msgpack", ".ot")
#: Top-level directories skipped when safetensors weights are present.
SKIPPED_DIRECTORIES = ("original", "onnx", "openvino")
_MIN_PART = 8 * 1024**2
_MAX_PART = 64 * 1024**2


def safe_relative_path(name: str) -> str:
    """``name`` as a clean relative POSIX path, or ``UnsafePathError`` naming it.

    Rejected: empty names, absolute paths, drive letters, backslashes, NUL and other control
    characters, and ``.``/``..``/empty components. Nothing is normalised away silently.
    """
    shown = repr(name)[:200]
    if not name:
        raise errors.UnsafePathError("remote file name is empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise errors.UnsafePathError(f"remote file name {shown} contains control characters")
    if "\\" in name:
        raise errors.UnsafePathError(f"remote file name {shown} contains a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise errors.UnsafePathError(f"remote file name {shown} is an absolute path")
    parts = name.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise errors.UnsafePathError(
            f"remote file name {shown} has an empty, '.' or '..' component"
        )
    if len(name) > 4096 or any(len(part.encode()) > 255 for part in parts):
        raise errors.UnsafePathError(f"remote file name {shown} is too long")
    return name


def parse_patterns(text: str | None) -> tuple[str, ...]:
    """Comma-separated globs (``*.json,*.safetensors``) as a tuple; blanks dropped."""
    if not text:
        return ()
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _matches(path: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if fnmatch.fnmatchcase(path, pattern):
            return True
        # A pattern naming a directory ("original/" or "original") covers what is inside.
        directory = pattern.rstrip("/")
        if (
            directory
            and not any(c in directory for c in "*?[")
            and path.startswith(directory + "/")
        ):
            return True
        if pattern.endswith("/") and fnmatch.fnmatchcase(path, pattern + "*"):
            return True
    return False


def weight_directories(paths: Iterable[str]) -> frozenset[str]:
    """The directories that hold ``*.safetensors`` weights (computed once per plan)."""
    return frozenset(posixpath.dirname(p) for p in paths if p.endswith(".safetensors"))


def is_default_skipped(
    path: str, all_paths: Iterable[str] = (), *, weight_dirs: frozenset[str] | None = None
) -> bool:
    """Whether the default rules skip ``path`` given every path of the repo (or its
    ``weight_directories``, which keeps a whole plan linear in the number of files)."""
    if weight_dirs is None:
        weight_dirs = weight_directories(all_paths)
    if not weight_dirs:
        return False
    top = path.split("/", 1)[0]
    if "/" in path and top in SKIPPED_DIRECTORIES:
        return True
    if path.endswith(".gguf"):
        return True
    return path.endswith(DUPLICATE_WEIGHT_SUFFIXES) and posixpath.dirname(path) in weight_dirs


def select(
    paths: Iterable[str],
    *,
    allow: Sequence[str] = (),
    ignore: Sequence[str] = (),
    default_skips: bool = True,
) -> list[str]:
    """The paths a pull fetches, in input order.

    Every name is checked with ``safe_relative_path`` first (one unsafe name fails the whole
    plan: nothing is written). Then ``allow`` (any match keeps; empty keeps all), ``ignore``
    (any match drops) and, when ``allow`` is empty and ``default_skips`` is on, the default
    skip rules.
    """
    names = [safe_relative_path(p) for p in paths]
    weight_dirs = weight_directories(names)
    chosen = []
    for name in names:
        if allow and not _matches(name, allow):
            continue
        if ignore and _matches(name, ignore):
            continue
        if default_skips and not allow and is_default_skipped(name, weight_dirs=weight_dirs):
            continue
        chosen.append(name)
    return chosen


def part_size(size: int, *, threshold: int, concurrency: int) -> int:
    """Bytes per ranged part of a ``size``-byte file; ``size`` itself below ``threshold``.

    Large files split into about ``4 x concurrency`` even parts, each between 8 MiB (or the
    threshold, when that is smaller) and 64 MiB. Parts are fetched in order, ``concurrency``
    at a time, so the written prefix grows steadily (the hasher follows it), slow connections
    are rebalanced, and a crash loses little.
    """
    if size < max(threshold, 1) or concurrency <= 1:
        return max(size, 1)
    even = math.ceil(size / (4 * concurrency))
    target = max(min(even, _MAX_PART), min(threshold, _MIN_PART), 1)
    count = math.ceil(size / target)
    return math.ceil(size / count)
