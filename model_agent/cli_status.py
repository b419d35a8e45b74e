"""``model-agent status`` (also ``kubectl model-agent status``): the fleet view.

Reads the models, Nodes and per-node ConfigMaps (``fleet.reads``), aggregates and renders them
(``fleet.view``): one row per model with its nodes Ready / Updating / Failed / selected, one
line per node with a progress bar, bytes, speed, ETA and failure reasons; ``-o json`` for
scripts. ``--watch`` redraws in place on a terminal and prints plain frames, one after the
other, when stdout is not one. Honours ``--kubeconfig``, ``--context`` and ``-n``/``-A`` as
a kubectl plugin does.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
from typing import TextIO

from model_agent import errors
from model_agent.fleet import reads, view

__all__ = ["run"]

_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


def _frame(rows: list[view.ModelRow], output: str, now: datetime.datetime) -> str:
    if output == "json":
        return json.dumps(view.render_json(rows, now), sort_keys=True)
    return "\n".join(view.render_text(rows))


async def _show(args: argparse.Namespace, out: TextIO) -> None:
    api, default_namespace = await reads.connect(args.kubeconfig, args.context, os.environ)
    namespace = None if args.all_namespaces else (args.models_namespace or default_namespace)
    target = reads.Target(namespace=namespace, agent_namespace=args.agent_namespace)
    redraw = args.watch and out.isatty() and args.output == "text"
    try:
        while True:
            snap = await reads.snapshot(api, target)
            rows = view.aggregate(snap.models, snap.nodes, snap.configmaps)
            now = datetime.datetime.now(datetime.UTC)
            frame = _frame(rows, args.output, now)
            if redraw:
                stamp = now.strftime("%H:%M:%S")
                out.write(f"{_CLEAR}Every {args.interval:g}s  {stamp}\n\n{frame}\n")
            elif args.watch and args.output == "text":
                out.write(f"--- {now.strftime('%Y-%m-%dT%H:%M:%SZ')}\n{frame}\n")
            else:
                out.write(frame + "\n")
            out.flush()
            if not args.watch:
                return
            await asyncio.sleep(args.interval)
    finally:
        await api.close()


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise errors.ConfigError("--interval must be positive")
    if args.all_namespaces and args.models_namespace:
        raise errors.ConfigError("-n/--namespace and -A/--all-namespaces exclude each other")
    try:
        asyncio.run(_show(args, sys.stdout))
    except KeyboardInterrupt:
        return 0
    return 0
