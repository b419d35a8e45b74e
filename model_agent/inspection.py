"""Analyse a model folder on disk: the thin reader in front of ``model_agent.modelinfo``.

It finds the config (``model_index.json`` for a diffusers pipeline, else ``config.json`` at the
root, then in the usual subfolders, then a bounded search), reads it with a size cap, reads
only the headers of the safetensors files (never tensor data), and returns the ConfigMap
entry's ``config`` object without ``artifact`` (the pipeline adds that).

Safetensors headers: the 8-byte length is checked first against ``MAX_HEADER_BYTES`` and the
file size (before anything is parsed), then the format's reference reader (the
``safetensors`` package, ``safe_open``) parses and validates the header: names, dtypes,
shapes, offsets that tile the data section. A dtype newer than the installed library (it
refuses the file) falls back to this project's parser, which knows every dtype in
``modelinfo.safetensors.DTYPE_BITS``; packed-weight counting is always this project's.

Read-only: files are opened for reading and nothing is written, renamed or created. Every
problem raises ``errors.ModelInfoError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any, BinaryIO

from model_agent import errors
from model_agent.modelinfo import config as configs
from model_agent.modelinfo import report, safetensors, tensorrt

__all__ = [
    "CONFIG_MAX_BYTES",
    "INDEX_MAX_BYTES",
    "NoConfigError",
    "find_config",
    "inspect_directory",
    "read_header",
    "read_weights",
]

#: Largest config.json / model_index.json we read (real ones are a few KB to a few hundred).
CONFIG_MAX_BYTES = 16 * 1024 * 1024
#: Largest *.safetensors.index.json we read (DeepSeek-V3's and Kimi K2's are about 8-13 MB).
INDEX_MAX_BYTES = 32 * 1024 * 1024
CONFIG_NAME = "config.json"
MODEL_INDEX_NAME = "model_index.json"
SENTENCE_TRANSFORMERS_NAME = "config_sentence_transformers.json"
#: Subfolders OME looks in before searching.
_USUAL_SUBFOLDERS = ("safetensors", "pytorch_model", "model")
_SEARCH_DEPTH = 3
_SEARCH_MAX_DIRS = 2000


def _read_exact(file: BinaryIO, count: int) -> bytes:
    """Up to ``count`` bytes from an unbuffered file: never more is read from the disk, and
    the buffer allocated is at most ``count`` bytes (already checked against the file size)."""
    chunks, remaining = [], count
    while remaining > 0:
        chunk = file.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_capped(path: pathlib.Path, limit: int) -> bytes:
    try:
        with path.open("rb", buffering=0) as file:
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise errors.ModelInfoError(
                    f"{path}: {size} bytes, larger than the {limit}-byte limit for this file"
                )
            data = _read_exact(file, size + 1)
    except OSError as exc:
        raise errors.ModelInfoError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > limit:  # grew while we read it
        raise errors.ModelInfoError(f"{path}: larger than the {limit}-byte limit for this file")
    return data


def _load(path: pathlib.Path, limit: int = CONFIG_MAX_BYTES) -> dict[str, Any]:
    return configs.load_json(_read_capped(path, limit), source=str(path))


def _search(root: pathlib.Path, name: str) -> pathlib.Path | None:
    """Breadth-first, sorted, hidden folders skipped, bounded in depth and folders visited."""
    level = [root]
    visited = 0
    for _ in range(_SEARCH_DEPTH):
        next_level: list[pathlib.Path] = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.name == name and entry.is_file():
                    return pathlib.Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    next_level.append(pathlib.Path(entry.path))
            visited += 1
            if visited >= _SEARCH_MAX_DIRS:
                return None
        level = next_level
    return None


def find_config(root: pathlib.Path, name: str = CONFIG_NAME) -> pathlib.Path | None:
    """``root/name``, else ``root/{safetensors,pytorch_model,model}/name``, else a search."""
    for candidate in (root / name, *(root / sub / name for sub in _USUAL_SUBFOLDERS)):
        if candidate.is_file():
            return candidate
    return _search(root, name)


def read_header(path: pathlib.Path) -> safetensors.Header:
    """Read and validate one file's safetensors header (see the module docstring)."""
    length, size = _checked_length(path)
    try:
        return _reference_header(path, length=length, size=size)
    except _RefusedError as refused:
        # This project's parser says why in its words (naming the tensor and the field), or
        # reads a dtype newer than the library; if it accepts what the library refused for
        # another reason, the library's verdict stands.
        own = _own_header(path)
        if refused.newer_dtype:
            return own
        raise errors.ModelInfoError(f"{path}: invalid safetensors header: {refused}") from None


class _RefusedError(Exception):
    """The safetensors library refused the header; ``newer_dtype``: for a dtype it lacks."""

    def __init__(self, message: str, *, newer_dtype: bool) -> None:
        super().__init__(message)
        self.newer_dtype = newer_dtype


def _checked_length(path: pathlib.Path) -> tuple[int, int]:
    """The header length (checked against the cap and the file size) and the file size."""
    try:
        with path.open("rb", buffering=0) as file:
            size = os.fstat(file.fileno()).st_size
            prefix = _read_exact(file, safetensors.PREFIX_BYTES)
    except OSError as exc:
        raise errors.ModelInfoError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return safetensors.header_length(prefix, source=str(path), file_size=size), size


