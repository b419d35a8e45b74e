"""Metrics recording API, read back from the registry (no sockets).

Covers: every CONTRACT name exists with the model labels; duration buckets reach hours and
size buckets reach terabytes; the in-progress bytes gauge grows with received bytes and
disappears when a pull ends (success or failure); rate-limit waits are recorded as given (not
a fixed value); a verification failure counts as a checksum failure; the process, platform and
GC collectors are on the given registry (not the global one); the filesystem collector reports
real statvfs numbers and skips a missing path; two agents' registries do not clash.
"""

from __future__ import annotations

import os
import pathlib

import prometheus_client as prom
import pytest

from model_agent import metrics

MODEL = metrics.ModelLabels("BaseModel", "team-a", "llama")
CLUSTER = metrics.ModelLabels("ClusterBaseModel", "", "mistral")
MODEL_LABELS = {"model_type": "BaseModel", "namespace": "team-a", "name": "llama"}
ORIGIN_LABELS = {**MODEL_LABELS, "source": "origin"}

CONTRACT_NAMES = (
    "model_agent_downloads_success_total",
    "model_agent_downloads_failed_total",
    "model_agent_verifications_total",
    "model_agent_md5_checksum_failed_total",
    "model_agent_rate_limit_total",
    "model_agent_download_duration_seconds",
    "model_agent_verification_duration_seconds",
    "model_agent_download_bytes_total",
    "model_agent_rate_limit_wait_seconds",
    "model_agent_active_workers",
    "model_agent_task_queue_depth",
    "model_agent_configmap_operations_total",
)


@pytest.fixture
def m() -> metrics.Metrics:
    return metrics.Metrics(prom.CollectorRegistry())


