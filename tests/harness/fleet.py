"""Many real ``model-agent run`` processes against one ``FakeKube``: a cluster in miniature.

Each agent is a subprocess with its own Node (``node-000``, ``node-001``, ...), its own
models root and its own bearer token (so the fake counts its requests apart, see
``kube_counting``). Starts are staggered, as a DaemonSet rollout is, because the import of
Kopf and the clients costs CPU seconds per process. Used by the API-budget tests (a few
agents) and ``benchmarks/api_budget.py`` (50 or more).
"""

from __future__ import annotations

import contextlib
import pathlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tests.harness.kube import FakeKube
from tests.harness.operator import AgentProcess, agent_process

__all__ = ["MODEL_WATCHES", "Fleet", "drop_all_watches"]

#: The watches an idle agent holds: both model kinds and its own Node.
MODEL_WATCHES = ("basemodels", "clusterbasemodels", "nodes")


def drop_all_watches(kube: FakeKube) -> None:
    """An API server restart, as watchers see it: one more change, then the history up to it
    is forgotten (so every watch, bookmarked or not, resumes from an expired version and
    gets 410 Gone) and every stream ends."""
    name = f"restart-{kube.resource_version}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    kube.compact()
    kube.close_watches()


class Fleet:
    """``count`` agents on nodes labelled ``labels``; ``with Fleet(...) as fleet``."""

    def __init__(
        self,
        kube: FakeKube,
        count: int,
        workdir: pathlib.Path,
        *,
        args: Sequence[str] = (),
        per_agent_args: Mapping[int, Sequence[str]] | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        stagger: float = 0.2,
        timeout: float = 120.0,
    ) -> None:
        self.kube, self.count, self.workdir = kube, count, workdir
        self.args, self.per_agent_args = tuple(args), dict(per_agent_args or {})
        self.env, self.labels = dict(env or {}), dict(labels or {})
        self.stagger, self.timeout = stagger, timeout
        self.names = [f"node-{i:03d}" for i in range(count)]
        self.agents: list[AgentProcess] = []

    def start(self) -> Fleet:
        for i, name in enumerate(self.names):
            if self.kube.get("nodes", name) is None:
                self.kube.add_node(name, self.labels)
            kubeconfig = self.kube.add_agent(name)
            process = agent_process(
                self.kube,
                name,
                args=(*self.args, *self.per_agent_args.get(i, ())),
                env={**self.env, "KUBECONFIG": kubeconfig},
                workdir=self.workdir / name,
                watch=(),  # the fleet waits for each agent's own watches below
                timeout=self.timeout,
            )
            self.agents.append(process.start())
            time.sleep(self.stagger)
        self.wait(self.all_watching, self.timeout)
        return self

    def stop(self) -> None:
        for agent in self.agents:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.terminate()
        for agent in self.agents:
            with contextlib.suppress(Exception):
                agent.stop(grace=15)

    def __enter__(self) -> Fleet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- questions -----------------------------------------------------------------------

    def all_watching(self) -> bool:
        """Every agent holds its watches (and none has exited)."""
        for agent in self.agents:
            if agent.proc is not None and agent.proc.poll() is not None:
                log = agent.log_text()
                if "address already in use" not in log.lower():
                    raise RuntimeError(f"{agent.node_name} exited:\n{log[-3000:]}")
                # a port free_port handed out was taken before the agent bound it: new ports
                agent.returncode, agent.proc = None, None
                agent._pick_ports()
                agent.start()
        held = self.kube.counter.open_watches()
        return all(
            all(held.get(name, {}).get(r, 0) >= 1 for r in MODEL_WATCHES) for name in self.names
        )

    def entries(self, name: str) -> dict[str, Any]:
        cm = self.kube.get("configmaps", name, "ome") or {}
        return dict(cm.get("data") or {})

    def labels_of(self, name: str) -> dict[str, str]:
        node = self.kube.get("nodes", name) or {}
        return dict((node.get("metadata") or {}).get("labels") or {})

    def pids(self) -> Iterator[tuple[str, int]]:
        for agent in self.agents:
            if agent.proc is not None:
                yield agent.node_name, agent.proc.pid

    @staticmethod
    def wait(predicate: Any, timeout: float, interval: float = 0.2) -> float:
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"not within {timeout:g} s: {predicate!r}")
            time.sleep(interval)
        return time.monotonic() - started
