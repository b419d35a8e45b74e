"""An agent with 100 Ready models restarts: time to Ready, bytes read, bytes downloaded.

Starts the fake API server and the local hub (threads of this process), creates ``--models``
BaseModels of one ``--model-size`` repo, lets the real ``model-agent run`` download, verify
and report them all Ready, stops it (SIGTERM) and starts it again on the same models root.
For the second start it measures: time until the watches are open, until the log says
``agent started`` (every model Ready from its manifest), until ``/readyz`` answers 200; the
agent's ``rchar`` (bytes returned by read syscalls, page cache included: Python imports,
manifests, everything) and ``read_bytes`` (from the block device) at that point, next to the
same counters of an agent started with no models (the baseline), and the model bytes
the hub served (must be 0). Model data read = rchar(with models) - rchar(baseline), which
is far below one model file if nothing was re-hashed.

    .venv/bin/python benchmarks/restart.py --models 100 --model-size 8MiB
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _agentbench as bench

from model_agent import settings
from tests.harness import hub, modelfiles
from tests.harness.kube import FakeKube
from tests.harness.operator import agent_process


def readyz(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def timed_start(kube: FakeKube, workdir: pathlib.Path, env: dict[str, str]) -> dict[str, float]:
    """Start an agent on ``workdir``; the seconds to each milestone and its I/O counters."""
    started = time.monotonic()
    with agent_process(kube, bench.NODE, workdir=workdir, env=env, timeout=120) as agent:
        assert agent.proc is not None
        out = {"watching": time.monotonic() - started}
        bench.wait(lambda: "agent started" in agent.log_text(), 120, 0.02)
        out["started"] = time.monotonic() - started
        bench.wait(lambda: readyz(agent.health_url), 120, 0.02)
        out["readyz"] = time.monotonic() - started
        io = bench.io_counters(agent.proc.pid)
        out.update(rchar=io["rchar"], read_bytes=io["read_bytes"])
        out["rss"] = bench.rss_bytes(agent.proc.pid)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--model-size", default="8MiB", help="bytes of tensor data per model")
    options = parser.parse_args()
    size = settings.parse_size(options.model_size)
    work = pathlib.Path(tempfile.mkdtemp(prefix="restart-bench-"))
    try:
        source = modelfiles.write_model(
            work / "src",
            config={
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                "max_position_embeddings": 4096,
                "torch_dtype": "float32",
            },
            tensors={"lm_head.weight": ("F32", [size // 4 // 1024, 1024])},
        )
        files = {p.name: p for p in source.iterdir() if p.is_file()}
        model_bytes = sum(p.stat().st_size for p in files.values())
        server = hub.LocalHub()
        with server.serve_in_thread(), FakeKube() as kube:
            server.add_repo("org/m", files)
            kube.add_node(bench.NODE)
            env = {"HF_ENDPOINT": server.endpoint}
            baseline = timed_start(kube, work / "empty", env)
            names = [f"m{i:03d}" for i in range(options.models)]
            for name in names:
                kube.create(bench.basemodel(name, "hf://org/m"))
            first_started = time.monotonic()
            with agent_process(kube, bench.NODE, workdir=work / "node", env=env, timeout=120):
                bench.wait(
                    lambda: (
                        sum(e.get("status") == "Ready" for e in bench.entries(kube).values())
                        >= len(names)
                    ),
                    600,
                    0.2,
                )
                first = time.monotonic() - first_started
            served = server.bytes_served()
            again = timed_start(kube, work / "node", env)
            downloaded = server.bytes_served() - served
            ready = sum(e.get("status") == "Ready" for e in bench.entries(kube).values())
        total = model_bytes * len(names)
        print(
            f"\nrestart: {len(names)} Ready models of {model_bytes / 2**20:.1f} MiB "
            f"({total / 2**20:.0f} MiB on disk), {os.cpu_count()} CPUs\n"
        )
        print("| measure | no models (baseline) | restart with models |\n|---|---|---|")
        for key, label in (
            ("watching", "watches open"),
            ("started", "`agent started` logged"),
            ("readyz", "/readyz 200"),
        ):
            print(f"| {label} | {baseline[key]:.2f} s | {again[key]:.2f} s |")
        print(
            f"| rchar (all reads, page cache included) | {baseline['rchar'] / 2**20:.1f} MiB | "
            f"{again['rchar'] / 2**20:.1f} MiB |"
        )
        print(
            f"| read_bytes (block device) | {baseline['read_bytes'] / 2**20:.1f} MiB | "
            f"{again['read_bytes'] / 2**20:.1f} MiB |"
        )
        rss = (baseline["rss"] / 2**20, again["rss"] / 2**20)
        print(f"| RSS when ready | {rss[0]:.0f} MiB | {rss[1]:.0f} MiB |")
        extra = again["rchar"] - baseline["rchar"]
        print(
            f"\nfirst start (download + verify all): {first:.1f} s; models Ready after restart: "
            f"{ready}/{len(names)}; model bytes downloaded on restart: {downloaded}; "
            f"extra bytes read vs baseline: {extra / 1024:.0f} KiB "
            f"({extra / max(1, len(names)):.0f} B per model, model data is "
            f"{model_bytes} B per model)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
