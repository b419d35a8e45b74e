"""Claims the docs make about flags match what the code does with them.

Aspects: each flag's one-line meaning in docs/flags.md is the help text the command prints
(one source of truth, so the two cannot describe a flag two ways)."""

from __future__ import annotations

import pathlib

import pytest

from model_agent import settings

FLAGS_PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "flags.md"


@pytest.mark.parametrize("flag", settings.FLAGS, ids=lambda f: f.flag)
def test_the_flags_page_gives_each_flag_its_help_text(flag):
    rows = [line for line in FLAGS_PAGE.read_text().splitlines() if f"| `{flag.flag}` |" in line]
    assert len(rows) == 1, flag.flag
    assert rows[0].rstrip().endswith(f"| {flag.help} |"), (rows[0], flag.help)
