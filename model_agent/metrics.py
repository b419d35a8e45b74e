"""Prometheus metrics of the agent: names and labels as OME registers them (CONTRACT.md).

One ``Metrics`` object per agent, bound to a ``CollectorRegistry`` (tests pass a fresh one).
Only the agent and the pipeline record; everything else reads ``/metrics``. A model is
labelled by ``ModelLabels``: (model_type, namespace, name) with model_type ``BaseModel`` or
``ClusterBaseModel`` and an empty namespace for cluster models.

Besides the OME names, the registry carries the Python process, platform and GC collectors,
a model-size histogram with buckets up to terabytes, the event-loop lag, Kubernetes Event
posting results, and the free/total bytes of the filesystems the agent writes to (read at
scrape time), so alerts can fire before a disk fills.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import prometheus_client as prom
from prometheus_client import metrics_core
from prometheus_client import registry as prom_registry

__all__ = ["Metrics", "ModelLabels"]


class ModelLabels(NamedTuple):
    model_type: str
    namespace: str
    name: str


_MODEL = ("model_type", "namespace", "name")

#: Model sizes: from a 100 MB embedding model to a 2 TB checkpoint.
SIZE_BUCKETS = tuple(
    float(gb * 1000**3) for gb in (0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
)


class _FilesystemCollector(prom_registry.Collector):
    """Free and total bytes of the watched filesystems, read with ``statvfs`` at scrape time."""

    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._lock = threading.Lock()

    def watch(self, path: str) -> None:
        with self._lock:
            self._paths.add(path)

    def collect(self) -> Iterator[metrics_core.Metric]:
        free = metrics_core.GaugeMetricFamily(
            "model_agent_filesystem_free_bytes",
            "Bytes available to the agent on the filesystem of a models or temp directory.",
            labels=["path"],
        )
        size = metrics_core.GaugeMetricFamily(
            "model_agent_filesystem_size_bytes",
            "Total bytes of the filesystem of a models or temp directory.",
            labels=["path"],
        )
        with self._lock:
            paths = sorted(self._paths)
        for path in paths:
            try:
                st = os.statvfs(path)
            except OSError:
                continue  # a missing root is /healthz's business, not a scrape error
            free.add_metric([path], st.f_bavail * st.f_frsize)
            size.add_metric([path], st.f_blocks * st.f_frsize)
        yield free
        yield size


class Metrics:
    """Every metric the agent exposes. Method names are the recording API; keep them stable."""

    def __init__(self, registry: prom.CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        r = self.registry
        self.downloads_success = prom.Counter(
            "model_agent_downloads_success_total",
            "Models downloaded and verified.",
            _MODEL,
            registry=r,
        )
        self.downloads_failed = prom.Counter(
            "model_agent_downloads_failed_total",
            "Model downloads that failed.",
            (*_MODEL, "reason"),
            registry=r,
        )
        self.verifications = prom.Counter(
            "model_agent_verifications_total",
            "File verifications by result.",
            (*_MODEL, "result"),
            registry=r,
        )
        self.verification_checksums = prom.Counter(
            "model_agent_verification_checksums_total",
            "Files verified, by the checksum algorithm used (size_only: none was offered).",
            (*_MODEL, "algorithm"),
            registry=r,
        )
        self.md5_failed = prom.Counter(
            "model_agent_md5_checksum_failed_total",
            "Files whose checksum did not match.",
            _MODEL,
            registry=r,
        )
        self.rate_limits = prom.Counter(
            "model_agent_rate_limit_total",
            "Requests answered 429 by the storage.",
            _MODEL,
            registry=r,
        )
        self.download_duration = prom.Histogram(
            "model_agent_download_duration_seconds",
            "Time to download and verify a model.",
            _MODEL,
            registry=r,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800),
        )
        self.verification_duration = prom.Histogram(
            "model_agent_verification_duration_seconds",
            "Time to verify a model's files.",
            _MODEL,
            registry=r,
            buckets=(0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
        )
        self.download_bytes = prom.Counter(
            "model_agent_download_bytes_total",
            "Bytes received, by source: origin (the storage) or peer (another agent).",
            (*_MODEL, "source"),
            registry=r,
        )
        self.peer_served_bytes = prom.Counter(
            "model_agent_peer_served_bytes_total",
            "Bytes of the ranges this agent's peer server answered.",
            registry=r,
        )
        self.peer_requests = prom.Counter(
            "model_agent_peer_requests_total",
            "Requests to this agent's peer server, by result.",
            ("result",),
            registry=r,
        )
        self.peer_rejections = prom.Counter(
            "model_agent_peer_rejections_total",
            "Peers this agent stopped fetching a model from, by reason.",
            ("reason",),
            registry=r,
        )
        self.rate_limit_wait = prom.Histogram(
            "model_agent_rate_limit_wait_seconds",
            "Time waited because of rate limiting.",
            _MODEL,
            registry=r,
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
        )
        self.active_workers = prom.Gauge(
            "model_agent_active_workers", "Model tasks running now.", registry=r
        )
        self.task_queue_depth = prom.Gauge(
            "model_agent_task_queue_depth", "Model tasks waiting for a worker.", registry=r
        )
        self.configmap_operations = prom.Counter(
            "model_agent_configmap_operations_total",
            "ConfigMap writes by operation and result.",
            ("operation", "result"),
            registry=r,
        )
        self.in_progress_bytes = prom.Gauge(
            "model_agent_download_in_progress_bytes",
            "Bytes downloaded so far by a running pull.",
            _MODEL,
            registry=r,
        )
        # --- additions beyond OME's names (kept stable too) ---
        self.model_size = prom.Histogram(
            "model_agent_model_size_bytes",
            "Size of each model downloaded and verified.",
            ("model_type",),
            registry=r,
            buckets=SIZE_BUCKETS,
        )
        self.events = prom.Counter(
            "model_agent_events_total",
            "Kubernetes Events about models: posted, deduplicated, rate_limited or failed.",
            ("reason", "result"),
            registry=r,
        )
        self.analysis_errors = prom.Counter(
            "model_agent_analysis_errors_total",
            "Verified models whose config or weights headers could not be analysed "
            "(reported Ready with config.analysisError).",
            ("model_type", "namespace", "name"),
            registry=r,
        )
        self.loop_lag = prom.Gauge(
            "model_agent_event_loop_lag_seconds",
            "Latest measured delay of the asyncio event loop.",
            registry=r,
        )
        self.last_success = prom.Gauge(
            "model_agent_last_success_timestamp_seconds",
            "Unix time of the last model that became Ready on this node.",
            registry=r,
        )
        # --- the node's disk (model_agent.disk) ---
        self.model_disk = prom.Gauge(
            "model_agent_model_disk_bytes",
            "Bytes on disk of each model placed on this node (measured every disk scan).",
            _MODEL,
            registry=r,
        )
        self.partial_bytes = prom.Gauge(
            "model_agent_disk_partial_bytes",
            "Bytes on disk of partial downloads (staging areas) under the models root.",
            registry=r,
        )
        self.orphan_bytes = prom.Gauge(
            "model_agent_disk_orphan_bytes",
            "Bytes on disk of directories under the models root that no model owns.",
            registry=r,
        )
        self.orphan_directories = prom.Gauge(
            "model_agent_disk_orphan_directories",
            "Directories under the models root that no model owns.",
            registry=r,
        )
        self.disk_promised = prom.Gauge(
            "model_agent_disk_promised_bytes",
            "Bytes promised to running downloads (admitted, not yet finished).",
            registry=r,
        )
        self.disk_waiting = prom.Gauge(
            "model_agent_disk_waiting_downloads",
            "Downloads waiting because what they need does not fit in the free space.",
            registry=r,
        )
        self.disk_waiting_bytes = prom.Gauge(
            "model_agent_disk_waiting_bytes",
            "Bytes needed by the downloads waiting for disk space.",
            registry=r,
        )
        self.disk_removed = prom.Counter(
            "model_agent_disk_cleanup_removed",
            "Directories removed by a cleanup policy, by kind (partial or orphan).",
            ("kind",),
            registry=r,
        )
        self._filesystems = _FilesystemCollector()
        r.register(self._filesystems)
        self._measured: set[ModelLabels] = set()
        prom.ProcessCollector(registry=r)
        prom.PlatformCollector(registry=r)
        prom.GCCollector(registry=r)

    # --- recording API --------------------------------------------------------------------

    def download_succeeded(
        self, model: ModelLabels, *, seconds: float, nbytes: int | None = None
    ) -> None:
        """A model is downloaded and verified; ``nbytes`` (its total size) feeds the
        size histogram when given."""
        self.downloads_success.labels(*model).inc()
        self.download_duration.labels(*model).observe(seconds)
        if nbytes is not None:
            self.model_size.labels(model.model_type).observe(nbytes)
        self.last_success.set_to_current_time()
        self._forget_progress(model)

    def download_failed(self, model: ModelLabels, *, reason: str) -> None:
        self.downloads_failed.labels(*model, reason).inc()
        self._forget_progress(model)

    def verified(
        self, model: ModelLabels, *, result: str, seconds: float, algorithm: str | None = None
    ) -> None:
        """``result``: ``success``, ``failure`` or ``size_only`` (no checksum was available);
        ``algorithm``: the checksum a passed file was verified with (None: size only)."""
        self.verifications.labels(*model, result).inc()
        if result != "failure":
            self.verification_checksums.labels(*model, algorithm or "size_only").inc()
        self.verification_duration.labels(*model).observe(seconds)
        if result == "failure":
            self.md5_failed.labels(*model).inc()

    def rate_limited(self, model: ModelLabels, *, wait_seconds: float) -> None:
        self.rate_limits.labels(*model).inc()
        self.rate_limit_wait.labels(*model).observe(wait_seconds)

    def received(self, model: ModelLabels, nbytes: int, *, source: str = "origin") -> None:
        """``source``: ``origin`` or ``peer``."""
        self.download_bytes.labels(*model, source).inc(nbytes)
        self.in_progress_bytes.labels(*model).inc(nbytes)

    def peer_served(self, result: str, nbytes: int = 0) -> None:
        """One peer request answered: ``ok`` (``nbytes`` served), ``unauthorized``,
        ``not_found``, ``conflict`` or ``unsatisfiable``."""
        self.peer_requests.labels(result).inc()
        if nbytes:
            self.peer_served_bytes.inc(nbytes)

    def peer_rejected(self, reason: str) -> None:
        """A peer dropped for a model: ``corrupt``, ``unreachable`` or ``error``."""
        self.peer_rejections.labels(reason).inc()

    def configmap_operation(self, operation: str, result: str) -> None:
        self.configmap_operations.labels(operation, result).inc()

    def event_recorded(self, reason: str, result: str) -> None:
        """``result``: ``posted``, ``deduplicated``, ``rate_limited`` or ``failed``."""
        self.events.labels(reason, result).inc()

    def analysis_failed(self, model: ModelLabels) -> None:
        self.analysis_errors.labels(*model).inc()

    def loop_lag_observed(self, seconds: float) -> None:
        self.loop_lag.set(seconds)

    def disk_admission(self, *, promised: int, waiting: int, waiting_bytes: int) -> None:
        self.disk_promised.set(promised)
        self.disk_waiting.set(waiting)
        self.disk_waiting_bytes.set(waiting_bytes)

    def disk_usage(
        self, *, models: Mapping[ModelLabels, int], partial: int, orphan: int, orphans: int
    ) -> None:
        """One disk scan's result; models no longer measured lose their series."""
        for labels in self._measured - set(models):
            with contextlib.suppress(KeyError):
                self.model_disk.remove(*labels)
        for labels, nbytes in models.items():
            self.model_disk.labels(*labels).set(nbytes)
        self._measured = set(models)
        self.partial_bytes.set(partial)
        self.orphan_bytes.set(orphan)
        self.orphan_directories.set(orphans)

    def disk_cleaned(self, kind: str) -> None:
        """``kind``: ``partial`` or ``orphan``."""
        self.disk_removed.labels(kind).inc()

    def watch_filesystem(self, path: str) -> None:
        """Expose free/total bytes of ``path``'s filesystem (models root, temp dir)."""
        self._filesystems.watch(path)

    def _forget_progress(self, model: ModelLabels) -> None:
        try:
            self.in_progress_bytes.remove(*model)
        except KeyError:
            pass
