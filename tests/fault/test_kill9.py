"""kill -9 of the real ``model-agent run`` process at seeded random points of a multi-file
pull, through the local hub, the local object store, local GitHub, and moto's S3 server,
gcp-storage-emulator and Azurite behind the fault proxy (throttled so a pull spans the kills).

Aspects, for HF, OCI, S3, GCS, GitHub and Azure models (10 kills each, 60 in all): after
every kill, every file at a final path of the destination equals its source bytes (no partial,
corrupted or unknown file is ever visible there); every restart picks the model up again from
the API alone; the last run ends Ready with every file verified; resumption is real: the
stores served less than 1.35x the model size in total, and ranged requests started past byte 0.
An update to a new revision killed 4 times keeps the Ready version's files intact at their
final paths and its label Ready after every kill; the new version lands whole at the end.
Set ``FAULT_SEED`` to replay another sequence of kill points (the seed is printed).
"""

from __future__ import annotations

import os
import pathlib
import signal
import time
from collections.abc import Callable

import pytest

from tests.fault import support
from tests.harness import azure, gcs, s3
from tests.harness import faults as faults_mod
from tests.harness.kube import FakeKube
from tests.harness.operator import AgentProcess, agent_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

KILLS = 10
RATE = 160_000  # bytes per second, shared by every transfer of the store
NODE = "node-a"
ARGS = (
    "--config-map-sync-interval", "0.5", "--multipart-threshold", "256Ki",
    "--stall-timeout", "10s", "--download-retry", "5",
)  # fmt: skip


def source_files(tmp_path: pathlib.Path, name: str) -> dict[str, bytes]:
    rng = support.seeded(f"{name}-content")
    extra = {f"weights-{i}.dat": support.patterned(520_000 + 7_919 * i, rng) for i in range(5)}
    return support.model_files(tmp_path / name, extra=extra)


def start(kube_api: FakeKube, workdir: pathlib.Path, env: dict[str, str]) -> AgentProcess:
    return support.start_agent(
        lambda: agent_process(kube_api, NODE, args=ARGS, env=env, workdir=workdir, timeout=60)
    )


def kill9(process: AgentProcess) -> None:
    assert process.proc is not None
    os.killpg(process.proc.pid, signal.SIGKILL)
    process.proc.wait(10)
    process.stop()  # records the exit code and the log; the workdir stays


def wait_until(condition: Callable[[], bool], what: str, process: AgentProcess) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        assert process.proc is not None and process.proc.poll() is None, process.log_text()[-4000:]
        assert time.monotonic() < deadline, f"{what}\n{process.log_text()[-4000:]}"
        time.sleep(0.005)


def kill_and_resume(
    name: str,
    kube_api: FakeKube,
    store: faults_mod.ServerBase,
    source: dict[str, bytes],
    body: dict,
    key: str,
    workdir: pathlib.Path,
    env: dict[str, str],
) -> None:
    rng = support.seeded(name)
    total = sum(len(b) for b in source.values())
    points = sorted(rng.uniform(0.04, 0.9) * total for _ in range(KILLS))
    destination = workdir / "models" / key
    view = support.View(kube_api, NODE)
    kube_api.add_node(NODE)
    store.faults.throttle(RATE)
    kube_api.create(body)
    for number, point in enumerate(points, 1):
        process = start(kube_api, workdir, env)
        at_start = store.bytes_served()
        target = max(point, at_start + total / 100)
        reached = lambda target=target: store.bytes_served() >= target  # noqa: E731
        wait_until(reached, f"kill {number} at {target}", process)
        kill9(process)
        assert process.returncode == -signal.SIGKILL, process.log[-3000:]
        bad = support.corrupt_final_files(destination, source)
        assert bad == [], f"after kill {number} at {int(target)} bytes: {bad}"
        assert view.status(key) != "Ready", f"kill {number} came after the pull ended"
    store.faults.throttle(None)
    process = start(kube_api, workdir, env)
    try:
        wait_until(lambda: view.settled(key, "Ready"), "Ready after the last restart", process)
    finally:
        process.stop()
    assert support.corrupt_final_files(destination, source) == []
    assert set(support.final_files(destination)) == set(source)
    assert not (destination / support.STAGING).exists()
    served = store.bytes_served()
    print(f"{name}: {served} bytes served for a {total}-byte model ({served / total:.3f}x)")
    assert served < 1.35 * total
    resumed = [r.range for r in store.log if r.kind == "data" and r.range and r.status == 206]
    assert any(not r.startswith("bytes=0-") for r in resumed), resumed


