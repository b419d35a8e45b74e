"""Model Events (model_agent.kube.events): the pure dedupe/rate-limit filter, and the real
kubernetes-asyncio client posting to the fake API server (``kube_api``).

Covers, pure: the token bucket spends and refills at its rate and never beyond its burst; the
filter drops the same reason+message for an object within the dedupe window, posts it again
after the window and after a different state, limits one object before the whole agent, limits
the agent across objects, forgets the least recently used objects, and only remembers events
that were posted. Against the API: a BaseModel's Ready event lands in its namespace with the
CR as involvedObject, source model-agent, reportingInstance the node and a message naming the
node; a ClusterBaseModel's event lands in ``default`` (the only namespace the API server
accepts for a cluster-scoped involvedObject); the same state twice posts
once; an API failure is counted and logged, never raised, and the next try posts; a planted
token in a failure detail never reaches the API; N agents hammering state changes post at
most N x burst events; metrics count every outcome.
"""

from __future__ import annotations

import logging
from typing import Any

import prometheus_client as prom
import pytest
from kubernetes_asyncio import client

from model_agent import metrics
from model_agent.kube import events
from tests.harness.kube import FakeKube


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- pure ------------------------------------------------------------------------------------


def test_token_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = events.TokenBucket(rate=0.5, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 1.0
    assert bucket.take() is False  # half a token
    clock.now += 1.0
    assert bucket.take() is True
    clock.now += 3600
    assert sum(bucket.take() for _ in range(10)) == 3  # never beyond the burst


def test_filter_dedupes_the_same_event_within_the_window_only() -> None:
    clock = Clock()
    f = events.EventFilter(dedupe_window=60, clock=clock)
    assert f.decide("uid-1", "Ready", "ready on n1") == "post"
    f.posted("uid-1", "Ready", "ready on n1")
    assert f.decide("uid-1", "Ready", "ready on n1") == "deduplicated"
    assert f.decide("uid-2", "Ready", "ready on n1") == "post"  # another object
    clock.now += 61
    assert f.decide("uid-1", "Ready", "ready on n1") == "post"


def test_filter_posts_a_state_again_after_a_different_state() -> None:
    clock = Clock()
    f = events.EventFilter(per_object_burst=10, clock=clock)
    for reason in ("Downloading", "Failed", "Downloading"):
        assert f.decide("uid-1", reason, reason) == "post"
        f.posted("uid-1", reason, reason)


def test_filter_remembers_only_posted_events() -> None:
    f = events.EventFilter(clock=Clock())
    assert f.decide("uid-1", "Ready", "m") == "post"  # but the post failed: no posted()
    assert f.decide("uid-1", "Ready", "m") == "post"


def test_filter_limits_one_object_before_the_agent() -> None:
    clock = Clock()
    f = events.EventFilter(per_object_burst=3, per_object_rate=1 / 60, burst=100, clock=clock)
    decisions = [f.decide("flapping", "Failed", f"attempt {i}") for i in range(5)]
    assert decisions == ["post"] * 3 + ["rate_limited"] * 2
    assert f.decide("quiet", "Ready", "ready") == "post"
    clock.now += 60
    assert f.decide("flapping", "Failed", "attempt 6") == "post"


def test_filter_limits_the_agent_across_objects() -> None:
    clock = Clock()
    f = events.EventFilter(burst=5, rate=0.2, clock=clock)
    decisions = [f.decide(f"uid-{i}", "Ready", "ready") for i in range(8)]
    assert decisions.count("post") == 5
    clock.now += 5
    assert f.decide("uid-9", "Ready", "ready") == "post"


def test_filter_forgets_the_least_recently_used_objects() -> None:
    f = events.EventFilter(max_objects=2, clock=Clock())
    for key in ("a", "b", "c"):
        assert f.decide(key, "Ready", "r") == "post"
        f.posted(key, "Ready", "r")
    assert f.decide("c", "Ready", "r") == "deduplicated"
    assert f.decide("a", "Ready", "r") == "post"  # evicted, so not remembered


# --- against the fake API server ------------------------------------------------------------

BASEMODEL = {
    "apiVersion": "ome.io/v1beta1",
    "kind": "BaseModel",
    "metadata": {"name": "llama", "namespace": "team-a", "uid": "uid-llama"},
    "spec": {"storage": {"storageUri": "hf://meta/llama"}},
}
CLUSTERMODEL = {
    "apiVersion": "ome.io/v1beta1",
    "kind": "ClusterBaseModel",
    "metadata": {"name": "mistral", "uid": "uid-mistral"},
    "spec": {"storage": {"storageUri": "hf://mistral/mistral"}},
}


def ensure_namespace(kube: FakeKube, name: str) -> None:
    if kube.get("namespaces", name) is None:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def recorder(
    api: client.ApiClient, node: str = "node-1", **kwargs: Any
) -> tuple[events.EventRecorder, metrics.Metrics]:
    m = metrics.Metrics(prom.CollectorRegistry())
    return events.EventRecorder(api, node_name=node, metrics=m, **kwargs), m


async def test_a_basemodel_ready_event_names_the_model_and_the_node(
    kube_api: FakeKube, kube_client: client.ApiClient
) -> None:
    ensure_namespace(kube_api, "team-a")
    rec, m = recorder(kube_client)
    assert await rec.model_state(BASEMODEL, "Ready") is True
    [event] = kube_api.list("events", "team-a")
    assert event["reason"] == "Ready" and event["type"] == "Normal"
    assert event["message"] == "Model llama is ready on node node-1"
    assert event["involvedObject"] == {
        "apiVersion": "ome.io/v1beta1",
        "kind": "BaseModel",
        "name": "llama",
        "namespace": "team-a",
        "uid": "uid-llama",
    }
    assert event["source"] == {"component": "model-agent", "host": "node-1"}
    assert event["reportingInstance"] == "node-1"
    assert event["metadata"]["name"].startswith("llama.")
    posted = {"reason": "Ready", "result": "posted"}
    assert m.registry.get_sample_value("model_agent_events_total", posted) == 1


async def test_a_clusterbasemodel_event_lands_in_the_default_namespace(
    kube_api: FakeKube, kube_client: client.ApiClient
) -> None:
    rec, _ = recorder(kube_client)
    assert await rec.model_state(CLUSTERMODEL, "Deleted") is True
    [event] = kube_api.list("events", "default")
    assert event["reason"] == "Deleted"
    assert event["message"] == "Model mistral deleted from node node-1"
    assert "namespace" not in event["involvedObject"]


async def test_the_same_state_twice_posts_one_event(
    kube_api: FakeKube, kube_client: client.ApiClient
) -> None:
    ensure_namespace(kube_api, "team-a")
    rec, m = recorder(kube_client)
    assert await rec.model_state(BASEMODEL, "Downloading") is True
    assert await rec.model_state(BASEMODEL, "Downloading") is False
    assert await rec.model_state(BASEMODEL, "Ready") is True
    assert sorted(e["reason"] for e in kube_api.list("events", "team-a")) == [
        "Downloading",
        "Ready",
    ]
    deduped = {"reason": "Downloading", "result": "deduplicated"}
    assert m.registry.get_sample_value("model_agent_events_total", deduped) == 1


async def test_an_api_failure_is_counted_and_logged_never_raised_and_the_next_try_posts(
    kube_api: FakeKube, kube_client: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_namespace(kube_api, "team-a")
    rec, m = recorder(kube_client)
    kube_api.fail_next(1, method="POST", path_contains="/events", status=500)
    with caplog.at_level(logging.WARNING, logger="model_agent.events"):
        assert await rec.model_state(BASEMODEL, "Failed", "no space left") is False
    assert kube_api.list("events", "team-a") == []
    assert any(getattr(r, "error_class", None) == "ApiException" for r in caplog.records)
    failed = {"reason": "Failed", "result": "failed"}
    assert m.registry.get_sample_value("model_agent_events_total", failed) == 1
    assert await rec.model_state(BASEMODEL, "Failed", "no space left") is True
    [event] = kube_api.list("events", "team-a")
    assert event["type"] == "Warning"
    assert event["message"] == "Model llama failed on node node-1: no space left"


async def test_an_unreachable_api_server_does_not_raise(kube_client: client.ApiClient) -> None:
    kube_client.configuration.host = "http://127.0.0.1:9"  # discard port: nothing listens
    rec, _ = recorder(kube_client, timeout=2.0)
    assert await rec.model_state(CLUSTERMODEL, "Ready") is False
    assert rec.results["failed"] == 1


async def test_a_planted_token_in_a_failure_detail_never_reaches_the_api(
    kube_api: FakeKube, kube_client: client.ApiClient
) -> None:
    token = "hf_" + "Z" * 34
    rec, _ = recorder(kube_client)
    detail = f"401 from hub with Authorization: Bearer {token}"
    assert await rec.model_state(CLUSTERMODEL, "Failed", detail) is True
    [event] = kube_api.list("events", "default")
    assert token not in event["message"] and "***" in event["message"]


async def test_n_agents_hammering_state_changes_post_at_most_n_times_burst(
    kube_api: FakeKube, kube_client: client.ApiClient
) -> None:
    clock = Clock()  # frozen: no refill, so the bound is exact
    agents = [
        recorder(
            kube_client,
            node=f"node-{i}",
            event_filter=events.EventFilter(burst=4, per_object_burst=2, clock=clock),
        )[0]
        for i in range(5)
    ]
    models = [{**CLUSTERMODEL, "metadata": {"name": f"m{j}", "uid": f"uid-{j}"}} for j in range(6)]
    for agent in agents:
        for round_ in range(5):
            for model in models:
                await agent.model_state(model, "Failed", f"attempt {round_}")
    assert len(kube_api.list("events", "default")) == 5 * 4
    assert sum(a.results["rate_limited"] for a in agents) == 5 * (5 * 6 - 4)


async def test_model_state_soon_posts_in_the_background(
    kube_api: FakeKube, kube_client: client.ApiClient
) -> None:
    rec, _ = recorder(kube_client)
    rec.model_state_soon(CLUSTERMODEL, "Downloading")
    await rec.aclose()
    assert [e["reason"] for e in kube_api.list("events", "default")] == ["Downloading"]
