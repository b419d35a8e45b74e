"""One model, start to finish: pin, plan, download, verify, place, analyse, record.

``pull`` is the whole job for one destination; the agent and ``model-agent pull`` both call it.
A complete model (its manifest matches the disk) returns at once: no network, no hashing.
Otherwise: the backend pins the source, the plan is filtered (allow/ignore, default skips,
TensorRT-LLM shape) and every name is checked for safety before a byte is written, disk space
is checked, then files download ``concurrency`` at a time (large ones in ranged parts), each
is verified in a hashing thread while others download, fsynced and renamed into place. A file
that already sits at its final path with the right size is hashed instead of downloaded. A
checksum mismatch re-downloads the file up to ``download_retry`` times. After the last file,
the model is analysed and the manifest written outside the model directory.

Logs (the admin guide greps them): ``downloading file``, ``verification passed|failed``, and
``Failed to pull`` at ERROR. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from model_agent import errors, manifest, metrics, planning, settings, uris, verify
from model_agent.download import engine, staging
from model_agent.storage import base

__all__ = [
    "Progress",
    "PullRequest",
    "PullResult",
    "forget",
    "is_complete",
    "load_config",
    "pull",
]

log = logging.getLogger("model_agent.pipeline")

_PROGRESS_INTERVAL = 0.5


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
    #: The ConfigMap key of the model; ``artifact.parentPath`` maps it to the destination.
    config_key: str | None = None


@dataclasses.dataclass(frozen=True)
class Progress:
    phase: str  # "scanning" | "downloading" | "finalizing"
    total_bytes: int
    completed_bytes: int
    total_files: int
    completed_files: int
    speed_bytes_per_sec: float


@dataclasses.dataclass(frozen=True)
class PullResult:
    config: dict[str, Any]
    revision: str
    bytes_downloaded: int
    files: int
    bytes_hashed: int = 0


def is_complete(destination: pathlib.Path, *, state_dir: pathlib.Path) -> bool:
    stored = manifest.load(destination, state_dir=state_dir)
    return stored is not None and manifest.matches_disk(stored)


def load_config(destination: pathlib.Path, *, state_dir: pathlib.Path) -> dict[str, Any] | None:
    stored = manifest.load(destination, state_dir=state_dir)
    return dict(stored.config) if stored is not None and stored.config is not None else None


def forget(destination: pathlib.Path, *, state_dir: pathlib.Path) -> None:
    manifest.forget(destination, state_dir=state_dir)


def request_key(request: PullRequest) -> str:
    """Digest of what decides the file set (never the token)."""
    fields = {
        "uri": request.uri,
        "allow": request.parameters.get("allow", ""),
        "ignore": request.parameters.get("ignore", ""),
        "modelFormat": request.model_format or "",
        "serving": request.serving,
        "shape": request.shape or "",
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class _Tracker:
    """Byte and file counters, the speed estimate and the throttled progress callback."""

    def __init__(self, callback: Callable[[Progress], None] | None) -> None:
        self._callback = callback
        self.phase = "scanning"
        self.total_bytes = self.completed_bytes = self.received = 0
        self.total_files = self.completed_files = 0
        self._window: tuple[float, int] = (time.monotonic(), 0)
        self._speed = 0.0
        self._emitted = 0.0

    def add(self, nbytes: int) -> None:
        self.received += nbytes
        self.completed_bytes += nbytes
        self.emit()

    def emit(self, *, force: bool = False) -> None:
        now = time.monotonic()
        started, base_bytes = self._window
        if now - started >= 1.0:
            self._speed = (self.received - base_bytes) / (now - started)
            self._window = (now, self.received)
        if self._callback is None or (not force and now - self._emitted < _PROGRESS_INTERVAL):
            return
        self._emitted = now
        self._callback(
            Progress(
                self.phase,
                self.total_bytes,
                min(self.completed_bytes, self.total_bytes),
                self.total_files,
                self.completed_files,
                round(self._speed, 1),
            )
        )


def _backend(request: PullRequest, config: settings.Settings) -> base.Backend:
    parsed = uris.parse(request.uri)
    if parsed.scheme == "hf":
        from model_agent.storage import huggingface

        token = request.parameters.get("token") or request.token or config.hf_token
        endpoint = request.parameters.get("endpoint") or config.hf_endpoint
        return huggingface.HuggingFaceBackend(request.uri, endpoint=endpoint, token=token)
    raise errors.UnsupportedStorageError(
        f"model-agent pull does not download {parsed.scheme}:// sources yet ({request.uri})"
    )


def _select(request: PullRequest, plan: base.Plan) -> list[base.RemoteFile]:
    names = planning.select(
        [f.path for f in plan.files],
        allow=planning.parse_patterns(request.parameters.get("allow")),
        ignore=planning.parse_patterns(request.parameters.get("ignore")),
    )
    if (request.model_format or "").lower() == "tensorrtllm" and request.serving:
        if request.shape:
            from model_agent import shapes

            names = shapes.filter_tensorrt_files(names, request.shape)
        else:
            log.warning(
                "no GPU shape known: TensorRT-LLM shape filtering is off for %s", request.uri
            )
    chosen = set(names)
    files = [f for f in plan.files if f.path in chosen]
    if not files:
        raise errors.NotFoundError(f"no files to download from {request.uri} after filtering")
    return files


def _final_path(destination: pathlib.Path, name: str) -> pathlib.Path:
    final = destination / planning.safe_relative_path(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(destination)
    if os.path.commonpath([root, os.path.realpath(final.parent)]) != root:
        raise errors.UnsafePathError(f"{name} would be written outside {destination}")
    return final


class _Run:
    """State of one slow-path pull."""

    def __init__(
        self,
        request: PullRequest,
        config: settings.Settings,
        stage: staging.Staging,
        fetcher: engine.Engine,
        tracker: _Tracker,
        recorder: metrics.Metrics | None,
    ) -> None:
        self.request, self.config, self.stage = request, config, stage
        self.fetcher, self.tracker, self.recorder = fetcher, tracker, recorder
        self.verifier = verify.Verifier(parallel=2)
        self.slots = asyncio.Semaphore(config.concurrency)
        self.same_fs = stage.same_filesystem()
        self.entries: list[manifest.Entry] = []

    def _verified(self, result: str, seconds: float) -> None:
        labels = self.request.metrics_labels
        if self.recorder is not None and labels is not None:
            self.recorder.verified(labels, result=result, seconds=seconds)

    async def _adopt(self, file: base.RemoteFile, final: pathlib.Path) -> bool:
        """Keep a file already at its final path when its size and digest match."""
        expected = file.checksum
        try:
            size = (await asyncio.to_thread(os.stat, final)).st_size
            if expected is None or size != file.size:
                return False
            await self.verifier.verify(final, name=file.path, size=file.size, expected=expected)
        except (OSError, errors.ChecksumMismatchError):
            return False
        log.info("verification passed (already in place)", extra={"file": file.path})
        return True

    async def file(self, file: base.RemoteFile) -> None:
        destination = self.request.destination
        final = await asyncio.to_thread(_final_path, destination, file.path)
        expected = file.checksum
        if await self._adopt(file, final):
            self.tracker.completed_bytes += file.size
        else:
            attempts = self.config.download_retry + 1
            for attempt in range(1, attempts + 1):
                staged = await asyncio.to_thread(
                    self.stage.stage, path=file.path, size=file.size, identity=file.identity
                )
                async with self.slots:
                    if not staged.done:
                        log.info(
                            "downloading file %s (%d bytes, %d already staged)",
                            file.path,
                            file.size,
                            staged.completed_bytes,
                            extra={"file": file.path, "bytes": file.size},
                        )
                        await self.fetcher.fetch(file, staged)
                try:
                    outcome = await self.verifier.verify(
                        staged.temp_path, name=file.path, size=file.size, expected=expected
                    )
                except errors.ChecksumMismatchError as exc:
                    self._verified("failure", 0.0)
                    log.warning(
                        "verification failed (attempt %d of %d): %s",
                        attempt,
                        attempts,
                        exc,
                        extra={"file": file.path},
                    )
                    await asyncio.to_thread(staged.discard)
                    self.tracker.completed_bytes -= file.size
                    if attempt == attempts:
                        raise verify.ChecksumFailedError(
                            f"{exc} (after {attempts} downloads)"
                        ) from None
                    continue
                self._verified(outcome.result, outcome.seconds)
                log.info(
                    "verification passed for %s (%s)",
                    file.path,
                    expected.algorithm if expected else "size only",
                    extra={"file": file.path},
                )
                await asyncio.to_thread(staging.place, staged, final, same_filesystem=self.same_fs)
                break
        stat = await asyncio.to_thread(os.stat, final)
        self.entries.append(
            manifest.Entry(
                file.path, file.size, stat.st_mtime_ns, str(expected) if expected else None
            )
        )
        self.tracker.completed_files += 1
        self.tracker.emit(force=True)

    def check_space(self, files: list[base.RemoteFile]) -> None:
        needed = 0
        for file in files:
            final = self.request.destination / file.path
            try:
                if final.stat().st_size == file.size:
                    continue
            except OSError:
                pass
            kept = self.stage.resumable_bytes(
                path=file.path, size=file.size, identity=file.identity
            )
            needed += file.size - kept
        staging.check_space(self.stage.root, needed, what=f"staging {self.request.uri}")
        if not self.same_fs:
            total = sum(f.size for f in files)
            staging.check_space(self.request.destination, total, what=str(self.request.destination))


async def pull(
    request: PullRequest,
    settings: settings.Settings,
    *,
    state_dir: pathlib.Path,
    metrics: metrics.Metrics | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> PullResult:
    """Make ``request.destination`` hold the verified model; see the module docstring."""
    absolute = pathlib.Path(request.destination).absolute()  # noqa: ASYNC240 (no I/O)
    request = dataclasses.replace(request, destination=absolute)
    started = time.monotonic()
    labels = request.metrics_labels
    try:
        result = await _pull(request, settings, state_dir, metrics, progress)
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
        metrics.download_succeeded(labels, seconds=time.monotonic() - started)
    return result


async def _analyse(request: PullRequest, revision: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.analyse:
        from model_agent import inspection

        config = dict(await asyncio.to_thread(inspection.inspect_directory, request.destination))
    parent = {request.config_key: str(request.destination)} if request.config_key else {}
    config["artifact"] = {"sha": revision, "parentPath": parent, "childrenPaths": []}
    return config


async def _pull(
    request: PullRequest,
    config: settings.Settings,
    state_dir: pathlib.Path,
    recorder: metrics.Metrics | None,
    callback: Callable[[Progress], None] | None,
) -> PullResult:
    key = request_key(request)
    stored = manifest.load(request.destination, state_dir=state_dir)
    if stored is not None and stored.request_key == key and manifest.matches_disk(stored):
        result_config = dict(stored.config) if stored.config is not None else None
        if result_config is None:
            result_config = await _analyse(request, stored.revision)
            manifest.save(dataclasses.replace(stored, config=result_config), state_dir=state_dir)
        log.info("model at %s is complete (manifest matches the disk)", request.destination)
        return PullResult(result_config, stored.revision, 0, len(stored.files))

    tracker = _Tracker(callback)
    tracker.emit(force=True)
    backend = _backend(request, config)
    try:
        plan = await backend.pin()
        files = sorted(_select(request, plan), key=lambda f: -f.size)
        log.info(
            "pinned %s at %s: %d files, %d bytes",
            request.uri,
            plan.revision,
            len(files),
            sum(f.size for f in files),
        )
        tracker.total_bytes, tracker.total_files = sum(f.size for f in files), len(files)
        options = engine.Options(
            multipart_concurrency=config.multipart_concurrency,
            multipart_threshold=config.multipart_threshold,
            stall_timeout=config.stall_timeout,
            part_retries=config.download_retry + 2,
        )
        temp_dir = pathlib.Path(config.temp_dir) if config.temp_dir else None
        request.destination.mkdir(parents=True, exist_ok=True)
        stage = staging.Staging(request.destination, temp_dir=temp_dir)
        labels = request.metrics_labels

        def on_bytes(nbytes: int) -> None:
            tracker.add(nbytes)
            if recorder is not None and labels is not None:
                recorder.received(labels, nbytes)

        def on_rate_limited(wait: float) -> None:
            if recorder is not None and labels is not None:
                recorder.rate_limited(labels, wait_seconds=wait)

        connections = config.concurrency * config.multipart_concurrency + 2
        with stage:
            try:
                async with engine.new_session(connections=connections, options=options) as session:
                    fetcher = engine.Engine(
                        backend,
                        session,
                        options,
                        on_bytes=on_bytes,
                        on_rate_limited=on_rate_limited,
                    )
                    run = _Run(request, config, stage, fetcher, tracker, recorder)
                    await asyncio.to_thread(stage.remove_stale, {f.path for f in files})
                    await asyncio.to_thread(run.check_space, files)
                    for file in files:
                        tracker.completed_bytes += stage.resumable_bytes(
                            path=file.path, size=file.size, identity=file.identity
                        )
                    tracker.phase = "downloading"
                    tracker.emit(force=True)
                    async with asyncio.TaskGroup() as group:
                        for file in files:
                            group.create_task(run.file(file))
            except BaseExceptionGroup as failure:
                raise engine.first_error(failure) from None
            except errors.AgentError as exc:
                if config.cleanup_temp and not exc.retryable:
                    stage.remove()
                raise
            tracker.phase = "finalizing"
            tracker.completed_bytes = tracker.total_bytes
            tracker.emit(force=True)
            stage.remove()
    finally:
        await backend.close()
    _remove_dropped(request.destination, stored, {f.path for f in files})
    entries = sorted(run.entries, key=lambda e: e.path)
    record = manifest.Manifest(
        destination=str(request.destination),
        uri=request.uri,
        request_key=key,
        revision=plan.revision,
        files=tuple(entries),
    )
    await asyncio.to_thread(manifest.save, record, state_dir=state_dir)
    result_config = await _analyse(request, plan.revision)
    await asyncio.to_thread(
        manifest.save, dataclasses.replace(record, config=result_config), state_dir=state_dir
    )
    return PullResult(
        result_config,
        plan.revision,
        fetcher.bytes_received,
        len(entries),
        run.verifier.bytes_hashed,
    )


def _remove_dropped(
    destination: pathlib.Path, stored: manifest.Manifest | None, keep: set[str]
) -> None:
    """Delete files a previous pull placed that the new plan no longer has."""
    if stored is None:
        return
    for entry in stored.files:
        if entry.path not in keep:
            try:
                (destination / planning.safe_relative_path(entry.path)).unlink()
            except (OSError, errors.UnsafePathError):
                pass