def value(m: metrics.Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return m.registry.get_sample_value(name, labels or {})


def buckets_of(m: metrics.Metrics, family_name: str) -> list[float]:
    for family in m.registry.collect():
        if family.name == family_name:
            return sorted(
                float(s.labels["le"])
                for s in family.samples
                if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
            )
    raise AssertionError(f"{family_name} not collected")


def test_every_contract_name_is_exposed_with_model_labels_after_recording(
    m: metrics.Metrics,
) -> None:
    m.download_succeeded(MODEL, seconds=12.0)
    m.download_failed(MODEL, reason="NotFound")
    m.verified(MODEL, result="failure", seconds=0.5)
    m.rate_limited(MODEL, wait_seconds=3.0)
    m.received(MODEL, 1024)
    m.configmap_operation("patch", "success")
    m.active_workers.set(2)
    m.task_queue_depth.set(7)
    exposed = prom.generate_latest(m.registry).decode()
    for name in CONTRACT_NAMES:
        assert f"\n{name}" in exposed or exposed.startswith(name), name
    assert value(m, "model_agent_downloads_success_total", MODEL_LABELS) == 1
    assert value(m, "model_agent_downloads_failed_total", {**MODEL_LABELS, "reason": "NotFound"})
    assert value(m, "model_agent_verifications_total", {**MODEL_LABELS, "result": "failure"}) == 1
    assert value(m, "model_agent_md5_checksum_failed_total", MODEL_LABELS) == 1
    assert value(m, "model_agent_download_bytes_total", ORIGIN_LABELS) == 1024
    assert (
        value(
            m, "model_agent_configmap_operations_total", {"operation": "patch", "result": "success"}
        )
        == 1
    )
    assert value(m, "model_agent_active_workers") == 2
    assert value(m, "model_agent_task_queue_depth") == 7


def test_cluster_models_have_an_empty_namespace_label(m: metrics.Metrics) -> None:
    m.download_succeeded(CLUSTER, seconds=1.0)
    labels = {"model_type": "ClusterBaseModel", "namespace": "", "name": "mistral"}
    assert value(m, "model_agent_downloads_success_total", labels) == 1


def test_duration_buckets_reach_hours_and_size_buckets_reach_terabytes(m: metrics.Metrics) -> None:
    m.download_succeeded(MODEL, seconds=1.0, nbytes=5 * 1000**3)
    m.verified(MODEL, result="success", seconds=1.0)
    m.rate_limited(MODEL, wait_seconds=1.0)
    assert buckets_of(m, "model_agent_download_duration_seconds")[-1] >= 4 * 3600
    assert buckets_of(m, "model_agent_verification_duration_seconds")[-1] >= 3600
    assert buckets_of(m, "model_agent_rate_limit_wait_seconds")[-1] >= 300
    sizes = buckets_of(m, "model_agent_model_size_bytes")
    assert sizes[0] <= 1000**3 and sizes[-1] >= 1000**4
    assert value(m, "model_agent_model_size_bytes_sum", {"model_type": "BaseModel"}) == 5e9


def test_a_long_download_lands_in_an_hours_bucket_not_only_in_inf(m: metrics.Metrics) -> None:
    m.download_succeeded(MODEL, seconds=5400.0)
    below = value(
        m, "model_agent_download_duration_seconds_bucket", {**MODEL_LABELS, "le": "3600.0"}
    )
    within = value(
        m, "model_agent_download_duration_seconds_bucket", {**MODEL_LABELS, "le": "7200.0"}
    )
    assert (below, within) == (0, 1)


def test_in_progress_bytes_grow_and_vanish_when_the_pull_succeeds(m: metrics.Metrics) -> None:
    m.received(MODEL, 100)
    m.received(MODEL, 50)
    assert value(m, "model_agent_download_in_progress_bytes", MODEL_LABELS) == 150
    m.download_succeeded(MODEL, seconds=1.0)
    assert value(m, "model_agent_download_in_progress_bytes", MODEL_LABELS) is None
    assert value(m, "model_agent_download_bytes_total", ORIGIN_LABELS) == 150


def test_in_progress_bytes_vanish_when_the_pull_fails_and_failing_twice_is_fine(
    m: metrics.Metrics,
) -> None:
    m.received(MODEL, 10)
    m.download_failed(MODEL, reason="Transient")
    m.download_failed(MODEL, reason="Transient")
    assert value(m, "model_agent_download_in_progress_bytes", MODEL_LABELS) is None
    assert (
        value(m, "model_agent_downloads_failed_total", {**MODEL_LABELS, "reason": "Transient"}) == 2
    )


def test_rate_limit_waits_are_recorded_as_measured(m: metrics.Metrics) -> None:
    m.rate_limited(MODEL, wait_seconds=0.25)
    m.rate_limited(MODEL, wait_seconds=7.5)
    assert value(m, "model_agent_rate_limit_total", MODEL_LABELS) == 2
    assert value(m, "model_agent_rate_limit_wait_seconds_sum", MODEL_LABELS) == 7.75
    assert value(m, "model_agent_rate_limit_wait_seconds_count", MODEL_LABELS) == 2


def test_a_successful_verification_is_not_a_checksum_failure(m: metrics.Metrics) -> None:
    m.verified(MODEL, result="success", seconds=0.1)
    m.verified(MODEL, result="size_only", seconds=0.1)
    assert value(m, "model_agent_md5_checksum_failed_total", MODEL_LABELS) is None
    assert value(m, "model_agent_verification_duration_seconds_count", MODEL_LABELS) == 2


def test_process_platform_and_gc_collectors_are_on_the_given_registry(m: metrics.Metrics) -> None:
    assert value(m, "process_resident_memory_bytes") is not None
    assert value(m, "python_info", {**_python_info_labels()}) == 1
    names = {family.name for family in m.registry.collect()}
    assert "python_gc_objects_collected" in names


def _python_info_labels() -> dict[str, str]:
    import platform

    major, minor, patch = platform.python_version_tuple()
    return {
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patch,
        "version": platform.python_version(),
    }


def test_filesystem_collector_reports_statvfs_and_skips_missing_paths(
    m: metrics.Metrics, tmp_path: pathlib.Path
) -> None:
    m.watch_filesystem(str(tmp_path))
    m.watch_filesystem(str(tmp_path / "missing"))
    st = os.statvfs(tmp_path)
    size = value(m, "model_agent_filesystem_size_bytes", {"path": str(tmp_path)})
    free = value(m, "model_agent_filesystem_free_bytes", {"path": str(tmp_path)})
    assert size == st.f_blocks * st.f_frsize
    assert free is not None and 0 <= free <= size
    assert (
        value(m, "model_agent_filesystem_size_bytes", {"path": str(tmp_path / "missing")}) is None
    )


def test_events_loop_lag_and_last_success_are_recorded(m: metrics.Metrics) -> None:
    m.event_recorded("Ready", "posted")
    m.event_recorded("Ready", "deduplicated")
    m.loop_lag_observed(0.042)
    assert value(m, "model_agent_events_total", {"reason": "Ready", "result": "posted"}) == 1
    assert value(m, "model_agent_event_loop_lag_seconds") == 0.042
    assert value(m, "model_agent_last_success_timestamp_seconds") == 0
    m.download_succeeded(MODEL, seconds=1.0)
    last = value(m, "model_agent_last_success_timestamp_seconds")
    assert last is not None and last > 1.7e9


def test_two_agents_in_one_process_use_separate_registries() -> None:
    first = metrics.Metrics(prom.CollectorRegistry())
    second = metrics.Metrics(prom.CollectorRegistry())
    first.received(MODEL, 5)
    assert (
        second.registry.get_sample_value("model_agent_download_bytes_total", ORIGIN_LABELS) is None
    )


def test_bytes_are_counted_by_source_and_peer_serving_by_result(m: metrics.Metrics) -> None:
    m.received(MODEL, 100)
    m.received(MODEL, 30, source="peer")
    assert value(m, "model_agent_download_bytes_total", ORIGIN_LABELS) == 100
    assert value(m, "model_agent_download_bytes_total", {**MODEL_LABELS, "source": "peer"}) == 30
    assert value(m, "model_agent_download_in_progress_bytes", MODEL_LABELS) == 130
    m.peer_served("ok", 4096)
    m.peer_served("unauthorized")
    assert value(m, "model_agent_peer_served_bytes_total") == 4096
    assert value(m, "model_agent_peer_requests_total", {"result": "ok"}) == 1
    assert value(m, "model_agent_peer_requests_total", {"result": "unauthorized"}) == 1
    m.peer_rejected("corrupt")
    assert value(m, "model_agent_peer_rejections_total", {"reason": "corrupt"}) == 1