def test_an_hf_pull_killed_ten_times_resumes_and_never_shows_a_wrong_file(
    kube_api, hf_hub_in_thread, tmp_path
):
    source = source_files(tmp_path, "hf-src")
    hf_hub_in_thread.add_repo("org/killed", source)
    body = support.model("BaseModel", "killed", "hf://org/killed")
    env = {"HF_ENDPOINT": hf_hub_in_thread.endpoint}
    kill_and_resume(
        "hf-kill9", kube_api, hf_hub_in_thread, source, body, "default.basemodel.killed",
        tmp_path / "node", env,
    )  # fmt: skip


def test_an_oci_pull_killed_ten_times_resumes_and_never_shows_a_wrong_file(
    kube_api, oci_store_in_thread, tmp_path
):
    store = oci_store_in_thread
    source = source_files(tmp_path, "oci-src")
    for name, data in source.items():
        store.add_object("models", f"llama/{name}", data)
    uri = f"oci://n/{store.namespace}/b/models/o/llama"
    parameters = {"auth": "UserPrincipal", "endpoint": store.endpoint}
    body = support.model("ClusterBaseModel", "killed", uri, parameters=parameters)
    env = {
        "OCI_CONFIG_FILE": str(support.write_oci_config(store, tmp_path / "oci")),
        "MODEL_AGENT_CREDENTIAL_HOSTS": store.endpoint.removeprefix("http://"),
    }
    kill_and_resume(
        "oci-kill9", kube_api, store, source, body, "clusterbasemodel.killed",
        tmp_path / "node", env,
    )  # fmt: skip


def test_an_s3_pull_killed_ten_times_resumes_and_never_shows_a_wrong_file(
    kube_api, moto_s3, s3_bucket, s3_proxy_in_thread, tmp_path
):
    source = source_files(tmp_path, "s3-src")
    client = moto_s3.client()
    for name, data in source.items():
        client.put_object(Bucket=s3_bucket, Key=f"llama/{name}", Body=data)
    body = support.model("ClusterBaseModel", "killed", f"s3://{s3_bucket}/llama")
    env = {
        "AWS_ACCESS_KEY_ID": s3.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": s3.SECRET_KEY,
        "AWS_ENDPOINT_URL_S3": s3_proxy_in_thread.endpoint,
    }
    kill_and_resume(
        "s3-kill9", kube_api, s3_proxy_in_thread, source, body, "clusterbasemodel.killed",
        tmp_path / "node", env,
    )  # fmt: skip


def test_a_gcs_pull_killed_ten_times_resumes_and_never_shows_a_wrong_file(
    kube_api, gcs_emulator, gcs_bucket, gcs_proxy_in_thread, tmp_path
):
    source = source_files(tmp_path, "gcs-src")
    for name, data in source.items():
        gcs_emulator.upload(gcs_bucket, f"llama/{name}", data)
    body = support.model("ClusterBaseModel", "killed", f"gs://{gcs_bucket}/llama")
    with gcs.TokenServer().serve_in_thread() as tokens:
        env = {
            "GOOGLE_APPLICATION_CREDENTIALS": str(
                gcs.write_key_file(tmp_path / "key.json", tokens.url)
            ),
            "STORAGE_EMULATOR_HOST": gcs_proxy_in_thread.endpoint,
        }
        kill_and_resume(
            "gcs-kill9", kube_api, gcs_proxy_in_thread, source, body, "clusterbasemodel.killed",
            tmp_path / "node", env,
        )  # fmt: skip


