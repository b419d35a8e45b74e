"""One model on N nodes at once: origin bytes and time to all Ready, with and without peering.

Starts the local hub (a thread of this process; its origin throttled to ``--throttle`` bytes
per second for all requests together, as a rate-limited Hub or bucket would be) with one model
repo of ``--shards`` x ``--shard-size`` (valid safetensors files of deterministic random bytes,
plus config.json), then runs scenarios one after another, each against a fresh fake API server
(tests/harness/kube.py) with fresh models roots:

- ``alone``: one real ``model-agent run`` process, peering off: the reference time;
- ``fleet``: ``--agents`` processes (tests/harness/fleet.py), peering off (``--peer-port`` not
  passed, so 0): every node downloads the whole model from the origin;
- ``peers``: ``--agents`` processes with peering on: each binds its peer server on its own
  loopback address (127.0.0.10, .11, ...) and the same ``--peer-port``, with one shared token
  file.

In each, one ClusterBaseModel (``hf://bench/model``) selects every node at once; the figures
are the origin's data bytes (``LocalHub.bytes_served``: file bodies only, not the API calls),
the seconds from the model's creation until every node's ConfigMap entry says Ready (and each
node's own time), and per node the bytes by source from its metrics
(``model_agent_download_bytes_total{source=...}``, where the agent has that label) and the
ConfigMap progress's ``bytesBySource`` (last value seen while Updating). Prints a table and
the ratios: origin bytes / model size (goal <= 1.3 with peering, about N without) and time to
all Ready / time of one node alone (goal <= 1.5).

    .venv/bin/python benchmarks/peer_rollout.py --agents 8 --throttle 16MiB --json /tmp/peer.json

``--keep DIR`` keeps each agent's log (``DIR/<scenario>/node-NNN/agent.log``) and the origin's
request log (``DIR/<scenario>/origin.jsonl``: every data request's file, Range and bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _agentbench as bench

from model_agent import settings
from tests.harness import hub as hub_mod
from tests.harness.fleet import Fleet
from tests.harness.kube import FakeKube
from tests.harness.operator import free_port

MiB = 2**20
REPO = "bench/model"
MODEL = "peer-bench"
KEY = f"clusterbasemodel.{MODEL}"
SCENARIOS = ("alone", "fleet", "peers")
_BLOCK = 4 * MiB


def write_shard(path: pathlib.Path, size: int, seed: int) -> None:
    """A valid safetensors file of ``size`` bytes: one U8 tensor of seeded random bytes."""
    header_len = 128
    data_len = size - 8 - header_len
    header = json.dumps(
        {"weight": {"dtype": "U8", "shape": [data_len], "data_offsets": [0, data_len]}}
    ).encode()
    rng = random.Random(seed)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", header_len) + header.ljust(header_len, b" "))
        remaining = data_len
        while remaining:
            piece = min(_BLOCK, remaining)
            handle.write(rng.randbytes(piece))
            remaining -= piece


def make_model(directory: pathlib.Path, shards: int, shard_size: int) -> dict[str, pathlib.Path]:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "max_position_embeddings": 4096,
        "torch_dtype": "bfloat16",
    }
    (directory / "config.json").write_text(json.dumps(config))
    for i in range(1, shards + 1):
        write_shard(directory / f"model-{i:05d}-of-{shards:05d}.safetensors", shard_size, i)
    return {p.name: p for p in sorted(directory.iterdir())}


def cluster_model(uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": MODEL},
        "spec": {
            "modelFormat": {"name": "safetensors"},
            "storage": {"storageUri": uri, "nodeSelector": {"pool": "bench"}},
        },
    }


def scrape(port: int) -> dict[str, float]:
    """Per-source download bytes and peer-served bytes from one agent's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("model_agent_download_bytes_total{"):
            labels, value = line.rsplit(" ", 1)
            source = "all"
            for part in labels[labels.index("{") + 1 : -1].split(","):
                name, _, quoted = part.partition("=")
                if name.strip() == "source":
                    source = quoted.strip('"')
            out[f"download:{source}"] = out.get(f"download:{source}", 0.0) + float(value)
        elif line.startswith("model_agent_peer_served_bytes_total"):
            out["peer_served"] = out.get("peer_served", 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("model_agent_peer_rejections_total{"):
            out["peer_rejections"] = out.get("peer_rejections", 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def peering_supported() -> bool:
    return any(flag.flag == "--peer-port" for flag in settings.FLAGS)


def run_scenario(
    name: str,
    hub: hub_mod.LocalHub,
    options: argparse.Namespace,
    work: pathlib.Path,
    model_bytes: int,
) -> dict[str, Any]:
    count = 1 if name == "alone" else options.agents
    args: list[str] = ["--log-level", options.log_level]
    per_agent: dict[int, list[str]] = {}
    if name == "peers":
        token = work / "peer-token"
        token.write_text(secrets.token_hex(32) + "\n")
        token.chmod(0o600)
        args += ["--peer-port", str(options.peer_port), "--peer-token-file", str(token)]
        per_agent = {i: ["--peer-address", f"127.0.0.{10 + i}"] for i in range(count)}
    scenario_dir = work / name
    with FakeKube() as kube:
        fleet = Fleet(
            kube,
            count,
            scenario_dir,
            args=args,
            per_agent_args=per_agent,
            env={"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"},
            labels={"pool": "bench"},
            stagger=options.stagger,
            timeout=240,
        )
        with fleet:
            for _, pid in fleet.pids():  # start-up CPU (imports) is not the download's
                bench.wait_idle(pid, window=0.5, threshold=0.05, timeout=120)
            log_start, served_before = len(hub.log), hub.bytes_served()
            ready_at: dict[str, float] = {}
            by_source: dict[str, dict[str, int]] = {}
            started = time.monotonic()
            kube.create(cluster_model(f"hf://{REPO}"))
            while len(ready_at) < count:
                now = time.monotonic() - started
                if now > options.timeout:
                    raise TimeoutError(f"{name}: not all Ready after {now:.0f} s: {ready_at}")
                for node in fleet.names:
                    raw = fleet.entries(node).get(KEY)
                    if raw is None or node in ready_at:
                        continue
                    value = json.loads(raw)
                    if value.get("status") == "Ready":
                        ready_at[node] = now
                    elif value.get("status") == "Failed":
                        agent = fleet.agents[fleet.names.index(node)]
                        raise RuntimeError(
                            f"{name}: {node} Failed: {raw}\n{agent.log_text()[-3000:]}"
                        )
                    elif "bytesBySource" in (value.get("progress") or {}):
                        by_source[node] = dict(value["progress"]["bytesBySource"])
                time.sleep(0.1)
            all_ready = max(ready_at.values())
            origin = hub.bytes_served() - served_before
            records = list(hub.log)[log_start:]
            metrics = {agent.node_name: scrape(agent.metrics_port) for agent in fleet.agents}
        if options.keep:
            keep_logs(pathlib.Path(options.keep) / name, fleet, records)
        failures = {agent.node_name: peer_failures(agent.log_text()) for agent in fleet.agents}
    nodes = []
    for node in fleet.names:
        m = metrics.get(node, {})
        nodes.append(
            {
                "node": node,
                "ready_s": round(ready_at[node], 2),
                "origin_bytes": int(m["download:origin"]) if "download:origin" in m else None,
                "peer_bytes": int(m["download:peer"]) if "download:peer" in m else None,
                "download_bytes": int(sum(v for k, v in m.items() if k.startswith("download:"))),
                "peer_served_bytes": int(m["peer_served"]) if "peer_served" in m else None,
                "peer_rejections": int(m.get("peer_rejections", 0)) if name == "peers" else None,
                "peer_failures": failures[node],
                "configmap_bytes_by_source": by_source.get(node),
            }
        )
    data = [r for r in records if r.kind == "data"]
    result = {
        "scenario": name,
        "nodes": count,
        "peering": name == "peers",
        "all_ready_s": round(all_ready, 2),
        "first_ready_s": round(min(ready_at.values()), 2),
        "origin_bytes": origin,
        "origin_over_model": round(origin / model_bytes, 3),
        "origin_data_requests": len(data),
        "origin_ranged_requests": sum(1 for r in data if r.range),
        "per_node": nodes,
    }
    shutil.rmtree(scenario_dir, ignore_errors=True)  # 2 GiB of models per fleet scenario
    return result


def peer_failures(log: str) -> dict[str, int]:
    """Failed peer transfers in one agent's log, by reason (``peer X failed for K: reason``)."""
    counts: dict[str, int] = {}
    for line in log.splitlines():
        if " model_agent.peers peer " in line and " failed for " in line:
            reason = line.split(": ", 1)[-1].split(" fetching ")[0]
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def keep_logs(dest: pathlib.Path, fleet: Fleet, records: list[Any]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for agent in fleet.agents:
        (dest / agent.node_name).mkdir(exist_ok=True)
        (dest / agent.node_name / "agent.log").write_text(agent.log_text())
    with (dest / "origin.jsonl").open("w") as out:
        for r in records:
            if r.kind == "data":
                row = {"file": r.file, "range": r.range, "status": r.status, "bytes": r.bytes_sent}
                out.write(json.dumps(row) + "\n")


def report(results: list[dict[str, Any]], options: argparse.Namespace, model_bytes: int) -> None:
    alone = next((r for r in results if r["scenario"] == "alone"), None)
    print(
        f"\npeer rollout: model {model_bytes / MiB:.0f} MiB ({options.shards} x "
        f"{options.shard_size} + config.json), origin throttled to "
        f"{options.throttle_bytes / MiB:g} MiB/s, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| scenario | nodes | peering | origin bytes | origin / model | all Ready | "
        "vs one node alone | first Ready |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        vs = f"{r['all_ready_s'] / alone['all_ready_s']:.2f}x" if alone else "-"
        print(
            f"| {r['scenario']} | {r['nodes']} | {'on' if r['peering'] else 'off'} | "
            f"{r['origin_bytes'] / MiB:.0f} MiB | {r['origin_over_model']:.2f}x | "
            f"{r['all_ready_s']:.1f} s | {vs} | {r['first_ready_s']:.1f} s |"
        )
    for r in results:
        if r["nodes"] == 1:
            continue
        print(f"\n{r['scenario']}: per node (bytes from the agents' metrics, MiB)\n")
        print(
            "| node | Ready after | downloaded | origin | peer | served to peers | "
            "peers dropped | failed peer transfers |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for n in r["per_node"]:
            cells = [f"{n['download_bytes'] / MiB:.0f}"] + [
                "-" if n[k] is None else f"{n[k] / MiB:.0f}"
                for k in ("origin_bytes", "peer_bytes", "peer_served_bytes")
            ]
            dropped = "-" if n["peer_rejections"] is None else str(n["peer_rejections"])
            failed = ", ".join(f"{v} {k}" for k, v in n["peer_failures"].items()) or "0"
            print(
                f"| {n['node']} | {n['ready_s']:.1f} s | {' | '.join(cells)} | {dropped} | "
                f"{failed} |"
            )
    peers = next((r for r in results if r["scenario"] == "peers"), None)
    if peers and alone:
        print(
            f"\ngoals (peering on): origin / model {peers['origin_over_model']:.2f} (<= 1.3), "
            f"all Ready / alone {peers['all_ready_s'] / alone['all_ready_s']:.2f} (<= 1.5)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--shard-size", default="128MiB")
    parser.add_argument("--throttle", default="16MiB", help="origin bytes per second, all nodes")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="alone,fleet,peers")
    parser.add_argument("--peer-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--stagger", type=float, default=0.3)
    parser.add_argument("--timeout", type=float, default=600.0, help="per scenario, seconds")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--keep", help="keep agent logs and the origin's request log here")
    parser.add_argument("--workdir", help="scratch directory (default: a temp dir)")
    options = parser.parse_args()
    options.throttle_bytes = settings.parse_size(options.throttle)
    scenarios = [s.strip() for s in options.scenarios.split(",") if s.strip()]
    if unknown := set(scenarios) - set(SCENARIOS):
        parser.error(f"--scenarios: unknown {sorted(unknown)}; use {','.join(SCENARIOS)}")
    if "peers" in scenarios and not peering_supported():
        print("peers: skipped, this model-agent has no --peer-port", file=sys.stderr)
        scenarios.remove("peers")
    if not options.peer_port:
        options.peer_port = free_port()
    base = pathlib.Path(options.workdir) if options.workdir else None
    work = pathlib.Path(tempfile.mkdtemp(prefix="peer-rollout-", dir=base))
    results: list[dict[str, Any]] = []
    try:
        files = make_model(work / "source", options.shards, settings.parse_size(options.shard_size))
        model_bytes = sum(p.stat().st_size for p in files.values())
        hub = hub_mod.LocalHub()
        with hub.serve_in_thread():
            hub.add_repo(REPO, files)  # hashes the shards once, before any clock runs
            hub.faults.throttle(options.throttle_bytes)
            for name in scenarios:
                print(f"{name}: running", file=sys.stderr, flush=True)
                results.append(run_scenario(name, hub, options, work, model_bytes))
                r = results[-1]
                print(
                    f"{name}: all Ready {r['all_ready_s']:.1f} s, origin "
                    f"{r['origin_over_model']:.2f}x the model",
                    file=sys.stderr,
                    flush=True,
                )
        report(results, options, model_bytes)
        if options.json:
            summary = {
                "model_bytes": model_bytes,
                "throttle_bytes_per_second": options.throttle_bytes,
                "agents": options.agents,
                "cpus": os.cpu_count(),
                "load_average_1m": os.getloadavg()[0],
                "commit": _commit(),
                "results": results,
            }
            pathlib.Path(options.json).write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=bench.ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
