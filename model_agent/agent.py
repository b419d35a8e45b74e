"""The agent: one serialized lane per model, a bounded pool of downloads, the own-node watch.

``submit`` (called by the Kopf handlers) never blocks: it records the newest wanted state of
the model in its lane and, when that state differs from what the lane is doing, cancels the
running task (delete, new URI/revision/path, node no longer selected, spec fixed after a
failure) and starts the lane's driver. A newer event supersedes a queued one. Downloads run
at most ``--num-download-worker`` at a time; deletes and report-only work never wait for a
download slot. Retryable failures back off exponentially (with jitter) and retry; after
``max_attempts`` of them, or at once for a permanent error, the model is ``Failed`` (with its
reason) and retried later on a long backoff, or at once when its spec changes.

``start`` reads the own Node, creates the ConfigMap, removes entries, labels and owned files
of models deleted while the agent was down, submits every existing model (the restart fast
path then reports complete models Ready without a download) and starts the node watch.
``stop`` cancels every task within seconds; partial files stay for resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import pathlib
import time
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from model_agent import (
    agent_janitor,
    agent_lanes,
    agent_peers,
    agent_startup,
    agent_sweep,
    agent_watchdog,
    agent_work,
    errors,
    metrics,
    report,
    selection,
    settings,
    shapes,
    spec,
)
from model_agent.disk import janitor
from model_agent.kube import configmap, events, nodes
from model_agent.kube import models as kube_models

__all__ = ["Agent"]

logger = logging.getLogger("model_agent.agent")

SYNC, DELETE = agent_lanes.SYNC, agent_lanes.DELETE
Lane = agent_lanes.Lane


class Agent:
    """See the module docstring. Build in the startup handler; ``await start()``."""

    def __init__(
        self,
        *,
        config: settings.Settings,
        api: client.ApiClient,
        recorder: metrics.Metrics | None = None,
        state_dir: pathlib.Path | None = None,
        max_attempts: int = 5,
        retry_base: float = 2.0,
        retry_max: float = 300.0,
        failed_retry: float = 1800.0,
        post_events: bool = True,
        repair_interval: float | None = None,
        stuck_after: float | None = None,
    ) -> None:
        self.config = config
        self.node_name = config.require_node_name()
        self.api = api
        self.metrics = recorder
        root = pathlib.Path(config.models_root_dir)
        self.state_dir = state_dir or root / spec.STATE_DIR_NAME
        self.max_attempts, self.retry_base, self.retry_max = max_attempts, retry_base, retry_max
        self.failed_retry = failed_retry
        #: The resync period (jittered): ConfigMap repair and the sweep for missed deletes.
        self.repair_interval = repair_interval or config.model_watch_resync_period
        #: The newest resourceVersion seen per model kind (events and lists): the sweep
        #: asks for a list not older than it, which the API server serves from its cache.
        self.versions: dict[str, str] = {}
        self.stuck_after = stuck_after or agent_watchdog.STALL_FACTOR * config.stall_timeout
        self.stuck_restarts = 0
        self.cm = configmap.ConfigMapWriter(
            api, namespace=config.namespace, node_name=self.node_name, recorder=recorder
        )
        self.nodes = nodes.NodeClient(
            api, node_name=self.node_name, retries=config.node_label_retry
        )
        self.work = agent_work.Work(
            config=config,
            api=api,
            cm=self.cm,
            node=self.nodes,
            recorder=recorder,
            state_dir=self.state_dir,
            shape=self._shape,
            node_labels=lambda: self.node.labels,
            recorder_events=events.EventRecorder(api, node_name=self.node_name, metrics=recorder)
            if post_events
            else None,
            on_release=self._retry_conflicts,
        )
        self.lanes: dict[tuple[str, str, str], Lane] = {}
        self.node = selection.Node(name=self.node_name, labels={})
        self._slots = agent_lanes.DownloadSlots(config.num_download_worker, recorder)
        self._reconciles = asyncio.Semaphore(config.max_concurrent_reconciles)
        self._stopping = False
        self._started = False
        self._stop_event = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._progress_writes: set[asyncio.Task[None]] = set()
        self._shapes = agent_lanes.ShapeCache(config.instance_type_map)
        self.last_success: datetime.datetime | None = None
        self.last_error: str | None = None
        self.janitor: janitor.Janitor | None = None  # the disk janitor, once started
        self._peer_stack = contextlib.AsyncExitStack()  # the peer server, when peering is on

    # --- public API ----------------------------------------------------------------------

    def submit(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Record a model event; never blocks (work happens in the lane's task)."""
        try:
            ref = spec.identify(body)
        except errors.AgentError as exc:
            logger.warning("ignored an event without a model identity: %s", exc)
            return
        agent_sweep.note_version(
            self.versions, ref.kind, (body.get("metadata") or {}).get("resourceVersion")
        )
        lane = self.lanes.get(ref.key)
        if lane is None:
            lane = self.lanes[ref.key] = Lane(ref=ref)
        lane.seen_at = time.monotonic()
        if event_type == "DELETED" or spec.is_deleting(body):
            self._want_delete(lane, ref)
            return
        model: spec.ModelSpec | None = None
        invalid: errors.AgentError | None = None
        try:
            model = spec.parse(body, models_root_dir=self.config.models_root_dir)
        except errors.AgentError as exc:
            invalid = exc
            lane.placement = spec.placement_of(body)
        changed = (
            model != lane.model
            or str(invalid) != str(lane.invalid)
            or ref.uid != lane.ref.uid
            or lane.deleted
        )
        lane.ref, lane.model, lane.invalid, lane.deleted = ref, model, invalid, False
        if not changed and (lane.wanted or lane.running or lane.retry or lane.done_model):
            return  # nothing new (e.g. the controller wrote the status)
        self._want_sync(lane, cancel_running=changed)

    async def start(self) -> None:
        """Read the node, prepare the ConfigMap, clean up after deletions while down, submit
        every existing model and start the node watch."""
        await asyncio.to_thread(self.state_dir.mkdir, parents=True, exist_ok=True)
        raw_node = await agent_startup.retrying("read own node", self.nodes.get)
        self._set_node(raw_node, reevaluate=False)
        await self._shape()  # logs once which source (map, NVML, none) decided the GPU shape
        data = await agent_startup.retrying("prepare configmap", self.cm.ensure)
        self.cm.seed(data)
        self.nodes.seed(self.node.labels)
        self.work.peering = await agent_peers.start(
            config=self.config,
            work=self.work,
            cm=self.cm,
            state_dir=self.state_dir,
            recorder=self.metrics,
            stack=self._peer_stack,
        )
        await self.work.load_records()
        await asyncio.to_thread(self.work.owners.load)
        existing = await agent_startup.retrying(
            "list models", lambda: kube_models.list_models(self.api, versions=self.versions)
        )
        await agent_startup.remove_stale(
            work=self.work,
            cm=self.cm,
            node=self.nodes,
            node_labels=self.node.labels,
            existing=existing,
            data=data,
            models_root_dir=self.config.models_root_dir,
        )
        for body in existing:
            self.submit(None, body)
        since = (raw_node.get("metadata") or {}).get("resourceVersion")
        self._background.append(
            asyncio.create_task(self._watch_node(since and str(since)), name="node-watch")
        )
        self._background.append(asyncio.create_task(self._flush_loop(), name="report-flush"))
        watchdog = agent_watchdog.watch(
            lanes=self.lanes.values,
            stuck_after=self.stuck_after,
            restart=self._restart,
            stop=self._stop_event,
        )
        self._background.append(asyncio.create_task(watchdog, name="lane-watchdog"))
        self._background.extend(agent_janitor.start(self))
        self._started = True
        logger.info(
            "agent started on node %s with %d models known", self.node_name, len(self.lanes)
        )

    async def stop(self, grace: float = 10.0) -> None:
        """Cancel every task (downloads keep their partial files for resume)."""
        self._stopping = True
        self._stop_event.set()
        tasks: list[asyncio.Task[Any]] = [*self._background, *self._progress_writes]
        for lane in self.lanes.values():
            if lane.retry is not None:
                lane.retry.cancel()
            for task in (lane.task, lane.driver):
                if task is not None and not task.done():
                    tasks.append(task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        if self.work.events is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.work.events.aclose(), timeout=2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._peer_stack.aclose(), timeout=2.0)
        logger.info("agent stopped")

    def health(self) -> dict[str, Any]:
        """The agent's state from memory (no API request): the node watch task alive, and
        its stream open or reconnecting for less than the relist window plus a minute."""
        watch = self._background[0] if self._background else None
        watching = watch is not None and not watch.done()
        healthy = not self._started or watching or self._stopping
        is_open, since = self.nodes.watch_state
        closed_for = 0.0 if is_open else time.monotonic() - since
        return {
            "healthy": healthy,
            "reason": None if healthy else "node watch ended",
            "started": self._started,
            "watch_open": is_open,
            "watch_closed_for": round(closed_for, 1),
            "watch_ready": watching and closed_for <= self.config.relist_window + 60.0,
            "queue_depth": self._slots.waiting,
            "active_workers": self._slots.active,
            "models": len(self.lanes),
            "stuck_restarts": self.stuck_restarts,
            "last_success": self.last_success,
            "last_error": self.last_error,
        }

    def background_tasks(self) -> list[asyncio.Task[None]]:
        return list(self._background)

    # --- lanes ---------------------------------------------------------------------------

    def _want_delete(self, lane: Lane, ref: spec.ModelRef) -> None:
        lane.ref = ref
        if lane.deleted and (lane.wanted == DELETE or lane.running == DELETE):
            return
        lane.deleted = True
        self._cancel_retry(lane)
        lane.wanted = DELETE
        if lane.running == SYNC and lane.task is not None:
            logger.info("model %s: cancelling its task for a delete", ref.configmap_key)
            lane.task.cancel()
        self._kick(lane)

    def _want_sync(self, lane: Lane, *, cancel_running: bool, force: bool = False) -> None:
        self._cancel_retry(lane)
        lane.attempts = 0 if cancel_running else lane.attempts
        lane.wanted = SYNC
        if cancel_running and lane.running == SYNC and lane.task is not None:
            if force or not self._same_work(lane.running_model, lane.model):
                logger.info("model %s: spec changed, restarting its task", lane.ref)
                lane.task.cancel()
        self._kick(lane)

    def _same_work(self, old: spec.ModelSpec | None, new: spec.ModelSpec | None) -> bool:
        """Whether the running task already does what ``new`` asks (same bytes, same place,
        still selected)."""
        return (
            old is not None and new is not None and old.same_source(new) and new.selects(self.node)
        )

    def _selects(self, lane: Lane) -> bool:
        """Whether the node is selected; an invalid spec counts as selected (so it is
        reported Failed) unless its selector fields parse and rule this node out."""
        if lane.model is not None:
            return lane.model.selects(self.node)
        if lane.placement is not None:
            return selection.matches(lane.placement, self.node)
        return True

    def _kick(self, lane: Lane) -> None:
        if self._stopping:
            return
        if lane.driver is None or lane.driver.done():
            lane.driver = asyncio.create_task(self._drive(lane), name=f"lane {lane.ref}")

    def _cancel_retry(self, lane: Lane) -> None:
        if lane.retry is not None:
            lane.retry.cancel()
            lane.retry = None

    async def _drive(self, lane: Lane) -> None:
        while lane.wanted is not None and not self._stopping:
            work, lane.wanted = lane.wanted, None
            lane.running, lane.running_model = work, lane.model
            lane.active_at = time.monotonic()
            task = asyncio.create_task(self._execute(lane, work))
            lane.task = task
            try:
                await asyncio.wait({task})
            finally:
                lane.task, lane.running, running_model = None, None, lane.running_model
                lane.running_model = None
            if task.cancelled():
                continue
            failure = task.exception()
            if failure is None:
                lane.attempts, lane.conflicted = 0, False
                lane.done_model = running_model if work == SYNC else None
                self.last_success = datetime.datetime.now(datetime.UTC)
            elif not self._stopping:
                lane.done_model = None
                try:
                    await self._failed(lane, work, failure)
                except Exception:  # never let a reporting bug kill the lane
                    logger.exception("model %s: handling a failure Failed", lane.ref)
                    self._schedule(lane, work, self.failed_retry)
        if lane.deleted and lane.wanted is None and lane.running is None and lane.retry is None:
            self.lanes.pop(lane.ref.key, None)

    async def _execute(self, lane: Lane, work: str) -> None:
        ref = lane.ref
        if work == DELETE:
            async with self._reconciles:
                await self.work.remove(
                    ref,
                    model=lane.model,
                    why="deleted",
                )
            lane.selected = False
            return
        model, invalid = lane.model, lane.invalid
        # pvc:// belongs to OME's controller and never selects this node: a model switched to
        # it is no longer ours, so what an earlier URI placed here goes as when unselected.
        selected = self._selects(lane)
        was_selected, lane.selected = lane.selected, selected
        if not selected:
            if was_selected or self.work.holds(ref, self.node.labels):
                async with self._reconciles:
                    await self.work.remove(
                        ref,
                        model=model,
                        why="not selected",
                    )
            return
        if invalid is not None or model is None:
            raise invalid or errors.InvalidSpecError("spec missing")
        context = agent_work.WorkContext(
            on_progress=lambda p: self._on_progress(lane, p),
            on_activity=lambda: setattr(lane, "active_at", time.monotonic()),
            download_slot=lambda: agent_watchdog.lane_slot(self._slots, lane),
            waiting=lambda: agent_watchdog.lane_waiting(lane),
        )
        await self.work.sync(model, context)

    async def _failed(self, lane: Lane, work: str, failure: BaseException) -> None:
        ref = lane.ref
        lane.attempts += 1  # deletes back off too: a failing delete must not retry every 2 s
        if work == SYNC:
            lane.conflicted = isinstance(failure, errors.PathConflictError)
        verdict = agent_lanes.judge(
            failure,
            attempts=lane.attempts,
            max_attempts=self.max_attempts if work == SYNC else 0,
            delay=self._backoff(lane),
            failed_retry=self.failed_retry,
        )
        self.last_error = f"{ref.configmap_key}: {verdict.reason}"
        if work == DELETE:
            logger.error("model %s: delete Failed: %s (retrying)", ref, verdict.message)
            self._schedule(lane, DELETE, self._backoff(lane))
            return
        if not verdict.give_up:
            logger.warning(
                "model %s: attempt %d failed (%s: %s); retrying in %.1f s",
                ref.configmap_key,
                lane.attempts,
                verdict.reason,
                verdict.message,
                verdict.retry_in,
            )
        elif self.work.status.get(ref.configmap_key) == report.READY:
            logger.error(
                "model %s: update Failed (%s: %s); the Ready version stays",
                ref.configmap_key,
                verdict.reason,
                verdict.message,
            )
        else:
            try:
                await self.work.publish(
                    ref, report.FAILED, reason=verdict.reason, message=verdict.message
                )
            except errors.AgentError as exc:
                logger.error("model %s: reporting Failed Failed: %s", ref.configmap_key, exc)
        self._schedule(lane, SYNC, verdict.retry_in)

    def _retry_conflicts(self) -> None:
        """A model let a directory go: models that failed on a path conflict try again now
        (their claim decides; the first to claim holds it)."""
        for lane in list(self.lanes.values()):
            if lane.conflicted and not lane.deleted and lane.running is None:
                lane.conflicted = False
                logger.info("model %s: a directory was released; retrying", lane.ref)
                self._want_sync(lane, cancel_running=False)

    def _backoff(self, lane: Lane) -> float:
        return agent_lanes.backoff(lane.attempts, base=self.retry_base, cap=self.retry_max)

    def _schedule(self, lane: Lane, work: str, delay: float) -> None:
        self._cancel_retry(lane)

        def fire() -> None:
            lane.retry = None
            if lane.wanted is None and lane.running is None:
                lane.wanted = DELETE if lane.deleted else work
                self._kick(lane)

        lane.retry = asyncio.get_running_loop().call_later(delay, fire)

    def _restart(self, lane: Lane) -> None:
        """Run a stuck lane's work again from the start."""
        if lane.task is None or lane.running is None:
            return
        self.stuck_restarts += 1
        lane.wanted = lane.wanted or lane.running
        lane.active_at = time.monotonic()
        lane.task.cancel()

    def _on_progress(self, lane: Lane, progress: report.Progress) -> None:
        lane.progress = progress
        now = time.monotonic()
        if now - lane.progress_written < self.config.config_map_sync_interval:
            return
        lane.progress_written = now
        task = asyncio.get_running_loop().create_task(self._write_progress(lane, progress))
        self._progress_writes.add(task)
        task.add_done_callback(self._progress_writes.discard)

    async def _write_progress(self, lane: Lane, progress: report.Progress) -> None:
        if lane.running == SYNC:
            try:
                await self.work.progress(lane.ref, progress)
            except errors.AgentError as exc:  # the next progress write or the result follows
                logger.debug("progress write for %s failed: %s", lane.ref, exc)

    # --- node ----------------------------------------------------------------------------

    def _set_node(self, raw: Mapping[str, Any], *, reevaluate: bool = True) -> None:
        labels = dict(((raw.get("metadata") or {}).get("labels")) or {})
        selection_labels = {k: v for k, v in labels.items() if not report.is_model_label(k)}
        old = {k: v for k, v in self.node.labels.items() if not report.is_model_label(k)}
        self.node = selection.Node(name=self.node_name, labels=labels)
        if not reevaluate or selection_labels == old:
            return
        new_shape = shapes.instance_type_from_labels(labels) != shapes.instance_type_from_labels(
            old
        )
        for lane in list(self.lanes.values()):
            if lane.deleted or (lane.model is not None and not lane.model.handled):
                continue
            now = self._selects(lane)
            if new_shape and now and lane.selected and lane.model and lane.model.filters_by_shape:
                logger.info("model %s: the GPU shape changed, re-planning", lane.ref)
                self._want_sync(lane, cancel_running=True, force=True)
                continue
            if now != lane.selected:
                logger.info(
                    "model %s: node %s %s selected by the labels",
                    lane.ref.configmap_key,
                    self.node_name,
                    "is now" if now else "is no longer",
                )
                lane.attempts = 0
                self._cancel_retry(lane)
                lane.wanted = SYNC
                if lane.running == SYNC and lane.task is not None and not now:
                    lane.task.cancel()
                self._kick(lane)

    async def _watch_node(self, since: str | None) -> None:
        async def on_node(raw: dict[str, Any]) -> None:
            self._set_node(raw)

        await self.nodes.watch(
            on_node,
            timeout_seconds=int(self.config.model_watch_resync_period),
            stop=self._stop_event,
            window=self.config.relist_window,
            since=since,
        )

    async def _flush_loop(self) -> None:
        await agent_startup.upkeep(
            cm=self.cm,
            node=self.nodes,
            labels=lambda: self.node.labels,
            interval=max(0.2, min(5.0, self.config.config_map_sync_interval)),
            repair_interval=self.repair_interval,
            stop=self._stop_event,
            sweep=self._sweep_deleted,
        )

    async def _sweep_deleted(self) -> None:
        """Delete the models whose deletion no event reported (``agent_sweep``)."""
        for lane in await agent_sweep.missed_deletes(self.api, self.versions, self.lanes.values()):
            logger.info(
                "model %s no longer exists (its delete event was missed): removing it",
                lane.ref.configmap_key,
            )
            self._want_delete(lane, lane.ref)

    async def _shape(self) -> str | None:
        return await self._shapes.get(self.node.labels)
