"""The in-process Agent for fault tests: a ``Harness`` that builds and starts
``model_agent.agent.Agent`` against the fake API server, with fast retry timings, and a
``ResetProxy`` that resets TCP connections (RST, not a clean close) mid-body.

Used where a separate process adds nothing (the fault is in storage, the API or the input).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes_asyncio import client

from model_agent import agent, metrics, settings
from tests.fault import support
from tests.harness.kube import FakeKube

NODE = "node-a"


class Harness:
    """Agents on ``NODE`` with models under ``root``; ``environ`` is the agent's environment."""

    def __init__(self, kube: FakeKube, api: client.ApiClient, root: pathlib.Path) -> None:
        self.kube, self.api, self.root = kube, api, root
        self.environ: dict[str, str] = {}
        self.agents: list[agent.Agent] = []
        self.view = support.View(kube, NODE)

    def settings(self, **flags: Any) -> settings.Settings:
        values = {
            "node_name": NODE,
            "models_root_dir": str(self.root),
            "namespace": "ome",
            "config_map_sync_interval": "0.1",
            "download_retry": "2",
            "multipart_threshold": "64Ki",
            "stall_timeout": "1s",
            "relist_window": "0.5s",
        }
        values.update({k: str(v) for k, v in flags.items()})
        return settings.resolve(values, dict(self.environ))

    async def start(
        self,
        *,
        max_attempts: int = 3,
        repair_interval: float = 60.0,
        recorder: metrics.Metrics | None = None,
        stuck_after: float | None = None,
        **flags: Any,
    ) -> agent.Agent:
        instance = agent.Agent(
            config=self.settings(**flags),
            api=self.api,
            recorder=recorder,
            stuck_after=stuck_after,
            max_attempts=max_attempts,
            repair_interval=repair_interval,
            retry_base=0.05,
            retry_max=0.2,
            failed_retry=300.0,
        )
        self.agents.append(instance)
        await instance.start()
        return instance

    async def stop_all(self) -> None:
        for instance in self.agents:
            await instance.stop()
        self.agents.clear()

    def create(self, instance: agent.Agent, body: Mapping[str, Any]) -> dict[str, Any]:
        stored = self.kube.create(body)
        instance.submit("ADDED", stored)
        return stored

    async def until(self, predicate: Callable[[], bool], deadline: float = 30.0) -> None:
        await self.kube.wait_for(predicate, timeout=deadline)

    async def settles(self, key: str, *states: str, deadline: float = 30.0) -> str:
        """Wait until the entry and the label agree on one of ``states``; return it."""
        await self.until(lambda: any(self.view.settled(key, s) for s in states), deadline)
        status = self.view.status(key)
        assert status is not None
        return status


class ResetProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream_port``. The next ``resets``
    connections that have sent ``after`` bytes to the client are reset (SO_LINGER 0, RST)."""

    def __init__(self, upstream_port: int, *, resets: int, after: int) -> None:
        self.upstream_port, self.resets, self.after = upstream_port, resets, after
        self.done = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ResetProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        upstream = asyncio.create_task(self._pump(reader, up_writer))
        try:
            sent = 0
            while data := await up_reader.read(16384):
                if self.done < self.resets and sent + len(data) > self.after:
                    writer.write(data[: self.after - sent])
                    await writer.drain()
                    self.done += 1
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    break
                sent += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            upstream.cancel()
            with contextlib.suppress(BaseException):
                await upstream
            up_writer.close()
            writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(16384):
                writer.write(data)
                await writer.drain()
