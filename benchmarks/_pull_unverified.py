"""`model-agent pull` with the digest step replaced by "accept": a benchmark-only baseline.

Used by pull_throughput.py to measure what verification costs (verified / unverified
throughput). Sizes are still checked, files still fsynced and renamed; only the hashing (inline and
read-back) is skipped. Never use this to fetch a model.

    .venv/bin/python benchmarks/_pull_unverified.py pull hf://org/repo --path DIR
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from model_agent import checksums, cli, verify
from model_agent.download import staging


def _no_digest(staged: staging.StagedFile, expected: checksums.Checksum | None) -> None:
    return None


def _accept(
    self: verify.Verifier, digest: str | None, *, name: str, expected: checksums.Checksum | None
) -> None:
    return None


verify.Verifier.digest_for = staticmethod(_no_digest)  # type: ignore[method-assign,assignment]
verify.Verifier.check = _accept  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main())
