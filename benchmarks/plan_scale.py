"""Planning cost for a very large listing: CPU seconds and the worst event-loop stall.

Builds a pinned plan of ``--files`` entries (a repo with weights in many folders, duplicate
``.bin`` files beside ``.safetensors``, an ``original/`` folder, a few GGUFs), then on one event
loop, with the agent's own loop-lag monitor (``health.LoopLagMonitor``, 10 ms ticks) running:
the pipeline's selection (safety check of every name, allow/ignore, default skips), the
largest-first sort, and the disk-space walk (``files.space_needed``, one thread call).
Reports process CPU seconds and wall seconds of each step and the worst lag the monitor saw.

    .venv/bin/python benchmarks/plan_scale.py --files 50000
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from model_agent import health, pipeline
from model_agent.download import files, staging
from model_agent.storage import base


def listing(count: int) -> base.Plan:
    names = []
    for i in range(count):
        folder = f"part-{i % 500:03d}"
        kind = i % 10
        if kind == 0:
            names.append(f"{folder}/pytorch_model-{i:06d}.bin")
        elif kind == 1:
            names.append(f"original/consolidated.{i:06d}.pth")
        elif kind == 2:
            names.append(f"{folder}/model-{i:06d}.gguf")
        else:
            names.append(f"{folder}/model-{i:06d}.safetensors")
    remote = tuple(
        base.RemoteFile(path=name, size=1024 + i, identity=f"id-{i}", key=name)
        for i, name in enumerate(names)
    )
    return base.Plan(uri="hf://bench/huge", revision="0" * 40, files=remote)


async def run(count: int) -> None:
    plan = listing(count)
    worst = 0.0

    def sample(lag: float) -> None:
        nonlocal worst
        worst = max(worst, lag)

    monitor = health.LoopLagMonitor(interval=0.01, on_sample=sample)
    monitor.start()
    await asyncio.sleep(0.05)
    request = pipeline.PullRequest(uri=plan.uri, destination=pathlib.Path("/nonexistent"))
    cpu, wall = time.process_time(), time.monotonic()
    chosen = await asyncio.to_thread(pipeline._plan, request, plan)
    select_cpu, select_wall = time.process_time() - cpu, time.monotonic() - wall
    with tempfile.TemporaryDirectory() as scratch:
        destination = pathlib.Path(scratch) / "dest"
        destination.mkdir()
        stage = staging.Staging(destination)
        async with stage:
            cpu, wall = time.process_time(), time.monotonic()
            needed, kept = await asyncio.to_thread(files.space_needed, stage, destination, chosen)
            space_cpu, space_wall = time.process_time() - cpu, time.monotonic() - wall
    await asyncio.sleep(0.05)
    await monitor.stop()
    print(
        f"{count} files listed, {len(chosen)} chosen\n"
        f"| step | CPU s | wall s |\n|---|---|---|\n"
        f"| select + sort (pipeline._plan, in a thread) | {select_cpu:.3f} | {select_wall:.3f} |\n"
        f"| disk-space walk (one thread call) | {space_cpu:.3f} | {space_wall:.3f} |\n"
        f"worst event-loop lag: {worst * 1000:.0f} ms ({needed} bytes to fetch, {kept} kept)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=50_000)
    options = parser.parse_args()
    asyncio.run(run(options.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
