"""The work the agent does for one model: make it present and reported, or gone.

``Work.sync`` (model wanted on this node): pvc is not ours; s3/gs/az/github fail clearly;
vendor:// is Ready with nothing to fetch; local:// is adopted (checked, analysed, never
deleted); hf/oci are pulled. The restart fast path comes first: a destination whose completion
manifest matches the disk and names the same URI is reported Ready with no download and no
hashing, and nothing is written when the ConfigMap entry and label already say so. An update
(new URI or revision) downloads beside the old version, which stays Ready until the new one is
verified; then one rename switches and the old files are removed.

Trust boundaries (docs/security.md), checked before any request or any write: a
``parameters.endpoint`` outside the credential policy fails the model (``EndpointNotAllowed``);
the model's directory, resolved, must lie inside ``--models-root-dir`` and is claimed in the
ownership registry (``trust.ownership``): a directory another model holds (equal, inside or
around) fails the newcomer with ``PathConflict``.

``Work.remove`` (model deleted, or node no longer selected): the files the agent placed for the
model go (its manifest and staging areas only) unless the model is reserved, local://, or
another model uses the same path; then its directory claims are released (``on_release`` lets
the agent retry models that were waiting for them). The ConfigMap key and Node label are
removed always, even after errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from kubernetes_asyncio import client

from model_agent import (
    adoption,
    agent_reporter,
    blocking,
    errors,
    manifest,
    metrics,
    pipeline,
    report,
    settings,
    spec,
    uris,
)
from model_agent import agent_disk as disk
from model_agent.disk import admission, ledger
from model_agent.download import staging
from model_agent.kube import configmap, events, nodes, secrets
from model_agent.kube import models as kube_models
from model_agent.peers import service as peer_service
from model_agent.trust import confine, egress, ownership

__all__ = ["Work", "WorkContext"]

logger = logging.getLogger("model_agent.agent")


@dataclasses.dataclass
class WorkContext:
    """Per-task knobs the lane hands in (progress is throttled by the agent)."""

    on_progress: Callable[[report.Progress], None] | None = None
    on_activity: Callable[[], None] | None = None  # any sign of progress, even when quiet
    download_slot: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None
    #: Entered while the download waits for disk space (the slot is lent back meanwhile).
    waiting: admission.Waiting | None = None


class Work(agent_reporter.Reporter):
    """Clients and settings shared by every model's work."""

    def __init__(
        self,
        *,
        config: settings.Settings,
        api: client.ApiClient,
        cm: configmap.ConfigMapWriter,
        node: nodes.NodeClient,
        recorder: metrics.Metrics | None,
        state_dir: pathlib.Path,
        shape: Callable[[], Awaitable[str | None]],
        recorder_events: events.EventRecorder | None = None,
        node_labels: Callable[[], Mapping[str, str]] = dict,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            cm=cm,
            node=node,
            state_dir=state_dir,
            recorder_events=recorder_events,
            node_labels=node_labels,
        )
        self.config, self.api, self.metrics = config, api, recorder
        self._shape = shape
        self.root = pathlib.Path(config.models_root_dir)
        self.owners = ownership.Registry(state_dir)
        self._on_release = on_release
        self._policy = config.credential_policy()
        self.admission = admission.Admission(reserve=config.min_free_space, recorder=recorder)
        #: Peering (``agent_peers.start``); None: every byte from the origin.
        self.peering: peer_service.Peering | None = None

    # --- sync ----------------------------------------------------------------------------

    async def sync(self, model: spec.ModelSpec, ctx: WorkContext) -> None:
        ref = model.ref
        scheme = model.scheme
        if scheme in uris.UNSUPPORTED:
            raise errors.UnsupportedStorageError(
                f"{scheme}:// storage is not supported by this agent ({model.storage_uri})"
            )
        if scheme == "vendor":
            await self.publish(ref, report.READY)
            return
        if scheme == "local":
            await self._adopt_local(model)
            return
        endpoint = model.parameters.get("endpoint")
        if endpoint:
            egress.check_endpoint(endpoint, self._policy)
        await self._claim(model, model.path)
        destination = pathlib.Path(model.path)
        request = await self._request(model, destination)
        stored = await manifest.read(destination, state_dir=self.state_dir)
        ours = stored is not None and stored.owner in (None, ref.configmap_key)
        complete = (
            ours and stored is not None and await asyncio.to_thread(manifest.matches_disk, stored)
        )
        same_uri = complete and stored is not None and stored.uri == model.storage_uri
        if same_uri and stored is not None and pipeline.same_request(stored, request):
            await asyncio.to_thread(pipeline.renew_key, stored, request, state_dir=self.state_dir)
            await self._ready(model, stored.config)
            return
        # Same source, other file set (allow/ignore, format, GPU shape): re-plan in place,
        # hashing what is there, fetching what is missing, removing what is no longer asked.
        replan = same_uri
        updating_beside = complete and not replan
        # No manifest here (a manifest of another model is not "none": it is not adopted).
        adopting = stored is None and await adoption.adoptable(
            model, destination, label=self.node_labels().get(ref.label_key)
        )
        target = disk.sibling(destination) if updating_beside else destination
        request = dataclasses.replace(request, destination=target)
        previous = self.records.get(ref.configmap_key)
        moved_from = (
            previous.path
            if previous is not None and previous.owned and previous.path != model.path
            else None
        )
        old_ready = moved_from is not None and await asyncio.to_thread(
            _complete, pathlib.Path(moved_from), self.state_dir
        )
        if previous is None:
            await self._keep_record(_record(model, owned=True))
        quiet = updating_beside or old_ready or replan or adopting
        if not quiet:
            await self.publish(ref, report.UPDATING, progress=report.Progress(phase="scanning"))
        elif adopting:
            adoption.log_start(model, destination)
        else:
            logger.info(
                "model %s: %s",
                ref.configmap_key,
                "a new file set from the same source: re-planning in place"
                if replan
                else f"new source {model.storage_uri} downloads beside the Ready version",
                extra={"model": ref.configmap_key},
            )
        request = dataclasses.replace(request, token=await self._token(model))
        callback = _progress_adapter(None if quiet else ctx.on_progress, ctx.on_activity)
        flip = adoption.LabelFlip(
            self, ref, _progress_adapter(ctx.on_progress, None), activity=ctx.on_activity
        )
        if adopting:
            callback = flip.on_progress
        slot = ctx.download_slot() if ctx.download_slot else contextlib.nullcontext()
        async with slot:
            try:
                result = await pipeline.pull(
                    request,
                    self.config,
                    state_dir=self.state_dir,
                    metrics=self.metrics,
                    progress=callback,
                    admit=self._admit(ref, ctx, quiet=quiet),
                    peering=self.peering,
                )
            finally:
                await flip.settled()
        config: Mapping[str, Any] | None = result.config
        if updating_beside:
            moved = await asyncio.to_thread(self._switch, target, destination, ref)
            config = moved if moved is not None else config
        await self._ready(model, config)
        if moved_from is not None:
            await self._remove_old_path(ref, moved_from, reserve=model.reserve)

    async def _request(
        self, model: spec.ModelSpec, destination: pathlib.Path
    ) -> pipeline.PullRequest:
        ref = model.ref
        return pipeline.PullRequest(
            uri=model.storage_uri,
            destination=destination,
            parameters=model.parameters,
            model_format=model.model_format,
            serving=model.serving,
            shape=await self._shape()
            if (model.model_format or "").lower() == "tensorrtllm"
            else None,
            analyse=model.analyse,
            metrics_labels=metrics.ModelLabels(ref.kind, ref.namespace, ref.name),
            config_key=ref.configmap_key,
            root=self.root,
        )

    async def _claim(self, model: spec.ModelSpec, path: str) -> None:
        """Hold ``path`` (resolved inside the models root) for ``model`` before any write."""
        resolved = await asyncio.to_thread(
            confine.within, path, self.root, what=f"spec.storage.path {path}"
        )
        ref = model.ref
        await asyncio.to_thread(self.owners.claim, resolved, owner=ref.configmap_key, uid=ref.uid)

    async def _held_by_another(self, ref: spec.ModelRef, path: str) -> bool:
        """Whether another model holds ``path`` (or a directory around or inside it)."""
        resolved = await asyncio.to_thread(confine.resolve, path)
        holder = await asyncio.to_thread(self.owners.holder, resolved, ref.configmap_key)
        return holder is not None

    async def _release(self, config_key: str, path: str | None = None) -> None:
        resolved = None if path is None else await asyncio.to_thread(confine.resolve, path)
        dropped = await asyncio.to_thread(self.owners.release, config_key, resolved)
        if dropped:
            logger.info("model %s released %s", config_key, ", ".join(c.path for c in dropped))
            if self._on_release is not None:
                self._on_release()

    def _admit(self, ref: spec.ModelRef, ctx: WorkContext, *, quiet: bool) -> pipeline.Admit:
        """The pull's admission into the disk: waits for room (reported as ``Updating`` with
        the reason, unless a Ready version stays in service) or fails with ``NoSpace``."""

        async def on_wait(decision: ledger.Decision) -> None:
            if not quiet:
                await self.publish(
                    ref,
                    report.UPDATING,
                    progress=report.Progress(phase="scanning"),
                    reason="WaitingForDiskSpace",
                    message=decision.message,
                )

        @contextlib.asynccontextmanager
        async def admit(needs: Sequence[tuple[str, int, int]], what: str) -> AsyncIterator[None]:
            async with self.admission.reserve(needs, on_wait=on_wait, waiting=ctx.waiting):
                yield

        return admit

    async def _remove_old_path(self, ref: spec.ModelRef, path: str, *, reserve: bool) -> None:
        """After a path change: the files at the old path go (unless kept); its claim ends."""
        if reserve or await self._held_by_another(ref, path):
            logger.info("model %s: files at the old path %s kept", ref.configmap_key, path)
        else:
            await asyncio.to_thread(self._delete_files, pathlib.Path(path), ref.configmap_key)
            self.admission.freed()
            logger.info("model %s: removed the old path %s", ref.configmap_key, path)
        await self._release(ref.configmap_key, path)

    def _switch(
        self, staged: pathlib.Path, destination: pathlib.Path, ref: spec.ModelRef
    ) -> dict[str, Any] | None:
        """One rename makes the verified new version current; the old one's files (its
        manifest's) are removed, anything unknown beside them stays and is logged."""
        old = manifest.load(destination, state_dir=self.state_dir)
        disk.exchange(staged, destination)
        config = disk.relocate_manifest(
            staged, destination, state_dir=self.state_dir, config_key=ref.configmap_key
        )
        if old is not None:
            manifest.save(
                dataclasses.replace(old, destination=str(staged.absolute())),
                state_dir=self.state_dir,
            )
        self._delete_files(destination, ref.configmap_key, beside_only=True)
        logger.info(
            "model %s switched to the new version", ref.configmap_key, extra={"model": str(ref)}
        )
        return config

    async def _ready(self, model: spec.ModelSpec, config: Mapping[str, Any] | None) -> None:
        ref = model.ref
        newly = self.status.get(ref.configmap_key) != report.READY
        await self._keep_record(_record(model, owned=True))
        await self.publish(ref, report.READY, config=config)
        if newly and config and config.get("analysisError"):
            self._analysis_failed(ref, config)
        if self.config.write_spec and config:
            await kube_models.write_back(self.api, model.ref, model.spec, config)

    def _analysis_failed(self, ref: spec.ModelRef, config: Mapping[str, Any]) -> None:
        """Ready, but the analyser could not read a file: a Warning Event and a metric (a
        folder with no config at all, a GGUF repository say, is not a problem)."""
        if config.get("analysisErrorReason") == "NoModelConfig":
            return
        if self.metrics is not None:
            self.metrics.analysis_failed(metrics.ModelLabels(ref.kind, ref.namespace, ref.name))
        self._event(ref, "AnalysisFailed", str(config["analysisError"]))

    async def _adopt_local(self, model: spec.ModelSpec) -> None:
        path = pathlib.Path(getattr(model.uri, "path", model.path))
        if not await asyncio.to_thread(path.is_dir):
            raise errors.NotFoundError(f"local model path {path} does not exist on this node")
        config: dict[str, Any] = {}
        if model.analyse:
            config = await asyncio.to_thread(pipeline.analyse_directory, path, model.storage_uri)
        config["artifact"] = {
            "sha": "",
            "parentPath": {model.ref.configmap_key: str(path)},
            "childrenPaths": [],
        }
        await self._keep_record(_record(model, owned=False))
        newly = self.status.get(model.ref.configmap_key) != report.READY
        await self.publish(model.ref, report.READY, config=config)
        if newly and config.get("analysisError"):
            self._analysis_failed(model.ref, config)
        if self.config.write_spec:
            await kube_models.write_back(self.api, model.ref, model.spec, config)

    async def _token(self, model: spec.ModelSpec) -> str | None:
        if not model.secret_name:
            return None
        namespace = model.ref.namespace or self.config.namespace
        return await secrets.read_token(
            self.api, namespace=namespace, name=model.secret_name, key=model.secret_key
        )

    # --- remove --------------------------------------------------------------------------

    async def remove(
        self,
        ref: spec.ModelRef,
        *,
        model: spec.ModelSpec | None,
        record: disk.Record | None = None,
        why: str,
    ) -> None:
        """Remove files (unless kept) and release the model's directories, then the ConfigMap
        key and the label, always."""
        record = record or self.records.get(ref.configmap_key)
        try:
            await self._remove_files(ref, model, record, why)
            await self._release(ref.configmap_key)
        finally:
            self.status.pop(ref.configmap_key, None)
            try:
                if self.cm.knows(ref.configmap_key):
                    await self.cm.write(ref.configmap_key, None)
            finally:
                if self.node.knows(ref.label_key) or ref.label_key in self.node_labels():
                    await self.node.set_label(ref.label_key, None)
            await self._drop_record(ref.configmap_key)
            logger.info("model %s removed from this node (%s)", ref.configmap_key, why)
            self._event(ref, "Deleted")

    async def _remove_files(
        self,
        ref: spec.ModelRef,
        model: spec.ModelSpec | None,
        record: disk.Record | None,
        why: str,
    ) -> None:
        candidates: dict[str, bool] = {}  # path -> owned by the agent
        if record is not None:
            candidates[record.path] = record.owned
        if model is not None and model.scheme in ("hf", "oci") and model.path not in candidates:
            # Not recorded here: only leftovers of a download could be the agent's.
            candidates[model.path] = await asyncio.to_thread(
                _has_agent_files, model.path, self.state_dir
            )
        if model is not None and model.scheme in ("local", "vendor"):
            candidates = dict.fromkeys(candidates, False)  # the admin's files, never ours
        reserve = model.reserve if model is not None else bool(record and record.reserve)
        doomed = []
        for path, owned in candidates.items():
            if reserve or not owned or await self._held_by_another(ref, path):
                logger.info("model %s: files at %s kept (%s)", ref.configmap_key, path, why)
            else:
                doomed.append(pathlib.Path(path))
        if not doomed:
            return
        # The lane's download task has ended before a delete runs, and it ends only once its
        # transfer threads and file operations have (``loops.Pool.run``, ``blocking``): no
        # write can land after this one pass.
        key = ref.configmap_key
        for destination in doomed:
            await blocking.to_end(self._delete_files, destination, key)
        self.admission.freed()  # downloads waiting for room look again
        for destination in doomed:
            logger.info("model %s: removed files at %s", ref.configmap_key, destination)

    def _delete_files(
        self, destination: pathlib.Path, owner: str, *, beside_only: bool = False
    ) -> None:
        """What the agent placed for ``owner`` at ``destination`` and beside it (an update's
        sibling) goes; nothing else (``agent_disk.remove_placed``)."""
        temp = pathlib.Path(self.config.temp_dir) if self.config.temp_dir else None
        targets = [disk.sibling(destination)] if beside_only else [destination]
        if not beside_only:
            targets.append(disk.sibling(destination))
        for target in targets:
            disk.remove_placed(
                target, owner=owner, state_dir=self.state_dir, root=self.root, temp_dir=temp
            )


