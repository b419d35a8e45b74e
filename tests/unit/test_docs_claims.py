"""Claims the docs make about flags match what the code does with them.

Aspects: each flag's one-line meaning in docs/flags.md is the help text the command prints
(one source of truth, so the two cannot describe a flag two ways); docs/metrics.md names every
``model_agent_*`` metric the agent registers."""

from __future__ import annotations

import pathlib

import prometheus_client
import pytest

from model_agent import metrics, settings

FLAGS_PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "flags.md"


@pytest.mark.parametrize("flag", settings.FLAGS, ids=lambda f: f.flag)
def test_the_flags_page_gives_each_flag_its_help_text(flag):
    rows = [line for line in FLAGS_PAGE.read_text().splitlines() if f"| `{flag.flag}` |" in line]
    assert len(rows) == 1, flag.flag
    assert rows[0].rstrip().endswith(f"| {flag.help} |"), (rows[0], flag.help)


def test_the_metrics_page_names_every_metric_the_agent_registers():
    registry = prometheus_client.CollectorRegistry()
    metrics.Metrics(registry)
    page = (FLAGS_PAGE.parent / "metrics.md").read_text()
    for family in registry.collect():
        if not family.name.startswith("model_agent_"):
            continue
        # counters are documented with their exposed _total suffix
        exposed = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{exposed}`" in page, exposed
