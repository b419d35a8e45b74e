"""A thousand agents, one API server: what N real agents ask of it, extrapolated.

Starts the fake API server (tests/harness/kube.py, a thread of this process; it counts every
request by verb, resource and agent, see tests/harness/kube_counting.py) and ``--agents``
real ``model-agent run`` processes (tests/harness/fleet.py), each with its own Node, models
root and token. Models are ``local://`` (adopted in place, no bytes move), so every figure
is the agents' own API traffic. Phases:

1. start: the agents start ``--stagger`` seconds apart with ``--models`` ClusterBaseModels
   selected on every node; waits until every entry is Ready and the processes are idle;
2. idle: ``--idle`` seconds of nothing; requests per agent per minute (watch requests
   apart), the watches each agent holds, idle RSS;
3. a model selected on no node: requests and writes per agent;
4. a model selected on every node: requests and writes per agent, time until all Ready;
5. every watch dropped with the history compacted (an API server restart): requests per
   agent in the first ``--after-drop`` seconds, the spread of the relists, the busiest
   second;
6. the per-agent figures times 1,000 and 5,000 nodes, next to the API server's default
   ``--max-requests-inflight 400`` / ``--max-mutating-requests-inflight 200``.

    .venv/bin/python benchmarks/api_budget.py --agents 50
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _agentbench as bench

from tests.harness import modelfiles
from tests.harness.fleet import MODEL_WATCHES, Fleet, drop_all_watches
from tests.harness.kube import FakeKube
from tests.harness.kube_counting import Hit

MiB = 2**20
#: Assumed API server latencies for the inflight estimate (Little's law: rate x latency).
READ_LATENCY, WRITE_LATENCY = 0.05, 0.02


def model(name: str, uri: str, pool: str) -> dict[str, Any]:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {
            "modelFormat": {"name": "safetensors"},
            "storage": {"storageUri": uri, "nodeSelector": {"pool": pool}},
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--stagger", type=float, default=0.5)
    parser.add_argument("--idle", type=float, default=120.0)
    parser.add_argument("--after-drop", type=float, default=60.0)
    parser.add_argument("--relist-window", default="30s")
    parser.add_argument("--timeout", type=float, default=900.0)
    options = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="api-budget-"))
    try:
        local = modelfiles.write_model(
            work / "local-model",
            config={"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
            tensors={"model.embed_tokens.weight": ("BF16", [8, 8])},
        )
        with FakeKube() as kube:
            for i in range(options.models):
                kube.create(model(f"base-{i}", f"local://{local}", "sim"))
            fleet = Fleet(
                kube,
                options.agents,
                work / "agents",
                args=("--relist-window", options.relist_window, "--log-level", "warning"),
                labels={"pool": "sim"},
                stagger=options.stagger,
                timeout=options.timeout,
            )
            with fleet:
                run(kube, fleet, options, f"local://{local}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run(kube: FakeKube, fleet: Fleet, options: argparse.Namespace, uri: str) -> None:
    n = options.agents
    rows: list[tuple[str, str]] = []
    counter = kube.counter

    def ready(name: str) -> bool:
        return all(
            '"Ready"' in fleet.entries(node).get(f"clusterbasemodel.{name}", "")
            for node in fleet.names
        )

    started = time.monotonic()
    fleet.wait(lambda: all(ready(f"base-{i}") for i in range(options.models)), options.timeout)
    wait_all_idle(fleet)
    start_hits = counter.snapshot()
    rows += [
        (
            f"start: {n} agents watching, {options.models} models Ready everywhere, idle",
            f"{time.monotonic() - started:.0f} s after the last start",
        ),
        ("start: requests per agent (median)", _median_per_agent(start_hits, fleet)),
        ("start: requests by kind, per agent", _by_kind(start_hits, n)),
    ]
    # --- idle ---
    rss = {name: bench.rss_bytes(pid) for name, pid in fleet.pids()}
    t0 = time.monotonic()
    time.sleep(options.idle)
    t1 = time.monotonic()
    minutes = (t1 - t0) / 60
    idle = counter.select(since=t0, until=t1)
    plain = [h for h in idle if h.verb != "watch"]
    watches = [h for h in idle if h.verb == "watch"]
    held = counter.open_watches()
    held_counts = [sum(held.get(name, {}).values()) for name in fleet.names]
    idle_rate = len(plain) / n / minutes
    rows += [
        (
            f"idle ({options.idle:.0f} s): requests per agent per minute, watches apart",
            f"{idle_rate:.3f} ({len(plain)} in all: {_by_kind(plain)})",
        ),
        (
            "idle: watch requests (reopened streams) per agent per minute",
            f"{len(watches) / n / minutes:.3f}",
        ),
        (
            "idle: watches held per agent (min / max)",
            f"{min(held_counts)} / {max(held_counts)} ({', '.join(MODEL_WATCHES)})",
        ),
        (
            "idle RSS per agent (median / max)",
            f"{statistics.median(rss.values()) / MiB:.0f} / {max(rss.values()) / MiB:.0f} MiB",
        ),
    ]
    # --- a model selected on no node ---
    t0 = time.monotonic()
    kube.create(model("nowhere", uri, "none"))
    time.sleep(10)
    wait_all_idle(fleet)
    nowhere = counter.select(since=t0)
    writes = [h for h in nowhere if h.is_write]
    rows += [
        ("model selected on no node: requests per agent", f"{len(nowhere) / n:.2f}"),
        (
            "model selected on no node: writes per agent",
            f"{len(writes) / n:.2f} ({len(writes)} in all)",
        ),
    ]
    # --- a model selected on every node ---
    t0 = time.monotonic()
    kube.create(model("everywhere", uri, "sim"))
    took = fleet.wait(lambda: ready("everywhere"), options.timeout)
    wait_all_idle(fleet)
    every = counter.select(since=t0)
    writes = [h for h in every if h.is_write]
    per_agent_writes = collections.Counter(h.agent for h in writes)
    busiest_w = _busiest_second(writes)
    rows += [
        ("model selected on every node: all Ready after", f"{took:.1f} s"),
        (
            "model selected on every node: requests per agent",
            f"{len(every) / n:.2f} ({_by_kind(every)})",
        ),
        (
            "model selected on every node: writes per agent (max)",
            f"{len(writes) / n:.2f} ({max(per_agent_writes.values(), default=0)})",
        ),
        ("model selected on every node: busiest second, writes", f"{busiest_w}"),
    ]
    # --- every watch dropped, history compacted ---
    t0 = time.monotonic()
    drop_all_watches(kube)
    time.sleep(options.after_drop)
    after = counter.select(since=t0, until=t0 + options.after_drop)
    lists = [h for h in after if h.verb == "list"]
    offsets = sorted(h.at - t0 for h in lists)
    fleet.wait(fleet.all_watching, options.timeout)
    relisted = {h.agent for h in lists}
    rows += [
        (
            f"after a drop: requests per agent in the first {options.after_drop:.0f} s",
            f"{len(after) / n:.2f} ({_by_kind(after)})",
        ),
        ("after a drop: agents that relisted", f"{len(relisted)} of {n}"),
        (
            "after a drop: relists from first to last",
            f"{offsets[0]:.1f} s .. {offsets[-1]:.1f} s (spread {offsets[-1] - offsets[0]:.1f} s)"
            if offsets
            else "none",
        ),
        ("after a drop: busiest second, requests (watches included)", f"{_busiest_second(after)}"),
    ]
    peaks = [bench.peak_rss_bytes(pid) for _, pid in fleet.pids()]
    rows.append(
        (
            "peak RSS per agent (median / max)",
            f"{statistics.median(peaks) / MiB:.0f} / {max(peaks) / MiB:.0f} MiB",
        )
    )
    print(f"\napi budget: {n} agents, {os.cpu_count()} CPUs, {options.models} models\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    reads_after = [h for h in after if h.verb != "watch"]
    extrapolate(
        idle_rate=idle_rate,
        write_peak=busiest_w / n,
        writes=len(writes) / n,
        drop_reads=len(reads_after) / n,
        drop_peak=_busiest_second(reads_after) / n,
        drop_watches=len(after) / n - len(reads_after) / n,
    )


def extrapolate(
    *,
    idle_rate: float,
    write_peak: float,
    writes: float,
    drop_reads: float,
    drop_peak: float,
    drop_watches: float,
) -> None:
    """Per-agent figures times the node count. Watches are long-running requests: the
    max-requests-inflight limits do not count them. In flight = rate x assumed latency."""
    print(
        "\n| nodes | idle: requests/s | one model on every node: writes, busiest second "
        "(in flight; mutating limit 200) | after a drop: relists in the first minute, "
        "busiest second (in flight; limit 400) | after a drop: watch requests |"
    )
    print("|---|---|---|---|---|")
    for nodes in (1000, 5000):
        w_rate, r_rate = write_peak * nodes, drop_peak * nodes
        print(
            f"| {nodes} | {idle_rate * nodes / 60:.2f} | {writes * nodes:.0f} writes, "
            f"{w_rate:.0f}/s ({w_rate * WRITE_LATENCY:.0f} at {WRITE_LATENCY * 1000:.0f} ms) | "
            f"{drop_reads * nodes:.0f}, {r_rate:.0f}/s ({r_rate * READ_LATENCY:.0f} at "
            f"{READ_LATENCY * 1000:.0f} ms) | {drop_watches * nodes:.0f} |"
        )


def wait_all_idle(fleet: Fleet) -> None:
    for _, pid in fleet.pids():
        bench.wait_idle(pid, window=0.5, threshold=0.05, timeout=300)


def _median_per_agent(hits: list[Hit], fleet: Fleet) -> str:
    per = collections.Counter(h.agent for h in hits)
    return f"{statistics.median(per.get(name, 0) for name in fleet.names):.0f}"


def _by_kind(hits: list[Hit], per: int = 1) -> str:
    kinds = collections.Counter(f"{h.verb} {h.resource}" for h in hits)
    return ", ".join(f"{k}: {v / per:g}" for k, v in kinds.most_common()) or "none"


def _busiest_second(hits: list[Hit]) -> int:
    buckets = collections.Counter(int(h.at) for h in hits)
    return max(buckets.values(), default=0)


if __name__ == "__main__":
    sys.exit(main())
