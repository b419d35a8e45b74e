"""``model-agent pull`` on a terminal, as a person sees it: the real command on a pty of 110
columns, its output played into a terminal emulator (pyte) and the screen read back.

Aspects: while downloading, the screen holds one overall bar with bytes, files, speed and an
ETA and a bar of its own for the large file, and no log line; with ``-v`` the per-file INFO
lines stand above the display, each line either a log record or a bar, never both; at the
end the summary line follows the finished bar; off a terminal the plain progress lines stay.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pyte
import pytest

from tests.harness import hub, modelfiles

REPO = "org/model"
COLUMNS, ROWS = 110, 30
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR)")
BAR = re.compile(r"\d+%\|")
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def slow_hub(tmp_path):
    files = modelfiles.tiny_llama_files(
        tmp_path / "src", extra={"tokenizer.model": os.urandom(12 * 1024 * 1024)}
    )
    server = hub.LocalHub()
    with server.serve_in_thread():
        server.add_repo(REPO, files)
        server.faults.throttle(3_000_000)
        yield server


def pull(local_hub, dest: pathlib.Path, tmp_path: pathlib.Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "model_agent.cli", "pull", f"hf://{REPO}", "--path", str(dest),
        "--param", f"endpoint={local_hub.endpoint}", *extra,
    ]  # fmt: skip


class Terminal:
    """A command on a pty of COLUMNS x ROWS, its output fed to a pyte screen."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.leader = leader
        self.proc = subprocess.Popen(
            command, stdin=follower, stdout=subprocess.DEVNULL, stderr=follower, env=env
        )
        os.close(follower)

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if select.select([self.leader], [], [], 0.1)[0]:
                try:
                    data = os.read(self.leader, 65536)
                except OSError:  # the command exited and closed the pty
                    return
                if not data:
                    return
                self.stream.feed(data)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display if line.strip()]

    def wait_for(self, predicate, timeout: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.2)
            if predicate(self.lines()):
                return self.lines()
            if self.proc.poll() is not None:
                self.pump(0.5)
                break
        return self.lines()

    def finish(self) -> int:
        code = self.proc.wait(60)
        self.pump(1.0)
        return code

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.leader)


def env(tmp_path: pathlib.Path) -> dict[str, str]:
    return {**os.environ, "MODEL_AGENT_STATE_DIR": str(tmp_path / "state"), "TERM": "xterm"}


def downloading(lines: list[str]) -> bool:
    """The large file's bar is up and the overall bar has a speed and an ETA."""
    return any("tokenizer.model" in line and BAR.search(line) for line in lines) and any(
        line.startswith("downloading:") and "ETA ?" not in line for line in lines
    )


def test_the_terminal_shows_one_live_display_with_an_eta_and_no_log_lines(slow_hub, tmp_path):
    with Terminal(pull(slow_hub, tmp_path / "out", tmp_path), env(tmp_path)) as term:
        screen = term.wait_for(downloading)
        assert term.finish() == 0
        final = term.lines()
    assert downloading(screen), screen
    (overall,) = [line for line in screen if line.startswith("downloading:")]
    assert BAR.search(overall) and re.search(r"ETA \d\d:\d\d", overall), overall
    assert re.search(r" \d/6 files ", overall), overall
    assert re.search(r"\d+(\.\d+)?[kKM]i?B/s", overall), overall
    assert not any(LOG_LINE.search(line) for line in screen), screen
    assert final[-1].startswith("model-agent: pulled 6 files"), final
    assert any(line.startswith("finalizing: 100%") for line in final), final
    assert not any("tokenizer.model" in line for line in final)  # the file bar went away


def test_verbose_logs_each_file_above_the_display_never_through_it(slow_hub, tmp_path):
    with Terminal(pull(slow_hub, tmp_path / "out", tmp_path, "-v"), env(tmp_path)) as term:
        screen = term.wait_for(downloading)
        assert term.finish() == 0
        final = term.lines()
    logs = [i for i, line in enumerate(final) if LOG_LINE.search(line)]
    bars = [i for i, line in enumerate(final) if BAR.search(line)]
    assert any("downloading file tokenizer.model" in final[i] for i in logs), final
    assert logs and bars and max(logs) < min(bars), final  # logs above the display
    assert not set(logs) & set(bars)  # no line is both a log record and a bar
    assert all(not (LOG_LINE.search(line) and BAR.search(line)) for line in screen)


def test_off_a_terminal_the_plain_lines_stay(slow_hub, tmp_path):
    slow_hub.faults.throttle(None)
    result = subprocess.run(
        pull(slow_hub, tmp_path / "out", tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        env=env(tmp_path),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr
    assert "downloading file tokenizer.model" in result.stderr  # INFO as before
    assert re.search(r"finalizing: .* \(100%\), 6/6 files", result.stderr), result.stderr
