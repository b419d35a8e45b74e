"""/metrics of the real `model-agent run` process after real work.

Aspects: after one model is pulled through a 429, a corrupted first transfer and retries, and
another model fails, a scrape of /metrics finds every metric name of CONTRACT.md with the
model labels (model_type, namespace, name) and non-zero values where work happened.
"""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import parser

from tests.e2e.test_operator import View, agent, model, repo_files
from tests.unit.test_metrics import CONTRACT_NAMES

pytestmark = pytest.mark.timeout(240)


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, metric: str, labels: dict[str, str] | None = None, **more: str) -> float:
    wanted = {**(labels or {}), **more}
    return sum(v for got, v in samples.get(metric, []) if wanted.items() <= got.items())


def test_every_contract_metric_is_exported_with_labels_after_real_work(
    kube_api, hf_hub_in_thread, tmp_path
):
    hub, view = hf_hub_in_thread, View(kube_api)
    hub.add_repo("org/llama", repo_files(tmp_path))
    kube_api.add_node("node-a")
    hub.faults.fail_next(1, status=429, retry_after=0.2)
    hub.faults.corrupt("*.safetensors", count=1)
    with agent(kube_api, "node-a", hub, tmp_path) as a:
        kube_api.create(model("BaseModel", "good", "hf://org/llama"))
        kube_api.create(model("BaseModel", "missing", "hf://org/does-not-exist"))
        view.ready("node-a", "default.basemodel.good", "models.ome.io/default.basemodel.good")
        view.wait(lambda: view.status("node-a", "default.basemodel.missing") == "Failed")
        samples = scrape(a.health_url)

    for name in CONTRACT_NAMES:
        base = [s for s in samples if s == name or s.startswith(name + "_")]
        assert base, f"{name} is not exported"
    good = {"model_type": "BaseModel", "namespace": "default", "name": "good"}
    missing = {"model_type": "BaseModel", "namespace": "default", "name": "missing"}
    assert value(samples, "model_agent_downloads_success_total", good) == 1
    assert value(samples, "model_agent_downloads_failed_total", missing) >= 1
    assert value(samples, "model_agent_download_bytes_total", good, source="origin") > 0
    assert value(samples, "model_agent_verifications_total", good, result="success") > 0
    assert value(samples, "model_agent_md5_checksum_failed_total", good) >= 1
    assert value(samples, "model_agent_rate_limit_total", good) >= 1
    assert value(samples, "model_agent_rate_limit_wait_seconds_sum", good) > 0
    assert value(samples, "model_agent_download_duration_seconds_count", good) == 1
    assert value(samples, "model_agent_verification_duration_seconds_count", good) > 0
    assert value(samples, "model_agent_configmap_operations_total") > 0
    assert "model_agent_active_workers" in samples
    assert "model_agent_task_queue_depth" in samples
