"""`model-agent pull URI --path DIR`: one model, no cluster.

Pins, downloads, verifies and places the model, analyses it, and prints exactly one JSON object
on stdout: the ConfigMap entry's ``config`` (with ``artifact``). Logs and progress go to stderr
(a bar on a TTY, a line every few seconds otherwise). Exit 0 on success, 1 on failure with a
one-line reason, 2 on usage errors. Manifests live in ``$MODEL_AGENT_STATE_DIR`` (default
``~/.local/state/model-agent``); rerunning after a crash resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import sys
import time
from typing import TextIO

from model_agent import errors, pipeline, settings

__all__ = ["parse_params", "run", "state_dir"]

_KNOWN_PARAMS = frozenset(
    {
        "token",
        "allow",
        "ignore",
        "endpoint",
        "modelFormat",
        "auth",
        "region",
        "profile",
        "secretKey",
    }
)
_LINE_INTERVAL = 5.0


def parse_params(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items as a dict; ``ConfigError`` (exit 2) naming a malformed item."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise errors.ConfigError(f"--param expects KEY=VALUE, got {item.split('=')[0]!r}")
        if key not in _KNOWN_PARAMS:
            known = ", ".join(sorted(_KNOWN_PARAMS))
            raise errors.ConfigError(f"unknown --param {key!r} (known: {known})")
        params[key] = value
    return params


def state_dir() -> pathlib.Path:
    configured = os.environ.get("MODEL_AGENT_STATE_DIR")
    if configured:
        return pathlib.Path(configured)
    return pathlib.Path.home() / ".local" / "state" / "model-agent"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


class _Reporter:
    """Progress on stderr: an in-place bar on a TTY, a plain line every few seconds otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = 0.0

    def __call__(self, progress: pipeline.Progress) -> None:
        now = time.monotonic()
        total = max(progress.total_bytes, 1)
        percent = 100.0 * progress.completed_bytes / total
        text = (
            f"{progress.phase}: {_size(progress.completed_bytes)} / {_size(progress.total_bytes)} "
            f"({percent:.0f}%), {progress.completed_files}/{progress.total_files} files, "
            f"{_size(progress.speed_bytes_per_sec)}/s"
        )
        if self._tty:
            filled = int(30 * progress.completed_bytes / total)
            self._stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}\x1b[K")
            self._stream.flush()
        elif now - self._last >= _LINE_INTERVAL or progress.phase == "finalizing":
            self._last = now
            print(text, file=self._stream, flush=True)

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


def run(args: argparse.Namespace, config: settings.Settings) -> int:
    params = parse_params(list(args.param or []))
    destination = pathlib.Path(args.path)
    if destination.exists() and not destination.is_dir():
        raise errors.ConfigError(f"--path {args.path} exists and is not a directory")
    model_format = params.get("modelFormat")
    shape = args.shape
    if model_format and model_format.lower() == "tensorrtllm" and not shape:
        shape = _detect_shape(config)
    request = pipeline.PullRequest(
        uri=args.uri,
        destination=destination,
        parameters={k: v for k, v in params.items() if k != "token"},
        token=params.get("token"),
        model_format=model_format,
        shape=shape,
    )
    reporter = _Reporter(sys.stderr)
    try:
        result = asyncio.run(
            pipeline.pull(request, config, state_dir=state_dir(), progress=reporter)
        )
    except errors.InvalidURIError as exc:
        reporter.close()
        print(f"model-agent: error: {exc}", file=sys.stderr)
        return 2
    except errors.AgentError as exc:
        reporter.close()
        print(f"model-agent: Failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        reporter.close()
        print(f"model-agent: Failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    reporter.close()
    print(
        f"model-agent: pulled {result.files} files at {result.revision}, "
        f"{_size(result.bytes_downloaded)} downloaded",
        file=sys.stderr,
    )
    sys.stdout.write(json.dumps(result.config, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


def _detect_shape(config: settings.Settings) -> str | None:
    try:
        from model_agent import gpu

        info = gpu.detect_shape(instance_type=None, instance_type_map=config.instance_type_map)
    except (ImportError, errors.AgentError):
        return None
    return info.alias if info is not None else None
