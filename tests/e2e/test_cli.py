"""The `model-agent` command as a user runs it: help lists every flag with its default, and a
missing NODE_NAME is one clear line, not a traceback."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from model_agent import settings

CONTRACT_FLAGS = [
    "--download-retry",
    "--concurrency",
    "--multipart-concurrency",
    "--num-download-worker",
    "--models-root-dir",
    "--temp-dir",
    "--cleanup-temp",
    "--node-name",
    "--namespace",
    "--node-label-retry",
    "--log-level",
    "--log-format",
    "--port",
    "--metrics-port",
    "--config-map-sync-interval",
    "--model-watch-resync-period",
    "--max-concurrent-reconciles",
    "--liveness-endpoint",
]


def model_agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_run_help_lists_every_contract_flag_with_default() -> None:
    result = model_agent("run", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag in CONTRACT_FLAGS:
        assert flag in text, flag
    for flag in settings.FLAGS:
        if "run" in flag.commands and flag.default is not None:
            assert f"(default: {flag.default})" in text, flag.flag


@pytest.mark.parametrize("command", ["pull", "inspect", "gpu-shape"])
def test_every_subcommand_has_help(command: str) -> None:
    result = model_agent(command, "--help")
    assert result.returncode == 0
    assert f"model-agent {command}" in result.stdout


def test_run_without_node_name_is_one_clear_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    result = model_agent("run", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "NODE_NAME" in lines[0]
    assert "Traceback" not in result.stderr


def test_invalid_flag_value_names_the_flag() -> None:
    result = model_agent("run", "--node-name", "n1", "--concurrency", "lots")
    assert result.returncode == 2
    assert "--concurrency" in result.stderr
    assert "Traceback" not in result.stderr


def test_flags_page_documents_every_flag() -> None:
    flags_page = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "flags.md").read_text()
    for flag in settings.FLAGS:
        assert f"`{flag.flag}`" in flags_page, flag.flag
