"""Cost of the disk janitor's scan (``model_agent.disk.scan.survey``) next to ``du -s`` over
the same tree, both measured in the same run.

Builds ``--models`` model directories of ``--files`` small files each (plus one orphan and
one abandoned partial download) under a scratch models root, then times, best of
``--repeat``: the survey (classification, bytes per model, partials, orphans) and ``du -s``
of the root. Page cache warm for both (each runs once before timing).

    .venv/bin/python benchmarks/disk_scan.py --models 1000 --files 20
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

from model_agent.disk import policy, scan


def build(root: pathlib.Path, models: int, files: int) -> policy.Claims:
    paths = []
    for m in range(models):
        folder = root / "vendor" / f"model-{m:05d}"
        folder.mkdir(parents=True)
        for f in range(files):
            (folder / f"shard-{f:03d}.bin").write_bytes(b"x" * 100)
        paths.append(str(folder))
    (root / "orphan").mkdir()
    (root / "orphan" / "f").write_bytes(b"o")
    (root / "gone" / ".model-agent-partial").mkdir(parents=True)
    return policy.Claims(pointed=frozenset(paths), kept=frozenset(paths))


def best(repeat: int, run) -> float:  # type: ignore[no-untyped-def]
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="disk-scan-", dir=args.workdir))
    try:
        root = work / "models"
        claims = build(root, args.models, args.files)
        found = scan.survey(str(root), claims=claims)
        assert len(found.models) == args.models and len(found.orphans) == 1
        ours = best(args.repeat, lambda: scan.survey(str(root), claims=claims))
        du = best(
            args.repeat,
            lambda: subprocess.run(["du", "-s", str(root)], check=True, capture_output=True),
        )
        entries = args.models * (args.files + 1)
        cpus = os.cpu_count()
        print(f"tree: {args.models} models x {args.files} files ({entries} entries), cpus={cpus}")
        print(f"| tool | seconds (best of {args.repeat}) | ratio to du |")
        print("|---|---|---|")
        print(f"| du -s | {du:.3f} | 1.00 |")
        print(f"| survey | {ours:.3f} | {ours / du:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
