"""`model-agent gpu-shape`: not implemented yet (a later issue fills it)."""

from __future__ import annotations

import argparse
import sys

from model_agent import settings


def run(args: argparse.Namespace, config: settings.Settings) -> int:
    print("model-agent gpu-shape: not implemented yet", file=sys.stderr)
    return 2
