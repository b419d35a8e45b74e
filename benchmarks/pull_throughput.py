"""Throughput and memory of `model-agent pull` next to curl and huggingface_hub, in one run.

Serves a generated model (valid safetensors shards plus config.json) from the local hub
(tests/harness/hub.py) in a thread of this process, then downloads the same files three ways,
each in its own subprocess, one after the other:

- ``curl``: one process, the files one after another (-L follows the CDN redirect); unverified;
- ``snapshot_download``: huggingface_hub's default parallel download; unverified;
- ``model-agent pull``: ranged parallel parts, every file verified (sha256), fsynced, renamed,
  then analysed.

Each tool's peak RSS is its own ``ru_maxrss`` (read by a small wrapper process around it). The
destination of each run is deleted before the next. Prints a markdown table.

    .venv/bin/python benchmarks/pull_throughput.py --shards 4 --shard-size 1GiB
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model_agent import settings  # noqa: E402
from tests.harness import hub  # noqa: E402

REPO = "bench/model"
_BLOCK = 16 * 1024**2

_WRAPPER = """
import resource, subprocess, sys, time
started = time.monotonic()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
elapsed = time.monotonic() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{code} {elapsed} {peak}")
"""


def write_shard(path: pathlib.Path, size: int, seed: int) -> None:
    """A valid safetensors file of about ``size`` bytes: one U8 tensor of random bytes."""
    header_len = 128
    data_len = size - 8 - header_len
    header = json.dumps(
        {"weight": {"dtype": "U8", "shape": [data_len], "data_offsets": [0, data_len]}}
    ).encode()
    header = header.ljust(header_len, b" ")
    block = os.urandom(_BLOCK - 7) + bytes([seed] * 7)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", header_len) + header)
        remaining = data_len
        while remaining:
            piece = block[: min(len(block), remaining)]
            handle.write(piece)
            remaining -= len(piece)


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


def measure(args: list[str], env: dict[str, str]) -> tuple[int, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True, env=env, check=True
    )
    code, elapsed, peak_kib = out.stdout.split()
    return int(code), float(elapsed), int(peak_kib) * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-size", default="1GiB", help="bytes per shard (e.g. 256MiB)")
    parser.add_argument("--workdir", default=None, help="scratch directory (default: /tmp)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool (best is kept)")
    options = parser.parse_args()
    shard_size = settings.parse_size(options.shard_size)
    work = pathlib.Path(tempfile.mkdtemp(prefix="pull-bench-", dir=options.workdir))
    free = shutil.disk_usage(work).free
    if free < 2.5 * options.shards * shard_size:
        print(f"not enough disk in {work}: need {2.5 * options.shards * shard_size:.0f} bytes",
              file=sys.stderr)
        return 2
    try:
        files = make_model(work / "source", options.shards, shard_size)
        total = sum(p.stat().st_size for p in files.values())
        server = hub.LocalHub()
        with server.serve_in_thread():
            server.add_repo(REPO, files)
            results = run_all(server, files, work, total, options.repeat)
        print_table(results, total, options.shards, shard_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_all(
    server: hub.LocalHub, files: dict[str, pathlib.Path], work: pathlib.Path, total: int,
    repeat: int,
) -> dict[str, tuple[float, int]]:
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "MODEL_AGENT_STATE_DIR": str(work / "state")}
    dest = work / "dest"
    urls = [f"{server.endpoint}/{REPO}/resolve/main/{name}" for name in files]
    curl = ["curl", "-sS", "-L", "--fail"]
    for url, name in zip(urls, files, strict=True):
        curl += ["-o", str(dest / name), url]
    snapshot = [
        sys.executable, "-c",
        "import sys; from huggingface_hub import snapshot_download; "
        "snapshot_download(sys.argv[1], local_dir=sys.argv[2], endpoint=sys.argv[3])",
        REPO, str(dest), server.endpoint,
    ]  # fmt: skip
    pull = [
        sys.executable, "-m", "model_agent.cli", "pull", f"hf://{REPO}", "--path", str(dest),
        "--param", f"endpoint={server.endpoint}", "--log-level", "warning",
    ]  # fmt: skip
    results: dict[str, tuple[float, int]] = {}
    for _ in range(repeat):
        for label, command in (("curl", curl), ("snapshot_download", snapshot), ("pull", pull)):
            shutil.rmtree(dest, ignore_errors=True)
            shutil.rmtree(work / "state", ignore_errors=True)
            dest.mkdir(parents=True)
            served = server.bytes_served()
            code, elapsed, peak = measure(command, env)
            if code != 0:
                raise SystemExit(f"{label} failed with exit code {code}")
            got = server.bytes_served() - served
            if got < total:
                raise SystemExit(f"{label} fetched {got} of {total} bytes")
            best = results.get(label)
            if best is None or elapsed < best[0]:
                results[label] = (elapsed, peak)
            print(f"{label}: {elapsed:.2f}s, peak RSS {peak / 2**20:.0f} MiB", file=sys.stderr)
    shutil.rmtree(dest, ignore_errors=True)
    return results


def print_table(
    results: dict[str, tuple[float, int]], total: int, shards: int, shard_size: int
) -> None:
    curl_rate = total / results["curl"][0]
    snap_rate = total / results["snapshot_download"][0]
    print(f"\n{shards} x {shard_size / 2**20:.0f} MiB shards ({total / 1e9:.2f} GB), "
          f"{os.cpu_count()} CPUs, local hub in-process\n")
    print("| tool | verified | seconds | MB/s | vs curl | vs snapshot_download | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for label in ("curl", "snapshot_download", "pull"):
        elapsed, peak = results[label]
        rate = total / elapsed
        verified = "yes (sha256)" if label == "pull" else "no"
        print(f"| {label} | {verified} | {elapsed:.2f} | {rate / 1e6:.0f} | "
              f"{rate / curl_rate:.2f}x | {rate / snap_rate:.2f}x | {peak / 2**20:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
