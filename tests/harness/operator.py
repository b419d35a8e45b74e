"""Running the operator against ``FakeKube`` in tests.

- ``run_operator_in_thread(registry, kube_api=...)``: ``kopf.operator()`` (standalone,
  cluster-wide, event posting off unless asked) on its own event loop in a thread, so that
  Kopf's exit (which waits for, then cancels, every task created since it started) never
  touches pytest-asyncio's loop. Credentials go in a pre-filled vault, so a fresh
  ``kopf.OperatorRegistry()`` needs no login handler and no KUBECONFIG. Entering returns
  when the fake server holds open WATCH streams for the resources (``ready_flag`` only means
  the startup handlers finished); leaving raises the stop flag and joins the thread.
  Works as ``with`` and as ``async with``.
- ``agent_process(kube_api, node_name)``: the real ``model-agent run`` command in a
  subprocess (KUBECONFIG at the fake, NODE_NAME, free ports, a temp models root, log in a
  file), ready when its watches are open; stopped with SIGTERM (SIGKILL after 15 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import kopf
from kopf._cogs.structs import credentials  # the vault is not exported by kopf

from tests.harness.kube import FakeKube

__all__ = ["AgentProcess", "OperatorThread", "agent_process", "free_port", "run_operator_in_thread"]

MODEL_RESOURCES = ("basemodels", "clusterbasemodels")
logger = logging.getLogger("tests.harness.operator")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until(
    condition: Callable[[], bool], *, timeout: float, failed: Callable[[], str | None]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        problem = failed()
        if problem is not None:
            raise RuntimeError(problem)
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready within {timeout} s")
        time.sleep(0.01)


class OperatorThread:
    """Kopf in a thread. See ``run_operator_in_thread``."""

    def __init__(
        self,
        registry: kopf.OperatorRegistry | None,
        *,
        kube_api: FakeKube,
        memo: kopf.Memo | None,
        posting: bool,
        settings: Callable[[kopf.OperatorSettings], None] | None,
        watch: Sequence[str],
        liveness_endpoint: str | None,
        timeout: float,
    ) -> None:
        self.registry, self.kube_api, self.watch = registry, kube_api, tuple(watch)
        self.memo = memo if memo is not None else kopf.Memo()
        self.settings = kopf.OperatorSettings()
        self.settings.posting.enabled = posting
        if not posting:  # kopf.warn() checks only the level, not `enabled`
            self.settings.posting.level = logging.CRITICAL + 1
        if settings is not None:
            settings(self.settings)
        self.liveness_endpoint, self.timeout = liveness_endpoint, timeout
        self.error: BaseException | None = None
        self.stop_seconds: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_flag: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> OperatorThread:
        self._thread = threading.Thread(target=self._run, name="kopf-operator", daemon=True)
        self._thread.start()
        try:
            _wait_until(self._watching, timeout=self.timeout, failed=self._failure)
        except BaseException:
            self.stop(reraise=False)
            raise
        return self

    def stop(self, *, reraise: bool = True, timeout: float = 10.0) -> None:
        """Raise the stop flag and join the thread; re-raise what the operator raised."""
        started = time.monotonic()
        loop, flag, thread = self._loop, self._stop_flag, self._thread
        if loop is not None and flag is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(flag.set)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the operator thread did not stop within {timeout} s")
        self.stop_seconds = time.monotonic() - started
        self._thread = None
        if reraise and self.error is not None:
            raise self.error

    @property
    def stopped_without_kopf_exit_wait(self) -> bool:
        """Kopf, when stopped the wrong way, waits 5 s for leftover tasks and then cancels
        them (TESTING.md trap 3). A clean stop takes milliseconds; anything near 5 s is the
        trap, whatever the machine's load, so this compares against that gap, not a speed."""
        return self.stop_seconds is not None and self.stop_seconds < 4.5

    def _watching(self) -> bool:
        return all(self.kube_api.watching(resource) > 0 for resource in self.watch)

    def _failure(self) -> str | None:
        if self._thread is not None and not self._thread.is_alive():
            return f"the operator exited before watching {self.watch}: {self.error!r}"
        return None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._operate())
        except BaseException as exc:
            self.error = exc
            logger.exception("the operator in the test thread failed")
        finally:
            with contextlib.suppress(Exception):
                _drain(loop)
            loop.close()

    async def _operate(self) -> None:
        self._stop_flag = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        info = kopf.ConnectionInfo(
            server=self.kube_api.url,
            scheme="Bearer",
            token="fake-token",
            ca_data=self.kube_api.ca_data,
        )
        vault = credentials.Vault({"fake-kube": info})
        await kopf.operator(
            registry=self.registry,
            settings=self.settings,
            standalone=True,
            clusterwide=True,
            liveness_endpoint=self.liveness_endpoint,
            stop_flag=self._stop_flag,
            vault=vault,
            memo=self.memo,
        )

    # --- context managers ----------------------------------------------------------------

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(reraise=exc is None)

    async def __aenter__(self) -> OperatorThread:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop, reraise=exc is None)


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Finish what Kopf left on ``loop``: cancel leftover tasks, then give the TLS transports
    the loop turns they need to close their sockets (closing one is not immediate)."""
    leftovers = asyncio.all_tasks(loop)
    for task in leftovers:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    loop.run_until_complete(asyncio.sleep(0.1))
    loop.run_until_complete(loop.shutdown_asyncgens())


def run_operator_in_thread(
    registry: kopf.OperatorRegistry | None = None,
    *,
    kube_api: FakeKube,
    memo: kopf.Memo | None = None,
    posting: bool = False,
    settings: Callable[[kopf.OperatorSettings], None] | None = None,
    watch: Sequence[str] = MODEL_RESOURCES,
    liveness_endpoint: str | None = None,
    timeout: float = 10.0,
) -> OperatorThread:
    """A context manager (``with`` or ``async with``) running ``kopf.operator()`` against
    ``kube_api`` in a thread. ``registry=None`` is Kopf's default registry (import
    ``handlers`` first for the agent's). ``settings`` may adjust the OperatorSettings before
    the start (startup handlers may change them further). Entering waits until the fake
    server holds an open watch on every resource in ``watch``."""
    return OperatorThread(
        registry,
        kube_api=kube_api,
        memo=memo,
        posting=posting,
        settings=settings,
        watch=watch,
        liveness_endpoint=liveness_endpoint,
        timeout=timeout,
    )


# --- the real command ----------------------------------------------------------------------


class AgentProcess:
    """``model-agent run`` as a subprocess. See ``agent_process``."""

    def __init__(
        self,
        kube_api: FakeKube,
        node_name: str,
        *,
        args: Sequence[str],
        env: Mapping[str, str] | None,
        workdir: pathlib.Path | None,
        watch: Sequence[str],
        timeout: float,
        exact_args: bool = False,
    ) -> None:
        self.exact_args = exact_args
        self.kube_api, self.node_name, self.watch, self.timeout = (
            kube_api,
            node_name,
            watch,
            timeout,
        )
        self._own_dir = workdir is None
        self.workdir = (
            workdir if workdir is not None else pathlib.Path(tempfile.mkdtemp(prefix="agent-"))
        )
        self.log_path = self.workdir / "agent.log"
        self.models_root = self.workdir / "models"
        self.args = tuple(args)
        self.env = {
            **os.environ,
            "KUBECONFIG": kube_api.kubeconfig,
            "NODE_NAME": node_name,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self._pick_ports()
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.log: str = ""

    def _pick_ports(self) -> None:
        """Free ports for the flags ``args`` does not set, and the command line with them."""
        self.port, self.metrics_port, self.liveness_port = free_port(), free_port(), free_port()
        given = set(self.args)
        defaults = {
            "--port": str(self.port),
            "--metrics-port": str(self.metrics_port),
            "--liveness-endpoint": f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--models-root-dir": str(self.models_root),
        }
        if self.exact_args:
            # The command line stays exactly ``args``; the ports move through the environment
            # (tests share the machine, so 8080 and 8081 may be taken).
            extra: list[str] = []
            self.env["MODEL_AGENT_PORT"] = defaults["--port"]
            self.env["MODEL_AGENT_METRICS_PORT"] = defaults["--metrics-port"]
            self.env["MODEL_AGENT_LIVENESS_ENDPOINT"] = defaults["--liveness-endpoint"]
        else:
            extra = [
                x for flag, value in defaults.items() if flag not in given for x in (flag, value)
            ]
        self.argv = [sys.executable, "-m", "model_agent.cli", "run", *extra, *self.args]

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.liveness_port}/healthz"

    def log_text(self) -> str:
        """The log so far (the process may still be running)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, *, tries: int = 3) -> AgentProcess:
        """Start and wait for the watches. A port that ``free_port`` handed out can be taken
        by another socket before the agent binds it; the agent then exits at once saying
        "address already in use", and the start is retried with fresh ports."""
        for attempt in range(tries):
            try:
                return self._start_once()
            except RuntimeError as exc:
                taken = "address already in use" in str(exc).lower()
                if (
                    not taken
                    or attempt + 1 == tries
                    or any(flag in self.args for flag in ("--port", "--metrics-port"))
                ):
                    if self._own_dir:
                        shutil.rmtree(self.workdir, ignore_errors=True)
                    raise
                self.returncode, self.proc = None, None
                self._pick_ports()
        raise AssertionError("unreachable")

    def _start_once(self) -> AgentProcess:
        self.models_root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            _wait_until(
                lambda: all(self.kube_api.watching(r) > 0 for r in self.watch),
                timeout=self.timeout,
                failed=self._failure,
            )
        except BaseException as exc:
            code, text = self._halt()
            raise RuntimeError(f"model-agent did not start (exit {code}): {exc}\n{text}") from exc
        return self

    def _failure(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"model-agent exited with {self.proc.returncode}"
        return None

    def stop(self, *, grace: float = 15.0) -> tuple[int, str]:
        """SIGTERM, then SIGKILL after ``grace`` seconds. Returns (exit code, log text)."""
        result = self._halt(grace=grace)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return result

    def _halt(self, *, grace: float = 15.0) -> tuple[int, str]:
        proc = self.proc
        if proc is not None and self.returncode is None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            self.returncode = proc.returncode
            self.log = self.log_text()
        return (self.returncode if self.returncode is not None else -1), self.log

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> AgentProcess:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.stop)


