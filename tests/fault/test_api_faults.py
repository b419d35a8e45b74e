"""API faults under the real ``model-agent run`` process (Kopf's watches included): the
reported state converges and no entry is lost.

Aspects: a storm of 409s and 500s on ConfigMap and Node patches while models come and go;
every watch stream (models and the own Node) dropped twice, with a create, a delete, a
failing re-watch, a Node label change that selects a waiting model and (the second time) a
compacted history (410 Gone on resume) in the gap; the end state is exact: every present
model has a Ready entry and a Ready label, the deleted one has neither, another writer's key
survives the storm; the ConfigMap deleted under the agent comes back, on the agent's next
write, with every entry it owns, not just the one being written. In process: a model deleted
while the watch was down and its history expired (a relist shows only the survivors, and
Kopf reports no deletion) is found by the agent's periodic sweep: its entry, label and files
go, and the other models stay Ready.
"""

from __future__ import annotations

import pathlib

import pytest

from tests.fault import support
from tests.fault.agents import Harness
from tests.harness.operator import agent_process

pytestmark = pytest.mark.timeout(180)
NODE = "node-a"
DEADLINE = 60.0
WATCHED = ("basemodels", "clusterbasemodels", "nodes")


def key(name: str) -> str:
    return f"default.basemodel.{name}"


def test_patch_storms_dropped_watches_and_a_deleted_configmap_converge_without_losing_entries(
    kube_api, hf_hub_in_thread, tmp_path: pathlib.Path
) -> None:
    hub, view = hf_hub_in_thread, support.View(kube_api, NODE)
    hub.add_repo("org/m", support.model_files(tmp_path / "src"))
    kube_api.add_node(NODE)
    kube_api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": NODE, "namespace": "ome"},
            "data": {"other-writer.key": "keep"},
        }
    )

    def create(name: str) -> None:
        kube_api.create(support.model("BaseModel", name, "hf://org/m"))

    def converged(present: set[str], gone: set[str]) -> bool:
        return all(view.settled(key(n), "Ready") for n in present) and all(
            view.entry(key(n)) is None and view.label(key(n)) is None for n in gone
        )

    with support.running_agent(
        lambda: agent_process(
            kube_api,
            NODE,
            args=("--config-map-sync-interval", "0.2", "--relist-window", "3s"),
            env={"HF_ENDPOINT": hub.endpoint},
            workdir=tmp_path / "node",
            timeout=60,
        )
    ) as agent:
        kube_api.fail_next(25, method="PATCH", path_contains="/configmaps/", status=409)
        kube_api.fail_next(8, method="PATCH", path_contains="/configmaps/", status=500)
        kube_api.fail_next(8, method="PATCH", path_contains="/nodes/", status=409)
        kube_api.fail_next(4, method="PATCH", path_contains="/nodes/", status=500)
        for name in ("m0", "m1", "m2"):
            create(name)
        kube_api.create(
            support.model("ClusterBaseModel", "big", "hf://org/m", nodeSelector={"pool": "big"})
        )
        try:
            kube_api.wait_for_sync(lambda: converged({"m0", "m1", "m2"}, set()), DEADLINE)
            for extra in ("m3", "m4"):  # drop every stream; things happen before they reopen
                kube_api.wait_for_sync(lambda: all(kube_api.watching(r) for r in WATCHED), DEADLINE)
                kube_api.fail_next(1, method="WATCH", path_contains="basemodels", status=500)
                assert kube_api.close_watches() >= len(WATCHED)
                create(extra)
                if extra == "m3":
                    kube_api.delete("basemodels", "m0", "default")
                else:  # the history is gone too: resuming watches get 410 Gone and relist
                    kube_api.patch("nodes", NODE, {"metadata": {"labels": {"pool": "big"}}})
                    kube_api.compact()
            kube_api.patch("configmaps", NODE, {"data": {"other-writer.late": "also"}}, "ome")
            present = {"m1", "m2", "m3", "m4"}
            kube_api.wait_for_sync(lambda: converged(present, {"m0"}), DEADLINE)
            kube_api.wait_for_sync(lambda: view.settled("clusterbasemodel.big", "Ready"), DEADLINE)
        except TimeoutError:
            raise AssertionError((view.data(), agent.log_text()[-6000:])) from None
        data = view.data()
        assert data["other-writer.key"] == "keep"
        assert data["other-writer.late"] == "also"
        assert {k for k in data if ".basemodel." in k} == {key(n) for n in present}
        assert "clusterbasemodel.big" in data

        kube_api.delete("configmaps", NODE, "ome")
        create("m5")
        present.add("m5")
        try:
            kube_api.wait_for_sync(lambda: converged(present, {"m0"}), DEADLINE)
        except TimeoutError:
            raise AssertionError((view.data(), agent.log_text()[-6000:])) from None
        assert {k for k in view.data() if ".basemodel." in k} == {key(n) for n in present}
        assert view.status("clusterbasemodel.big") == "Ready"  # recreated with every entry
        labels = kube_api.get("nodes", NODE)["metadata"]["labels"]
        assert {k: v for k, v in labels.items() if k.startswith("models.ome.io/")} == {
            **{f"models.ome.io/{key(n)}": "Ready" for n in present},
            "models.ome.io/clusterbasemodel.big": "Ready",
        }
        patches = [r.path for r in list(kube_api.requests) if r.method == "PATCH"]
        # the storm was spent: 33 failed ConfigMap patches and 12 failed Node patches, plus
        # at least one that landed per entry and label
        assert sum("/configmaps/" in p for p in patches) >= 33 + 6
        assert sum("/nodes/" in p for p in patches) >= 12 + 6
        code, log = agent.stop()
        assert code == 0, log[-3000:]


async def test_a_delete_that_no_watch_event_reports_is_found_by_the_periodic_sweep(
    kube_api, kube_client, hf_hub, tmp_path: pathlib.Path
) -> None:
    kube_api.add_node(NODE)
    world = Harness(kube_api, kube_client, tmp_path / "models")
    world.root.mkdir()
    world.environ["HF_ENDPOINT"] = hf_hub.endpoint
    hf_hub.add_repo("org/m", support.model_files(tmp_path / "src"))
    try:
        instance = await world.start(repair_interval=0.3)
        for name in ("gone", "kept"):
            world.create(instance, support.model("BaseModel", name, "hf://org/m"))
        for name in ("gone", "kept"):
            assert await world.settles(key(name), "Ready", "Failed") == "Ready"
        assert (world.root / key("gone") / "config.json").is_file()
        kube_api.delete("basemodels", "gone", "default")  # and no DELETED event reaches it
        await world.until(
            lambda: world.view.entry(key("gone")) is None and world.view.label(key("gone")) is None
        )
        await world.until(lambda: not (world.root / key("gone")).exists())
        assert world.view.settled(key("kept"), "Ready")
        assert (world.root / key("kept") / "config.json").is_file()
    finally:
        await world.stop_all()
