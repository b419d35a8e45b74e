"""Shared helpers of the fault suite: model bodies, source files, the OCI config file, the
seeded random source, test-side reads of what the agent reported, and the destination scan
that every crash and fault test ends with.

Plain functions and small classes, no fixtures, so each fault module stays self-contained.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import random
import stat
import subprocess
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tests.harness import modelfiles, objectstore
from tests.harness.kube import FakeKube
from tests.harness.operator import AgentProcess

STAGING = ".model-agent-partial"
DEFAULT_SEED = 20261126


def seeded(name: str) -> random.Random:
    """A random source for one test: ``FAULT_SEED`` or the fixed default (printed, so a
    failing run can be replayed)."""
    seed = int(os.environ.get("FAULT_SEED", DEFAULT_SEED))
    print(f"{name}: FAULT_SEED={seed}")
    return random.Random(f"{seed}:{name}")


def start_agent(make: Callable[[], AgentProcess]) -> AgentProcess:
    """``make().start()`` (which itself retries with fresh ports when one was taken)."""
    return make().start()


@contextlib.contextmanager
def running_agent(make: Callable[[], AgentProcess]) -> Iterator[AgentProcess]:
    """``start_agent`` as a context manager that stops the agent (SIGTERM) at the end."""
    agent = start_agent(make)
    try:
        yield agent
    finally:
        agent.stop()


def model_files(
    directory: pathlib.Path, *, extra: Mapping[str, bytes] | None = None, **config: Any
) -> dict[str, bytes]:
    """A tiny llama model (config, safetensors, tokenizer) plus ``extra`` files, as bytes."""
    return modelfiles.tiny_llama_files(directory, extra=extra, **config)


def patterned(size: int, rng: random.Random) -> bytes:
    """``size`` bytes that differ everywhere from a shifted copy (a misplaced range shows)."""
    block = rng.randbytes(4096)
    return (block * (size // len(block) + 1))[:size]


def model(kind: str, name: str, uri: str, *, namespace: str = "default", **storage: Any) -> dict:
    metadata: dict[str, Any] = {"name": name}
    if kind == "BaseModel":
        metadata["namespace"] = namespace
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"modelFormat": {"name": "safetensors"}, "storage": {"storageUri": uri, **storage}},
    }


def write_oci_config(store: objectstore.LocalObjectStore, directory: pathlib.Path) -> pathlib.Path:
    """An OCI config file (UserPrincipal) with the store's throw-away key; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "oci_key.pem"
    key_file.write_text(store.config["key_content"])
    key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    config = directory / "oci_config"
    fields = {k: store.config[k] for k in ("user", "fingerprint", "tenancy", "region")}
    config.write_text(
        "[DEFAULT]\n" + "".join(f"{k}={v}\n" for k, v in fields.items()) + f"key_file={key_file}\n"
    )
    return config


class View:
    """Test-side reads of one node's ConfigMap entries and labels."""

    def __init__(self, kube: FakeKube, node: str) -> None:
        self.kube, self.node = kube, node

    def data(self) -> dict[str, str]:
        cm = self.kube.get("configmaps", self.node, "ome")
        return dict((cm or {}).get("data") or {})

    def entry(self, key: str) -> dict[str, Any] | None:
        text = self.data().get(key)
        return json.loads(text) if text else None

    def status(self, key: str) -> str | None:
        return (self.entry(key) or {}).get("status")

    def label(self, key: str) -> str | None:
        node = self.kube.get("nodes", self.node) or {}
        return (node.get("metadata", {}).get("labels") or {}).get(f"models.ome.io/{key}")

    def settled(self, key: str, status: str) -> bool:
        return self.status(key) == status and self.label(key) == status


def final_files(destination: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every file at a final path under ``destination`` (the staging directory excluded)."""
    if not destination.exists():
        return {}
    found = {}
    for path in destination.rglob("*"):
        relative = path.relative_to(destination)
        if relative.parts[0] == STAGING or path.is_dir():
            continue
        found[relative.as_posix()] = path
    return found


def corrupt_final_files(destination: pathlib.Path, source: Mapping[str, bytes]) -> list[str]:
    """Files at final paths that are not exactly a source file (unknown, partial or wrong)."""
    bad = []
    for name, path in sorted(final_files(destination).items()):
        if name not in source:
            bad.append(f"{name}: not a source file")
        elif path.read_bytes() != source[name]:
            bad.append(f"{name}: {path.stat().st_size} bytes differ from the source's")
    return bad


def tree(root: pathlib.Path) -> set[str]:
    """Every path under ``root`` (files and directories), relative, for before/after checks."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


@contextlib.contextmanager
def tmpfs(mountpoint: pathlib.Path, size: int) -> Iterator[pathlib.Path]:
    """A real tmpfs of ``size`` bytes mounted at ``mountpoint`` for the block, or
    ``pytest.skip`` with the reason where this run cannot mount one (not root, no tmpfs)."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; this run is not root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
