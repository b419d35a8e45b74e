"""Taking over models another agent (OME's) placed: no completion manifest here, but files,
and usually a Ready label that inference pods are scheduled by.

``adoptable`` decides, from what is on disk and on the Node, that the agent should verify in
place rather than announce a download: the label must not leave ``Ready`` while the agent
checks the files (the pipeline pins the source, compares sizes, hashes every file present at
its final path, and fetches only files that are missing or wrong), and a model with
``downloadPolicy: ReuseIfExists`` reuses an existing directory the same way, as OME does.
When the check ends the completion manifest is written and later restarts take the fast path.
Only when a file is actually wrong (bytes must be fetched again) does ``LabelFlip`` report the
model ``Updating`` until it is whole again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
from collections.abc import Callable
from typing import Protocol

from model_agent import pipeline, report, spec

__all__ = ["LabelFlip", "adoptable", "has_files", "log_start"]

logger = logging.getLogger("model_agent.agent")


def has_files(directory: pathlib.Path) -> bool:
    """Whether ``directory`` is a real (not symlinked) folder with at least one entry that is
    not hidden (the agent's own staging folders are hidden)."""
    try:
        if directory.is_symlink() or not directory.is_dir():
            return False
        with os.scandir(directory) as entries:
            return any(not entry.name.startswith(".") for entry in entries)
    except OSError:
        return False


async def adoptable(model: spec.ModelSpec, destination: pathlib.Path, *, label: str | None) -> bool:
    """Verify in place, quietly: a downloadable model whose folder already holds files, and
    whose Node label says Ready (OME placed it) or whose policy is ``ReuseIfExists``."""
    if model.scheme not in ("hf", "oci"):
        return False
    if label != report.READY and model.download_policy != "ReuseIfExists":
        return False
    return await asyncio.to_thread(has_files, destination)


def log_start(model: spec.ModelSpec, destination: pathlib.Path) -> None:
    logger.info(
        "model %s: adopting the files at %s (no completion record): verifying them in place, "
        "the label stays as it is",
        model.ref.configmap_key,
        destination,
        extra={"model": model.ref.configmap_key},
    )


class _Publisher(Protocol):
    async def publish(
        self, ref: spec.ModelRef, status: str, *, progress: report.Progress | None = None
    ) -> None: ...


class LabelFlip:
    """The progress callback of an adoption: silent while files verify in place (each report
    still counts as activity for the stuck-lane watchdog); at the first byte fetched from the
    source (a file was missing or wrong) it reports ``Updating`` once and forwards progress
    from then on."""

    def __init__(
        self,
        reporter: _Publisher,
        ref: spec.ModelRef,
        forward: Callable[[pipeline.Progress], None] | None,
        *,
        activity: Callable[[], None] | None = None,
    ) -> None:
        self._reporter, self._ref, self._forward = reporter, ref, forward
        self._activity = activity
        self._task: asyncio.Task[None] | None = None

    def on_progress(self, progress: pipeline.Progress) -> None:
        if self._activity is not None:
            self._activity()  # hashing a large folder is progress too (stuck-lane liveness)
        if not progress.received_bytes:
            return
        if self._task is None:
            logger.warning(
                "model %s: a file of the adopted folder is missing or wrong; downloading it",
                self._ref.configmap_key,
                extra={"model": self._ref.configmap_key},
            )
            flip = self._reporter.publish(
                self._ref, report.UPDATING, progress=report.Progress(phase=progress.phase)
            )
            self._task = asyncio.get_running_loop().create_task(flip)
        elif self._task.done() and self._forward is not None:
            self._forward(progress)

    async def settled(self) -> None:
        """Wait for the Updating report (so that Ready is always written after it)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