def _reference_header(path: pathlib.Path, *, length: int, size: int) -> safetensors.Header:
    """The header as the safetensors library reads it (it maps the file and reads only the
    header; tensor data is never touched)."""
    import safetensors as reference  # imports numpy: only where analysis runs

    try:
        with reference.safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = []
            offset = 0
            for name in handle.offset_keys() if hasattr(handle, "offset_keys") else handle.keys():
                view = handle.get_slice(name)
                dtype, shape = str(view.get_dtype()), tuple(int(d) for d in view.get_shape())
                if dtype not in safetensors.DTYPE_BITS:
                    raise _RefusedError(f"{name}: unknown dtype {dtype!r}", newer_dtype=False)
                nbytes = (math.prod(shape) * safetensors.DTYPE_BITS[dtype] + 7) // 8
                tensors.append(
                    safetensors.Tensor(
                        name=name, dtype=dtype, shape=shape, begin=offset, end=offset + nbytes
                    )
                )
                offset += nbytes
    except reference.SafetensorError as exc:
        raise _RefusedError(str(exc), newer_dtype="unknown variant" in str(exc)) from None
    except OSError as exc:
        raise errors.ModelInfoError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return safetensors.Header(
        source=str(path),
        tensors=tuple(tensors),
        metadata={str(k): str(v) for k, v in metadata.items()},
        header_bytes=length,
    )


def _own_header(path: pathlib.Path) -> safetensors.Header:
    """This project's parser: at most 8 + header-length bytes read."""
    try:
        with path.open("rb", buffering=0) as file:
            size = os.fstat(file.fileno()).st_size
            prefix = _read_exact(file, safetensors.PREFIX_BYTES)
            length = safetensors.header_length(prefix, source=str(path), file_size=size)
            data = _read_exact(file, length)
    except OSError as exc:
        raise errors.ModelInfoError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) != length:
        raise errors.ModelInfoError(f"{path}: truncated safetensors header")
    return safetensors.parse_header(data, source=str(path), file_size=size)


def _weight_files(folder: pathlib.Path) -> list[pathlib.Path]:
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_file())
    except OSError as exc:
        raise errors.ModelInfoError(f"{folder}: cannot list: {exc.strerror or exc}") from exc
    indexes = [n for n in names if n.endswith(".safetensors.index.json")]
    if "model.safetensors.index.json" in indexes:
        indexes = ["model.safetensors.index.json"]
    if not indexes:
        return [folder / n for n in safetensors.select_files(names)]
    shards: set[str] = set()
    for index in indexes:
        path = folder / index
        for shard in safetensors.parse_index(_read_capped(path, INDEX_MAX_BYTES), source=str(path)):
            if not (folder / shard).is_file():
                raise errors.ModelInfoError(f"{folder / shard}: shard listed in {path} is missing")
            shards.add(shard)
    return [folder / s for s in sorted(shards)]


def read_weights(folder: pathlib.Path, *, int_bits: int = 4) -> safetensors.ParameterCount | None:
    """Parameters of the safetensors weights in ``folder`` (headers only), or None if none."""
    files = _weight_files(folder)
    if not files:
        return None
    counts = [safetensors.count_parameters(read_header(f), int_bits=int_bits) for f in files]
    return safetensors.merge_counts(counts)


def _diffusers(index_path: pathlib.Path) -> dict[str, Any]:
    facts = configs.diffusers_facts(_load(index_path), source=str(index_path))
    base = index_path.parent
    counts = []
    for name in sorted(facts.components):
        if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise errors.ModelInfoError(f"{index_path}: unsafe component name {name!r}")
        folder = base / name
        if folder.is_dir():
            count = read_weights(folder)
            if count is not None:
                counts.append(count)
    context, dtype = 0, ""
    encoder_config = base / "text_encoder" / CONFIG_NAME
    if encoder_config.is_file():
        encoder = configs.model_facts(_load(encoder_config))
        context, dtype = encoder.context_length, encoder.torch_dtype
    return report.diffusers_config(
        facts,
        safetensors.merge_counts(counts) if counts else None,
        context_length=context,
        torch_dtype=dtype,
    )


class NoConfigError(errors.ModelInfoError):
    """The folder holds no config.json or model_index.json: nothing to analyse (a GGUF-only
    repository, say). Unlike a malformed file, this is not a reason to fail a download."""

    reason = "NoModelConfig"


def inspect_directory(path: pathlib.Path) -> dict[str, Any]:
    """The ConfigMap ``config`` object (without ``artifact``) for the model in ``path``."""
    root = pathlib.Path(path)
    if not root.is_dir():
        raise errors.ModelInfoError(f"{root}: not a directory")
    index = root / MODEL_INDEX_NAME
    if index.is_file():
        return _diffusers(index)
    config_path = find_config(root)
    if config_path is None:
        found = find_config(root, MODEL_INDEX_NAME)
        if found is not None:
            return _diffusers(found)
        raise NoConfigError(
            f"{root}: not a model folder: no {CONFIG_NAME} or {MODEL_INDEX_NAME} found"
        )
    raw = _load(config_path)
    trt_version: str | None = None
    if tensorrt.is_tensorrt_llm(raw):
        raw, trt_version = tensorrt.to_transformers(raw)
    if not raw.get("model_type") and not raw.get("architectures"):
        raise errors.ModelInfoError(
            f"{config_path}: neither 'model_type' nor 'architectures': not a model config"
        )
    folder = config_path.parent
    sentence = (folder / SENTENCE_TRANSFORMERS_NAME).is_file() or (
        root / SENTENCE_TRANSFORMERS_NAME
    ).is_file()
    facts = configs.model_facts(raw, sentence_transformers=sentence)
    if trt_version is not None:
        facts = dataclasses.replace(
            facts,
            format_name=tensorrt.FORMAT,
            format_version=trt_version,
            framework_name=tensorrt.FORMAT,
            framework_version=trt_version,
        )
    bits = facts.quantization.bits if facts.quantization and facts.quantization.bits else 4
    return report.transformers_config(facts, read_weights(folder, int_bits=bits))
