"""`model-agent inspect DIR`: print the analysis of a model folder as JSON, read-only.

Stdout carries only the JSON (the ConfigMap entry's ``config`` object without ``artifact``).
Exit 0 on success; 1 with one line on stderr naming the file when the folder is not a model or
its files are malformed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from model_agent import errors, inspection, settings

EXIT_OK, EXIT_FAILED = 0, 1


def run(args: argparse.Namespace, config: settings.Settings) -> int:
    try:
        result = inspection.inspect_directory(pathlib.Path(args.directory))
    except errors.ModelInfoError as exc:
        print(f"model-agent inspect: {exc}", file=sys.stderr)
        return EXIT_FAILED
    json.dump(result, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return EXIT_OK
