"""`model-agent pull URI --path DIR`: one model, no cluster.

Pins, downloads, verifies and places the model, analyses it, and prints exactly one JSON object
on stdout: the ConfigMap entry's ``config`` (with ``artifact``). Logs and progress go to stderr
(``cli_pull_display``: a live tqdm display on a terminal with the logs above it, a line every
few seconds otherwise). Exit 0 on success, 1 on failure with a
one-line reason, 2 on usage errors. Manifests live in ``$MODEL_AGENT_STATE_DIR`` (default
``~/.local/state/model-agent``); rerunning after a crash resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from model_agent import blocking, cli_pull_display, errors, pipeline, settings

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
    reporter = cli_pull_display.reporter_for(sys.stderr)
    try:
        with cli_pull_display.redirect_logs(reporter):
            result = blocking.run(
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
        f"{cli_pull_display.human_bytes(result.bytes_downloaded)} downloaded",
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
