"""How ``model-agent pull`` shows its progress on stderr.

On a terminal: one live display drawn with tqdm, an overall bar (bytes, files, speed, ETA)
and under it one bar per large file being downloaded (``LARGE_FILE_BYTES`` or more);
log records are printed above the display, never through it (``redirect_logs``). Off a
terminal: a plain line every few seconds and at the end of the download, as a log file or
CI wants it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import NoReturn, Protocol, TextIO

from tqdm import tqdm
from tqdm.contrib import logging as tqdm_logging

from model_agent import pipeline

__all__ = [
    "LARGE_FILE_BYTES",
    "PlainLines",
    "Reporter",
    "TerminalDisplay",
    "human_bytes",
    "redirect_logs",
    "reporter_for",
]

#: Files of this size or more get a bar of their own while they download.
LARGE_FILE_BYTES = 10 * 1024 * 1024
_LINE_INTERVAL = 5.0
_NAME_WIDTH = 28
_TOTAL_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix} {rate_fmt} ETA {remaining}"
)
_FILE_FORMAT = "  {desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {rate_fmt}"


class Reporter(Protocol):
    def __call__(self, progress: pipeline.Progress) -> None: ...

    def close(self) -> None: ...


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class PlainLines:
    """Off a terminal: one line every few seconds, and one when the download finishes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last = 0.0

    def __call__(self, progress: pipeline.Progress) -> None:
        now = time.monotonic()
        if now - self._last < _LINE_INTERVAL and progress.phase != "finalizing":
            return
        self._last = now
        total = max(progress.total_bytes, 1)
        percent = 100.0 * progress.completed_bytes / total
        print(
            f"{progress.phase}: {human_bytes(progress.completed_bytes)} / "
            f"{human_bytes(progress.total_bytes)} ({percent:.0f}%), "
            f"{progress.completed_files}/{progress.total_files} files, "
            f"{human_bytes(progress.speed_bytes_per_sec)}/s",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        return None


def _short(path: str) -> str:
    if len(path) <= _NAME_WIDTH:
        return path.ljust(_NAME_WIDTH)
    return "..." + path[-(_NAME_WIDTH - 3) :]


class TerminalDisplay:
    """On a terminal: the overall bar and one bar per large file in flight (tqdm)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._total: tqdm[NoReturn] | None = None
        self._files: dict[str, tqdm[NoReturn]] = {}

    def _bar(self, *, desc: str, total: int, initial: int, fmt: str, leave: bool) -> tqdm[NoReturn]:
        return tqdm(
            desc=desc,
            total=total,
            initial=initial,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=self._stream,
            bar_format=fmt,
            leave=leave,
            dynamic_ncols=True,
            mininterval=0.2,
            smoothing=0.1,
        )

    def __call__(self, progress: pipeline.Progress) -> None:
        if progress.phase == "scanning" and self._total is None:
            return
        if self._total is None:
            self._total = self._bar(
                desc=progress.phase,
                total=progress.total_bytes,
                initial=progress.completed_bytes,
                fmt=_TOTAL_FORMAT,
                leave=True,
            )
        total = self._total
        total.set_description_str(progress.phase, refresh=False)
        total.set_postfix_str(
            f"{progress.completed_files}/{progress.total_files} files", refresh=False
        )
        if progress.total_bytes != total.total:
            total.total = progress.total_bytes
        total.update(progress.completed_bytes - total.n)
        self._follow_files(progress.files)
        total.refresh()  # the description and file count change without any new bytes

    def _follow_files(self, files: tuple[pipeline.FileProgress, ...]) -> None:
        current = {f.path: f for f in files if f.size >= LARGE_FILE_BYTES}
        for path in [p for p in self._files if p not in current]:
            self._files.pop(path).close()
        for path, file in current.items():
            bar = self._files.get(path)
            if bar is None:
                bar = self._files[path] = self._bar(
                    desc=_short(path),
                    total=file.size,
                    initial=file.completed_bytes,
                    fmt=_FILE_FORMAT,
                    leave=False,
                )
            bar.update(file.completed_bytes - bar.n)

    def close(self) -> None:
        for bar in self._files.values():
            bar.close()
        self._files.clear()
        if self._total is not None:
            self._total.close()
            self._total = None


def reporter_for(stream: TextIO) -> Reporter:
    """A live display on a terminal, plain lines otherwise."""
    return TerminalDisplay(stream) if stream.isatty() else PlainLines(stream)


@contextlib.contextmanager
def redirect_logs(reporter: Reporter) -> Iterator[None]:
    """While the live display is up, log records are written above it (through tqdm)."""
    if not isinstance(reporter, TerminalDisplay):
        yield
        return
    with tqdm_logging.logging_redirect_tqdm():
        yield
