"""The disk janitor: every ``--disk-scan-interval`` it surveys the models root (and the temp
dir), sets the usage gauges (bytes per placed model, partial and orphan bytes), reports new
orphan directories (one WARNING line each), and applies the cleanup policies: abandoned
partial downloads after ``--partial-ttl``, orphans after ``--orphan-grace`` when the admin
set it. Claims are read again just before each removal, so a model created meanwhile keeps
its directory. Its own small loop, apart from the agent's report upkeep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from model_agent import metrics, settings
from model_agent.disk import policy, scan

__all__ = ["Janitor"]

logger = logging.getLogger("model_agent.disk")


@dataclasses.dataclass
class Janitor:
    """See the module docstring. ``claims``: what the models hold now; ``placed``: the path
    of each placed model and its metric labels; ``freed``: called after a removal."""

    config: settings.Settings
    state_dir: str
    claims: Callable[[], Awaitable[policy.Claims]]
    placed: Callable[[], Mapping[str, metrics.ModelLabels]]
    recorder: metrics.Metrics | None = None
    freed: Callable[[], None] = lambda: None
    sightings: policy.Sightings = dataclasses.field(default_factory=policy.Sightings)
    last: scan.Survey | None = None
    rounds: int = 0  # scans completed

    async def run(self, stop: asyncio.Event) -> None:
        """Scan now, then every interval, until ``stop`` (never when the interval is off)."""
        interval = self.config.disk_scan_interval
        if interval is None:
            return
        while not stop.is_set():
            try:
                await self.scan_once()
            except Exception as exc:  # keep the loop alive; the next round tries again
                logger.warning("disk scan failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.05, interval))

    async def scan_once(self) -> scan.Survey:
        config = self.config
        found = await asyncio.to_thread(
            scan.survey,
            config.models_root_dir,
            claims=await self.claims(),
            skip=(self.state_dir,),
            temp_dir=config.temp_dir,
        )
        self.last = found
        now = time.time()
        for path in self.sightings.update((o.path for o in found.orphans), now=now):
            nbytes = next(o.nbytes for o in found.orphans if o.path == path)
            logger.warning(
                "orphan directory %s (%d bytes) belongs to no model on this node; %s",
                path,
                nbytes,
                f"it is removed after {config.orphan_grace:.0f} s"
                if config.orphan_grace is not None
                else "it is kept (--orphan-grace off)",
            )
        self._gauges(found)
        removed = False
        for area in policy.due_partials(
            found.areas, await self.claims(), now=now, ttl=config.partial_ttl
        ):
            removed |= await self._remove(area.path, "partial", area.nbytes, area=area)
        for orphan in policy.due_orphans(
            found.orphans, self.sightings.first, now=now, grace=config.orphan_grace
        ):
            removed |= await self._remove(orphan.path, "orphan", orphan.nbytes)
        if removed:
            self.freed()
        self.rounds += 1
        return found

    async def _remove(
        self, path: str, kind: str, nbytes: int, *, area: policy.Area | None = None
    ) -> bool:
        claims = await self.claims()  # again: a model may have appeared since the scan
        if path in claims.pointed or claims.holds_below(path):
            return False
        if area is not None and not policy.is_abandoned(area, claims):
            return False
        root = self.config.models_root_dir
        temp = self.config.temp_dir
        if temp and scan.inside(path, temp):
            root = temp
        if not await asyncio.to_thread(scan.remove, path, root=root):
            return False
        logger.info("disk cleanup: removed %s directory %s (%d bytes)", kind, path, nbytes)
        if self.recorder is not None:
            self.recorder.disk_cleaned(kind)
        return True

    def _gauges(self, found: scan.Survey) -> None:
        if self.recorder is None:
            return
        placed = self.placed()
        self.recorder.disk_usage(
            models={labels: found.models[p] for p, labels in placed.items() if p in found.models},
            partial=sum(a.nbytes for a in found.areas),
            orphan=sum(o.nbytes for o in found.orphans),
            orphans=len(found.orphans),
        )