def _complete(destination: pathlib.Path, state_dir: pathlib.Path) -> bool:
    stored = manifest.load(destination, state_dir=state_dir)
    return stored is not None and manifest.matches_disk(stored)


def _has_agent_files(path: str, state_dir: pathlib.Path) -> bool:
    """Whether anything at ``path`` was put there by this agent (manifest, partial files,
    a next version)."""
    destination = pathlib.Path(path)
    return (
        manifest.manifest_path(destination, state_dir=state_dir).exists()
        or (destination / staging.STAGING_NAME).exists()
        or disk.sibling(destination).exists()
    )


def _record(model: spec.ModelSpec, *, owned: bool) -> disk.Record:
    ref = model.ref
    return disk.Record(
        kind=ref.kind,
        namespace=ref.namespace,
        name=ref.name,
        uid=ref.uid,
        config_key=ref.configmap_key,
        label_key=ref.label_key,
        uri=model.storage_uri,
        path=model.path,
        owned=owned and model.scheme in ("hf", "oci"),
        reserve=model.reserve,
    )


def _progress_adapter(
    sink: Callable[[report.Progress], None] | None,
    activity: Callable[[], None] | None,
) -> Callable[[pipeline.Progress], None] | None:
    if sink is None and activity is None:
        return None

    def adapt(progress: pipeline.Progress) -> None:
        if activity is not None:
            activity()
        if sink is None:
            return
        sink(
            report.Progress(
                phase=progress.phase,
                total_bytes=progress.total_bytes,
                completed_bytes=progress.completed_bytes,
                total_files=progress.total_files,
                completed_files=progress.completed_files,
                speed_bytes_per_sec=progress.speed_bytes_per_sec,
                bytes_by_source=progress.bytes_by_source,
            )
        )

    return adapt
