"""One model, start to finish: pin, plan, download, verify, place, analyse, record.

``pull`` is the whole job for one destination; the agent and ``model-agent pull`` both call it.
A complete model (its manifest matches the disk) returns at once: no network, no hashing.
Otherwise: the backend pins the source, the plan is filtered (allow/ignore, default skips,
TensorRT-LLM shape) and every name is checked for safety before a byte is written, disk space
is checked, then ``concurrency`` lanes each take the next file (large ones in ranged parts,
on the engine's transfer threads); each file is hashed as its bytes arrive, fsynced and
renamed into place. A file
that already sits at its final path with the right size is hashed instead of downloaded. A
checksum mismatch re-downloads the file up to ``download_retry`` times. After the last file,
the model is analysed (a file the analyser cannot read is reported in ``analysisError``, never
a failure) and the manifest written outside the model directory; only then is the staging
directory (whose ``plan.json`` named every planned file) removed, so what a pull placed is
always listed somewhere a delete reads. No directory is created, and no file placed or
removed, through a symlink that leads out of ``request.root`` (``trust.confine``).

Logs (the admin guide greps them): ``downloading file``, ``verification passed|failed``, and
``Failed to pull`` at ERROR. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import pathlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import aiofiles.os

from model_agent import backends, blocking, errors, manifest, metrics, planning, settings, uris
from model_agent.download import connections as engine_connections
from model_agent.download import engine, files, loops, staging
from model_agent.peers import holdings
from model_agent.peers import service as peer_service
from model_agent.storage import base
from model_agent.trust import confine

__all__ = [
    "Admit",
    "FileProgress",
    "Progress",
    "PullRequest",
    "PullResult",
    "analyse_directory",
    "pull",
]

log = logging.getLogger("model_agent.pipeline")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PullRequest:
    uri: str
    destination: pathlib.Path
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    token: str | None = dataclasses.field(default=None, repr=False)
    model_format: str | None = None
    serving: bool = True
    shape: str | None = None
    analyse: bool = True
    metrics_labels: metrics.ModelLabels | None = None
    #: The ConfigMap key of the model; ``artifact.parentPath`` maps it to the destination,
    #: and the manifest records it as the owner of the files.
    config_key: str | None = None
    #: The directory no write may leave (``--models-root-dir``); None: the destination.
    root: pathlib.Path | None = None


Progress = files.Progress
FileProgress = files.FileProgress

#: Admission into the disk: given ``(directory, bytes, files)`` still to write on each
#: filesystem and what is pulled, hold room for them for the ``async with`` body, or raise
#: ``NoSpaceError`` (the agent's hook may wait for room first).
Admit = Callable[
    [Sequence[tuple[str, int, int]], str], contextlib.AbstractAsyncContextManager[None]
]


@contextlib.asynccontextmanager
async def check_now(needs: Sequence[tuple[str, int, int]], what: str) -> AsyncIterator[None]:
    """The admission of a lone pull: the space must be free now."""
    for directory, needed, _ in needs:
        await staging.check_space(pathlib.Path(directory), needed, what=what)
    yield


@dataclasses.dataclass(frozen=True)
class PullResult:
    config: dict[str, Any]
    revision: str
    bytes_downloaded: int
    files: int
    bytes_hashed: int = 0
    #: The size of the whole placed model (every file), downloaded or already complete.
    bytes_total: int = 0


def _filters_shapes(request: PullRequest) -> bool:
    return (request.model_format or "").lower() == "tensorrtllm" and request.serving


def request_key(request: PullRequest) -> str:
    """Digest of what decides the file set (never the token): the URI, ``allow``/``ignore``,
    and for a TensorRT-LLM serving model the GPU shape it is filtered for. The model format
    counts only through the filter, so filling ``modelFormat`` (spec write-back) on a
    safetensors model does not make its files a different set."""
    fields = {
        "uri": request.uri,
        "allow": request.parameters.get("allow", ""),
        "ignore": request.parameters.get("ignore", ""),
        "shapeFilter": _filters_shapes(request),
        "shape": (request.shape or "") if _filters_shapes(request) else "",
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _legacy_request_key(request: PullRequest) -> str:
    """The key manifests written before 0.2 carry (the raw format and flags)."""
    fields = {
        "uri": request.uri,
        "allow": request.parameters.get("allow", ""),
        "ignore": request.parameters.get("ignore", ""),
        "modelFormat": request.model_format or "",
        "serving": request.serving,
        "shape": request.shape or "",
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def same_request(stored: manifest.Manifest, request: PullRequest) -> bool:
    """Whether the files recorded in ``stored`` are the set ``request`` asks for."""
    return stored.request_key in (request_key(request), _legacy_request_key(request))


def renew_key(stored: manifest.Manifest, request: PullRequest, *, state_dir: pathlib.Path) -> None:
    """Rewrite a manifest that matched by its pre-0.2 key with the current one, so that a later
    format fill (spec write-back) is not taken for a new file set (blocking)."""
    key = request_key(request)
    if stored.request_key != key:
        manifest.save(dataclasses.replace(stored, request_key=key), state_dir=state_dir)


def _shape_filter(request: PullRequest, names: list[str], known: Iterable[str]) -> list[str]:
    """OME's TensorRT-LLM filter, plus ours: a file is this shape's when ``/<alias>/`` occurs
    anywhere in its *object name*, the URI's prefix included (so a prefix that itself ends in
    the shape folder keeps everything below it); ``INSTANCE_TYPE_MAP``'s aliases count as
    shape folders; shape-agnostic files outside every shape folder are kept (ours)."""
    from model_agent import shapes

    parsed = uris.parse(request.uri)
    prefix = getattr(parsed, "prefix", "").strip("/")
    full = {(f"/{prefix}/{name}" if prefix else f"/{name}"): name for name in names}
    kept = shapes.filter_tensorrt_files(list(full), request.shape or "", known_aliases=known)
    return [full[name] for name in kept]


def _select(
    request: PullRequest, plan: base.Plan, known: Iterable[str] = ()
) -> list[base.RemoteFile]:
    names = planning.select(
        [f.path for f in plan.files],
        allow=planning.parse_patterns(request.parameters.get("allow")),
        ignore=planning.parse_patterns(request.parameters.get("ignore")),
    )
    if _filters_shapes(request):
        if request.shape:
            names = _shape_filter(request, names, known)
        else:
            log.warning(
                "no GPU shape known: TensorRT-LLM shape filtering is off for %s", request.uri
            )
    chosen = set(names)
    files = [f for f in plan.files if f.path in chosen]
    if not files:
        raise errors.NotFoundError(f"no files to download from {request.uri} after filtering")
    return files


def _plan(
    request: PullRequest, plan: base.Plan, known: Iterable[str] = ()
) -> list[base.RemoteFile]:
    """The files to fetch, largest first (blocking: CPU only)."""
    return sorted(_select(request, plan, known), key=lambda f: -f.size)


async def pull(
    request: PullRequest,
    settings: settings.Settings,
    *,
    state_dir: pathlib.Path,
    metrics: metrics.Metrics | None = None,
    progress: Callable[[Progress], None] | None = None,
    admit: Admit = check_now,
    peering: peer_service.Peering | None = None,
) -> PullResult:
    """Make ``request.destination`` hold the verified model; see the module docstring.
    With ``peering`` (and a ``config_key``), what is written is served to the other agents
    while it arrives, and bytes may come from them (every file still verified)."""
    absolute = pathlib.Path(request.destination).absolute()  # noqa: ASYNC240 (no I/O)
    request = dataclasses.replace(request, destination=absolute)
    started = time.monotonic()
    labels = request.metrics_labels
    try:
        result = await _pull(request, settings, state_dir, metrics, progress, admit, peering)
    except errors.AgentError as exc:
        log.error("Failed to pull %s: %s", request.uri, exc, extra={"reason": exc.reason})
        if metrics is not None and labels is not None:
            metrics.download_failed(labels, reason=exc.reason)
        raise
    except (OSError, ValueError) as exc:
        log.error("Failed to pull %s: %s: %s", request.uri, type(exc).__name__, exc)
        if metrics is not None and labels is not None:
            metrics.download_failed(labels, reason="Error")
        raise
    if metrics is not None and labels is not None and result.bytes_downloaded + result.bytes_hashed:
        metrics.download_succeeded(
            labels, seconds=time.monotonic() - started, nbytes=result.bytes_total
        )
    return result


def analyse_directory(directory: pathlib.Path, what: str) -> dict[str, Any]:
    """The ``config`` object of a model folder. A file the analyser cannot read (malformed,
    hostile, unknown) gives ``analysisError`` (naming the file and the reason) and
    ``analysisErrorReason`` instead of raising: the files are verified and a runtime may well
    load them, so, as with OME, an analysis problem never fails a model."""
    from model_agent import inspection

    try:
        return dict(inspection.inspect_directory(directory))
    except errors.ModelInfoError as exc:
        log.warning("analysis failed for %s: %s", what, exc)
        return {"analysisError": str(exc), "analysisErrorReason": exc.reason}
    except (ValueError, TypeError, KeyError, RecursionError, MemoryError) as exc:
        detail = f"{directory}: {type(exc).__name__}: {str(exc)[:200]}"
        log.warning("analysis failed for %s: %s", what, detail)
        return {"analysisError": detail, "analysisErrorReason": "AnalyserError"}


async def _analyse(request: PullRequest, revision: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.analyse:
        config = await asyncio.to_thread(analyse_directory, request.destination, request.uri)
    parent = {request.config_key: str(request.destination)} if request.config_key else {}
    config["artifact"] = {"sha": revision, "parentPath": parent, "childrenPaths": []}
    return config


async def _pull(
    request: PullRequest,
    config: settings.Settings,
    state_dir: pathlib.Path,
    recorder: metrics.Metrics | None,
    callback: Callable[[Progress], None] | None,
    admit: Admit = check_now,
    peering: peer_service.Peering | None = None,
) -> PullResult:
    key = request_key(request)
    stored = await manifest.read(request.destination, state_dir=state_dir)
    if stored is not None and stored.owner not in (None, request.config_key):
        stored = None  # placed for another model: not ours to reuse or to prune
    if (
        stored is not None
        and same_request(stored, request)
        and await asyncio.to_thread(manifest.matches_disk, stored)
    ):
        await blocking.to_end(renew_key, stored, request, state_dir=state_dir)
        result_config = dict(stored.config) if stored.config is not None else None
        if result_config is None:
            result_config = await _analyse(request, stored.revision)
            await manifest.write(
                dataclasses.replace(stored, config=result_config), state_dir=state_dir
            )
        log.info("model at %s is complete (manifest matches the disk)", request.destination)
        total = sum(e.size for e in stored.files)
        return PullResult(result_config, stored.revision, 0, len(stored.files), 0, total)

    tracker = files.Tracker(callback)
    tracker.emit(force=True)
    backend = backends.for_uri(
        request.uri, config, parameters=request.parameters, token=request.token
    )
    live: holdings.Live | None = None
    if peering is not None and request.config_key is not None:
        live = peering.registry.start(request.config_key, request.destination)
    try:
        plan = await backend.pin()
        # Pure CPU work, linear in the listing, but 50,000 names still take ~0.2 s: in a
        # thread, so the loop keeps ticking (the GIL is handed over every 5 ms).
        chosen = await asyncio.to_thread(
            _plan, request, plan, tuple(config.instance_type_map.values())
        )
        log.info(
            "pinned %s at %s: %d files, %d bytes",
            request.uri,
            plan.revision,
            len(chosen),
            sum(f.size for f in chosen),
        )
        sharing = None
        if peering is not None and live is not None:
            sharing = peer_service.Share(peering, live, plan.revision, request.config_key or "")
        worker = await _transfer(
            request, config, backend, chosen, tracker, recorder, admit, sharing
        )
        await blocking.to_end(
            _remove_dropped, request.destination, stored, {f.path for f in chosen}
        )
        record = manifest.Manifest(
            destination=str(request.destination),
            uri=request.uri,
            request_key=key,
            revision=plan.revision,
            files=tuple(sorted(worker.entries, key=lambda e: e.path)),
            owner=request.config_key,
        )
        await manifest.write(record, state_dir=state_dir)
    finally:
        await backend.close()
        if peering is not None and live is not None and request.config_key is not None:
            # Served as a pull until its manifest is written, from the manifest after.
            peering.registry.finish(request.config_key, live)
    await blocking.to_end(_staging(request, config).remove)
    result_config = await _analyse(request, plan.revision)
    await manifest.write(dataclasses.replace(record, config=result_config), state_dir=state_dir)
    return PullResult(
        result_config,
        plan.revision,
        worker.fetcher.bytes_received,
        len(record.files),
        worker.verifier.bytes_hashed,
        sum(e.size for e in record.files),
    )


async def _transfer(
    request: PullRequest,
    config: settings.Settings,
    backend: base.Backend,
    chosen: list[base.RemoteFile],
    tracker: files.Tracker,
    recorder: metrics.Metrics | None,
    admit: Admit = check_now,
    sharing: peer_service.Share | None = None,
) -> files.Worker:
    """Download, verify and place ``chosen`` into the destination; returns the worker (its
    manifest entries and counters). The staging directory is gone on success, and on a
    permanent failure with ``--cleanup-temp``; otherwise it stays for resume."""
    tracker.total_bytes, tracker.total_files = sum(f.size for f in chosen), len(chosen)
    options = engine.Options(
        multipart_concurrency=config.multipart_concurrency,
        multipart_threshold=config.multipart_threshold,
        stall_timeout=config.stall_timeout,
        part_retries=config.download_retry + 2,
        egress=config.egress,
    )
    labels = request.metrics_labels

    def on_bytes(nbytes: int, source: str) -> None:
        tracker.add(nbytes, source)
        if recorder is not None and labels is not None:
            recorder.received(labels, nbytes, source=source)

    def on_rate_limited(wait: float) -> None:
        if recorder is not None and labels is not None:
            recorder.rate_limited(labels, wait_seconds=wait)

    if request.root is not None:
        await blocking.to_end(confine.make_dirs, request.root, request.destination)
    else:
        await blocking.finish(aiofiles.os.makedirs(request.destination, exist_ok=True))
    stage = _staging(request, config)
    connections = config.concurrency * config.multipart_concurrency + 2
    threads = min(config.download_threads or engine.default_threads(), connections)
    session_options = engine_connections.SessionOptions(
        connections=connections // threads + 2,
        read_buffer=options.read_buffer,
        egress=config.egress,
    )
    async with stage:
        try:
            async with (
                loops.Pool(threads=threads, options=session_options) as pool,
                contextlib.AsyncExitStack() as admitted,
            ):
                await blocking.to_end(stage.remove_stale, {f.path for f in chosen})
                await blocking.to_end(stage.record_plan, {f.path for f in chosen})
                what = f"staging {request.uri}"
                needs = await asyncio.to_thread(
                    files.space_needs, stage, request.destination, chosen
                )
                await admitted.enter_async_context(admit(needs, what))
                router = None
                if sharing is not None:  # admitted: only now does this node take part
                    sharing.share(chosen, tracker)
                    router = await admitted.enter_async_context(sharing.router())
                fetcher = engine.Engine(
                    backend,
                    pool,
                    options,
                    on_bytes=on_bytes,
                    on_rate_limited=on_rate_limited,
                    router=router,
                )
                worker = files.Worker(
                    destination=request.destination,
                    stage=stage,
                    fetcher=fetcher,
                    tracker=tracker,
                    concurrency=config.concurrency,
                    download_retry=config.download_retry,
                    same_filesystem=await stage.same_filesystem(),
                    recorder=recorder,
                    labels=labels,
                    blame=router,
                )
                if sharing is not None:
                    sharing.follow(worker)
                tracker.completed_bytes += await asyncio.to_thread(
                    files.resumed_bytes, stage, chosen
                )
                tracker.phase = "downloading"
                tracker.emit(force=True)
                # ``concurrency`` lanes take the next file when they are free: tasks, buffers
                # and staged files exist for the files in flight only, never per file.
                queue = iter(chosen)

                async def lane() -> None:
                    for file in queue:
                        await worker.file(file)

                try:
                    async with asyncio.TaskGroup() as group:
                        for _ in range(min(config.concurrency, len(chosen))):
                            group.create_task(lane())
                except BaseExceptionGroup as failure:
                    raise engine.first_error(failure) from None
        except errors.AgentError as exc:
            if config.cleanup_temp and not exc.retryable:
                await blocking.to_end(stage.remove)
            raise
        tracker.phase = "finalizing"
        tracker.completed_bytes = tracker.total_bytes
        tracker.emit(force=True)
    return worker  # the caller removes the staging directory once the manifest is written


def _staging(request: PullRequest, config: settings.Settings) -> staging.Staging:
    temp_dir = pathlib.Path(config.temp_dir) if config.temp_dir else None
    return staging.Staging(request.destination, temp_dir=temp_dir)


def _remove_dropped(
    destination: pathlib.Path, stored: manifest.Manifest | None, keep: set[str]
) -> None:
    """Delete files a previous pull placed (its manifest) that the new plan no longer has;
    nothing else, and never through a symlink out of the destination (blocking)."""
    if stored is None:
        return
    dropped = []
    for entry in stored.files:
        if entry.path not in keep:
            try:
                name = planning.safe_relative_path(entry.path)
                if confine.unlink_inside(destination, name, root=destination):
                    dropped.append(name)
            except (OSError, errors.UnsafePathError) as exc:
                log.warning("kept %s (no longer in the source): %s", entry.path, exc)
    confine.prune_empty(destination, dropped, root=destination)
