"""Planted secrets never leave their place, under the real ``model-agent run`` process at
debug level, in text and in JSON log format.

Aspects: HF tokens that do not look like tokens (so no pattern-based redaction can hide a
leak), taken from a Secret named in ``storage.key`` (a repo it opens and one it does not), from
``HF_TOKEN`` in the environment (a gated repo), and from ``spec.storage.parameters.token``;
plus the OCI API key. After the models end Ready or Failed, none of the tokens (nor the
private key) appears in the agent's log, in any Event, in any ConfigMap, on the Node, or in
/metrics.
"""

from __future__ import annotations

import base64
import json
import pathlib
import urllib.request

import pytest

from tests.fault import support
from tests.harness.operator import agent_process

pytestmark = pytest.mark.timeout(120)
NODE = "node-a"
SECRET_TOKEN = "Zq9PlantedSecretTokenXb7Kk"
WRONG_TOKEN = "Yw3PlantedWrongTokenMm4Jj"
ENV_TOKEN = "Vt8PlantedEnvTokenQq2Ll"
PARAM_TOKEN = "Rs5PlantedParamTokenNn6Hh"


def secret(name: str, token: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_planted_tokens_never_reach_logs_events_configmaps_or_metrics(
    kube_api, hf_hub_in_thread, oci_store_in_thread, tmp_path: pathlib.Path, log_format: str
) -> None:
    hub, store, view = hf_hub_in_thread, oci_store_in_thread, support.View(kube_api, NODE)
    files = support.model_files(tmp_path / "src")
    hub.add_repo("org/private", files, private=True, token=SECRET_TOKEN)
    hub.add_repo("org/wrong", files, private=True, token=SECRET_TOKEN)
    hub.add_repo("org/gated", files, gated=True, token=ENV_TOKEN)
    hub.add_repo("org/param", files, private=True, token=PARAM_TOKEN)
    for name, data in files.items():
        store.add_object("models", f"m/{name}", data)
    kube_api.add_node(NODE)
    kube_api.create(secret("good", SECRET_TOKEN))
    kube_api.create(secret("bad", WRONG_TOKEN))
    config = support.write_oci_config(store, tmp_path / "oci")
    models = {
        "default.basemodel.private": (
            "Ready",
            support.model("BaseModel", "private", "hf://org/private", key="good"),
        ),
        "default.basemodel.wrong": (
            "Failed",
            support.model("BaseModel", "wrong", "hf://org/wrong", key="bad"),
        ),
        "default.basemodel.gated": ("Ready", support.model("BaseModel", "gated", "hf://org/gated")),
        "default.basemodel.param": (
            "Ready",
            support.model(
                "BaseModel", "param", "hf://org/param", parameters={"token": PARAM_TOKEN}
            ),
        ),
        "clusterbasemodel.oci": (
            "Ready",
            support.model(
                "ClusterBaseModel",
                "oci",
                f"oci://n/{store.namespace}/b/models/o/m",
                parameters={"auth": "UserPrincipal", "endpoint": store.endpoint},
            ),
        ),
    }
    with support.running_agent(
        lambda: agent_process(
            kube_api,
            NODE,
            args=(
                "--log-level",
                "debug",
                "--log-format",
                log_format,
                "--config-map-sync-interval",
                "0.2",
            ),
            env={
                "HF_ENDPOINT": hub.endpoint,
                "HF_TOKEN": ENV_TOKEN,
                "OCI_CONFIG_FILE": str(config),
                "MODEL_AGENT_CREDENTIAL_HOSTS": store.endpoint.removeprefix("http://"),
            },
            workdir=tmp_path / "node",
            timeout=60,
        )
    ) as agent:
        for _, body in models.values():
            kube_api.create(body)
        try:
            for key, (status, _) in models.items():
                kube_api.wait_for_sync(lambda k=key, s=status: view.settled(k, s), 60)
        except TimeoutError:
            raise AssertionError((view.data(), agent.log_text()[-6000:])) from None
        with urllib.request.urlopen(agent.health_url + "/metrics", timeout=10) as answer:
            exposition = answer.read().decode()
        code, log = agent.stop()
    assert code == 0, log[-3000:]
    assert view.entry("default.basemodel.wrong")["reason"] == "Unauthorized"
    assert "model_agent_downloads_success_total" in exposition
    key_lines = [
        line for line in store.config["key_content"].splitlines() if line and "-----" not in line
    ]
    places = {
        "log": log,
        "events": json.dumps(kube_api.list("events")),
        "configmaps": json.dumps(kube_api.list("configmaps")),
        "node": json.dumps(kube_api.get("nodes", NODE)),
        "metrics": exposition,
    }
    assert len(places["events"]) > 100 and "Ready" in places["events"]
    for place, text in places.items():
        for token in (SECRET_TOKEN, WRONG_TOKEN, ENV_TOKEN, PARAM_TOKEN, *key_lines):
            assert token not in text, f"{token[:12]}... leaked into the {place}"
        for token in (SECRET_TOKEN, WRONG_TOKEN, ENV_TOKEN, PARAM_TOKEN):
            encoded = base64.b64encode(token.encode()).decode()
            assert encoded not in text, f"{token[:12]}... (base64) in {place}"