def agent_process(
    kube_api: FakeKube,
    node_name: str,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    workdir: pathlib.Path | None = None,
    watch: Sequence[str] = MODEL_RESOURCES,
    timeout: float = 30.0,
    exact_args: bool = False,
) -> AgentProcess:
    """A context manager (``with`` or ``async with``) running ``python -m model_agent.cli
    run`` against ``kube_api`` with NODE_NAME=``node_name``, free ports for ``--port``,
    ``--metrics-port`` and ``--liveness-endpoint`` and ``--models-root-dir`` under
    ``workdir`` (a temp dir, removed at the end, when not given) unless ``args`` set them.
    Entering waits for open watches on ``watch``; leaving sends SIGTERM (SIGKILL after 15 s).
    The exit code and the log text are then in ``.returncode`` and ``.log`` (or call
    ``.stop()`` inside the block to get them as a tuple). With ``exact_args`` the command line
    is ``args`` alone (as a DaemonSet gives it) and the free ports go in through
    ``MODEL_AGENT_PORT``, ``MODEL_AGENT_METRICS_PORT`` and ``MODEL_AGENT_LIVENESS_ENDPOINT``."""
    return AgentProcess(
        kube_api,
        node_name,
        args=args,
        env=env,
        workdir=workdir,
        watch=watch,
        timeout=timeout,
        exact_args=exact_args,
    )
