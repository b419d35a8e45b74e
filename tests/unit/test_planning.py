"""Planning, pure: remote names that would escape the destination are rejected (``..``,
absolute, backslash, NUL, drive letters, empty components); allow/ignore globs; the default
skip rules when safetensors weights are present; part sizes; byte-range set arithmetic."""

from __future__ import annotations

import pytest

from model_agent import errors, planning
from model_agent.download import ranges


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "a/../../b",
        "/etc/passwd",
        "a\\..\\b",
        "C:/Windows/x",
        "a\0b",
        "a//b",
        "./a",
        "a/.",
        "",
        "a\nb",
        "x" * 300,
    ],
)
def test_unsafe_remote_names_are_rejected(name: str) -> None:
    with pytest.raises(errors.UnsafePathError):
        planning.safe_relative_path(name)


@pytest.mark.parametrize("name", ["config.json", "a/b/c.safetensors", "..hidden", "a..b/c"])
def test_ordinary_names_are_kept_as_they_are(name: str) -> None:
    assert planning.safe_relative_path(name) == name


def test_one_unsafe_name_fails_the_whole_selection() -> None:
    with pytest.raises(errors.UnsafePathError, match=r"\.\./x"):
        planning.select(["config.json", "../x"])


REPO = [
    "config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "pytorch_model.bin",
    "consolidated.pth",
    "original/consolidated.00.pth",
    "original/params.json",
    "onnx/model.onnx",
    "model-Q4_K_M.gguf",
    "tokenizer.json",
    "text_encoder/model.safetensors",
    "vae/diffusion_pytorch_model.bin",
]


def test_default_rules_skip_what_a_runtime_never_loads_beside_safetensors() -> None:
    assert planning.select(REPO) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer.json",
        "text_encoder/model.safetensors",
        "vae/diffusion_pytorch_model.bin",
    ]


def test_without_safetensors_nothing_is_skipped_by_default() -> None:
    names = ["config.json", "pytorch_model.bin", "original/x.pth", "a.gguf", "b.gguf"]
    assert planning.select(names) == names


def test_allow_patterns_replace_the_default_rules() -> None:
    assert planning.select(REPO, allow=["*.gguf", "config.json"]) == [
        "config.json",
        "model-Q4_K_M.gguf",
    ]


def test_ignore_patterns_and_directory_patterns_drop_files() -> None:
    chosen = planning.select(REPO, ignore=["tokenizer*", "text_encoder/"])
    assert "tokenizer.json" not in chosen
    assert "text_encoder/model.safetensors" not in chosen
    assert "config.json" in chosen


def test_patterns_are_comma_separated_and_trimmed() -> None:
    assert planning.parse_patterns(" *.json, ,*.safetensors ") == ("*.json", "*.safetensors")
    assert planning.parse_patterns(None) == ()


@pytest.mark.parametrize(
    ("size", "threshold", "concurrency", "expected"),
    [
        (100, 200, 4, 100),  # below the threshold: one part
        (0, 200, 4, 1),
        (1000, 200, 4, 200),  # parts of at least the threshold (when below 8 MiB)
        (1000, 100, 4, 100),  # 4 x concurrency even parts
        (1001, 50, 4, 63),
        (256 * 1024**2, 200 * 1024**2, 4, 16 * 1024**2),
        (10 * 1024**3, 200 * 1024**2, 4, 64 * 1024**2),  # capped at 64 MiB
        (1000, 200, 1, 1000),
    ],
)
def test_part_sizes(size: int, threshold: int, concurrency: int, expected: int) -> None:
    assert planning.part_size(size, threshold=threshold, concurrency=concurrency) == expected


def test_part_sizes_even_out_the_last_part() -> None:
    size = 2_097_232
    part = planning.part_size(size, threshold=1024**2, concurrency=4)
    pieces = ranges.split([(0, size)], part_size=part)
    assert pieces[0][0] == 0 and pieces[-1][1] == size
    assert max(e - s for s, e in pieces) - min(e - s for s, e in pieces) < len(pieces)


def test_range_sets_merge_and_report_gaps() -> None:
    done = ranges.normalize([(10, 20), (0, 5), (5, 10), (30, 40), (35, 36)])
    assert done == ((0, 20), (30, 40))
    assert ranges.missing(done, 50) == ((20, 30), (40, 50))
    assert ranges.covered(done) == 30
    assert ranges.missing([], 0) == ()
    assert ranges.split([(0, 10)], part_size=4) == [(0, 4), (4, 8), (8, 10)]


def test_invalid_ranges_are_refused() -> None:
    with pytest.raises(ValueError):
        ranges.normalize([(5, 1)])
