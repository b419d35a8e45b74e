"""The agent with 1,000 BaseModels watched: idle RSS, CPU per event, time to settle, ConfigMap size.

Starts the fake API server (tests/harness/kube.py, a thread of this process) with one Node,
creates ``--models`` BaseModels of which ``--selected`` select this node (``local://`` models,
adopted in place: no download, so the numbers are the agent's own bookkeeping) and the rest
select another pool, then runs the real ``model-agent run`` process against it and measures:

1. start: time until every selected entry is Ready in the node's ConfigMap, then until the
   agent's CPU goes idle; RSS once idle (``VmRSS``) and the peak so far (``VmHWM``);
2. events: one metadata-label patch on every model (``--models`` MODIFIED events); the
   agent's CPU seconds until idle again, per event; RSS after;
3. full ConfigMap: every model patched to select this node; time until all are Ready,
   the ConfigMap's ``data`` size with that many entries, RSS after.

    .venv/bin/python benchmarks/scale.py --models 1000 --selected 50
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _agentbench as bench

from tests.harness import modelfiles
from tests.harness.kube import FakeKube
from tests.harness.operator import agent_process

MiB = 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--selected", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=240.0)
    options = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        local = modelfiles.write_model(
            work / "local-model",
            config={
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                "max_position_embeddings": 131072,
                "torch_dtype": "bfloat16",
                "hidden_size": 4096,
                "num_hidden_layers": 32,
                "vocab_size": 128256,
            },
            tensors={"model.embed_tokens.weight": ("BF16", [64, 64])},
        )
        with FakeKube() as kube:
            kube.add_node(bench.NODE, labels={"pool": "bench"})
            names = [f"m{i:04d}" for i in range(options.models)]
            for i, name in enumerate(names):
                pool = "bench" if i < options.selected else "other"
                kube.create(bench.basemodel(name, f"local://{local}", nodeSelector={"pool": pool}))
            run(kube, names, options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run(kube: FakeKube, names: list[str], options: argparse.Namespace, work: pathlib.Path) -> None:
    rows: list[tuple[str, str]] = []
    started = time.monotonic()
    with agent_process(kube, bench.NODE, workdir=work / "agent", timeout=60) as agent:
        assert agent.proc is not None
        pid = agent.proc.pid
        watching = time.monotonic() - started

        def ready(count: int) -> bool:
            got = bench.entries(kube)
            return sum(1 for e in got.values() if e.get("status") == "Ready") >= count

        bench.wait(lambda: ready(options.selected), options.timeout)
        settled = time.monotonic() - started
        bench.wait_idle(pid)
        idle_at = time.monotonic() - started
        cpu_start = bench.cpu_seconds(pid)
        rows += [
            ("models watched / selected", f"{options.models} / {options.selected}"),
            ("start: watches open", f"{watching:.1f} s"),
            (f"start: {options.selected} selected entries Ready", f"{settled:.1f} s"),
            ("start: CPU idle again", f"{idle_at:.1f} s"),
            ("start: CPU seconds (import, list, select, adopt)", f"{cpu_start:.2f} s"),
            ("idle RSS", f"{bench.rss_bytes(pid) / MiB:.0f} MiB"),
            ("peak RSS during start", f"{bench.peak_rss_bytes(pid) / MiB:.0f} MiB"),
        ]
        before = bench.cpu_seconds(pid)
        sent = time.monotonic()
        for name in names:
            kube.patch("basemodels", name, {"metadata": {"labels": {"bench": "1"}}}, "default")
        bench.wait_idle(pid)
        spent = bench.cpu_seconds(pid) - before
        rows += [
            (
                f"{len(names)} MODIFIED events: CPU until idle",
                f"{spent:.2f} s = {spent / len(names) * 1000:.2f} ms per event",
            ),
            ("events: wall time until idle", f"{time.monotonic() - sent:.1f} s"),
            ("RSS after the events", f"{bench.rss_bytes(pid) / MiB:.0f} MiB"),
        ]
        sent = time.monotonic()
        before = bench.cpu_seconds(pid)
        for name in names[options.selected :]:
            kube.patch(
                "basemodels",
                name,
                {"spec": {"storage": {"nodeSelector": {"pool": "bench"}}}},
                "default",
            )
        bench.wait(lambda: ready(len(names)), options.timeout)
        all_ready = time.monotonic() - sent
        bench.wait_idle(pid)
        per_model = (bench.cpu_seconds(pid) - before) / (len(names) - options.selected)
        size = bench.configmap_bytes(kube)
        rows += [
            (f"all {len(names)} selected: entries Ready", f"{all_ready:.1f} s"),
            (
                "  CPU per newly selected model",
                f"{per_model * 1000:.1f} ms",
            ),
            (
                f"ConfigMap data with {len(names)} entries",
                f"{size} bytes = {size / MiB:.3f} MiB ({size / len(names):.0f} B per entry)",
            ),
            (f"RSS with {len(names)} Ready models", f"{bench.rss_bytes(pid) / MiB:.0f} MiB"),
            ("peak RSS over the run", f"{bench.peak_rss_bytes(pid) / MiB:.0f} MiB"),
        ]
    print(f"\nscale: {options.models} BaseModels on the fake API server, {os.cpu_count()} CPUs\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    sys.exit(main())