def test_a_github_pull_killed_ten_times_resumes_and_never_shows_a_wrong_file(
    kube_api, github_in_thread, tmp_path
):
    source = source_files(tmp_path, "github-src")
    github_in_thread.add_release("acme/llama", "v1", source)
    body = support.model("ClusterBaseModel", "killed", "github://acme/llama@v1")
    env = {"GITHUB_API_URL": github_in_thread.endpoint}
    kill_and_resume(
        "github-kill9", kube_api, github_in_thread, source, body, "clusterbasemodel.killed",
        tmp_path / "node", env,
    )  # fmt: skip


def test_an_azure_pull_killed_ten_times_resumes_and_never_shows_a_wrong_file(
    kube_api, azurite, azure_container, azure_proxy_in_thread, tmp_path
):
    source = source_files(tmp_path, "azure-src")
    for name, data in source.items():
        azurite.put_blob(azure_container, f"llama/{name}", data)
    body = support.model(
        "ClusterBaseModel", "killed", f"az://{azure.ACCOUNT}/{azure_container}/llama"
    )
    endpoint = f"{azure_proxy_in_thread.endpoint}/{azure.ACCOUNT}"
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(endpoint)}
    kill_and_resume(
        "azure-kill9", kube_api, azure_proxy_in_thread, source, body, "clusterbasemodel.killed",
        tmp_path / "node", env,
    )  # fmt: skip


def test_an_update_killed_four_times_keeps_the_ready_version_intact_and_ready(
    kube_api, hf_hub_in_thread, tmp_path
):
    hub, view = hf_hub_in_thread, support.View(kube_api, NODE)

    def reported_sha() -> str | None:
        entry = view.entry(key) if view.settled(key, "Ready") else None
        return ((entry or {}).get("config") or {}).get("artifact", {}).get("sha")

    old = source_files(tmp_path, "v1")
    rng = support.seeded("update-kill9")
    new = {
        **support.model_files(tmp_path / "v2", max_position_embeddings=8192),
        **{f"weights-{i}.dat": support.patterned(500_000, rng) for i in range(4)},
    }
    old_sha = hub.add_repo("org/u", old)
    kube_api.add_node(NODE)
    workdir, key = tmp_path / "node", "default.basemodel.u"
    destination = workdir / "models" / key
    env = {"HF_ENDPOINT": hub.endpoint}
    kube_api.create(support.model("BaseModel", "u", f"hf://org/u@{old_sha}"))
    process = start(kube_api, workdir, env)
    wait_until(lambda: view.settled(key, "Ready"), "v1 Ready", process)
    kill9(process)
    new_sha = hub.add_repo("org/u", new)
    hub.faults.throttle(RATE)
    at_update = hub.bytes_served()
    kube_api.patch(
        "basemodels", "u", {"spec": {"storage": {"storageUri": f"hf://org/u@{new_sha}"}}}
    )
    total = sum(len(b) for b in new.values())
    for number, fraction in enumerate(sorted(rng.uniform(0.05, 0.8) for _ in range(4)), 1):
        process = start(kube_api, workdir, env)
        target = max(at_update + fraction * total, hub.bytes_served() + total / 100)
        reached = lambda target=target: hub.bytes_served() >= target  # noqa: E731
        wait_until(reached, f"update kill {number}", process)
        kill9(process)
        assert support.corrupt_final_files(destination, old) == [], f"kill {number}"
        assert set(support.final_files(destination)) == set(old), f"kill {number}"
        assert (
            support.corrupt_final_files(destination.with_name(f".{key}.model-agent-next"), new)
            == []
        )
        assert view.settled(key, "Ready"), f"kill {number}: {view.entry(key)}"
    hub.faults.throttle(None)
    process = start(kube_api, workdir, env)
    try:
        wait_until(lambda: reported_sha() == new_sha, "v2 Ready", process)
    finally:
        process.stop()
    assert support.corrupt_final_files(destination, new) == []
    assert set(support.final_files(destination)) == set(new)
