"""Shared helpers of scale.py and restart.py: CR bodies, /proc readings, ConfigMap polling.

Benchmark-only; reads the fake API server (tests/harness/kube.py) in this process and the
agent process's /proc entries.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NODE = "node-a"
NAMESPACE = "ome"
_TICK = 100.0  # USER_HZ on Linux


def basemodel(name: str, uri: str, **storage: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "BaseModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"modelFormat": {"name": "safetensors"}, "storage": {"storageUri": uri, **storage}},
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (its threads included)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_bytes(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def peak_rss_bytes(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def io_counters(pid: int) -> dict[str, int]:
    """/proc/<pid>/io: ``rchar`` (bytes read by read syscalls, page cache included) and
    ``read_bytes`` (bytes fetched from the block device)."""
    text = pathlib.Path(f"/proc/{pid}/io").read_text()
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def entries(kube: Any) -> dict[str, dict[str, Any]]:
    cm = kube.get("configmaps", NODE, NAMESPACE) or {}
    return {k: json.loads(v) for k, v in (cm.get("data") or {}).items()}


def configmap_bytes(kube: Any) -> int:
    """Size of the ConfigMap's ``data`` as the API server stores it (keys + JSON values)."""
    cm = kube.get("configmaps", NODE, NAMESPACE) or {}
    return sum(len(k.encode()) + len(v.encode()) for k, v in (cm.get("data") or {}).items())


def wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Poll ``predicate`` until true; returns the seconds it took (TimeoutError otherwise)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not settled within {timeout:g} s")
        time.sleep(interval)
    return time.monotonic() - started


def wait_idle(
    pid: int, *, window: float = 1.0, threshold: float = 0.02, timeout: float = 120
) -> float:
    """Wait until process ``pid`` uses under ``threshold`` CPU seconds per second over
    ``window``; returns the seconds waited."""
    started = time.monotonic()
    while True:
        before = cpu_seconds(pid)
        time.sleep(window)
        if (cpu_seconds(pid) - before) / window < threshold:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError("agent never went idle")
