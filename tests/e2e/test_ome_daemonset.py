"""The agent started exactly as OME's own DaemonSet starts its agent, fed models shaped like
OME's ``config/models`` samples.

OME's ``config/model-agent/daemonset.yaml`` (and its Helm chart) runs the image with the args
``--models-root-dir /raid/models --num-download-worker 2 --concurrency 2``, the environment
``NODE_NAME`` and ``INSTANCE_TYPE_MAP`` only, probes ``/livez`` (startup, liveness) and
``/healthz`` (readiness) on 8080, and a hostPath the kubelet created as root. Here the
command line is exactly those args (the root is a temp folder standing in for /raid/models);
the only additions are the test plumbing: KUBECONFIG for the in-cluster credentials,
HF_ENDPOINT for the local hub, and the free ports through ``MODEL_AGENT_PORT`` & co.

The samples (written from the shapes of OME's ~200 files, not copied): ClusterBaseModels with
no nodeSelector, ``storage.path`` under the root as ``<vendor>/<name>``, ``vendor``,
``version``, ``displayName``, ``disabled: false``, preset ``modelCapabilities`` of OME's
vocabulary, some with preset format/framework/architecture/size, many gated behind
``storage.key: hf-token``. Each is accepted by our CRDs, placed on the GPU node at its path,
Ready in the node's ConfigMap and label, and gets OME's spec write-back without a preset field
changing. A model OME's agent left on the node (files, Ready entry and label) is adopted
without a download and without its label leaving Ready; a model whose config the analyser
cannot read is Ready with ``analysisError``.
"""

from __future__ import annotations

import base64
import json
import pathlib
import urllib.request

import pytest
import yaml

from model_agent import cli, settings
from tests.harness import modelfiles
from tests.harness.operator import agent_process

pytestmark = pytest.mark.timeout(240)
ROOT = pathlib.Path(__file__).resolve().parents[2]
NODE = "gpu-node-1"
TOKEN = "hf_sampletoken0123456789"


def ome_args(models_root: pathlib.Path) -> tuple[str, ...]:
    return (
        "--models-root-dir",
        str(models_root),
        "--num-download-worker",
        "2",
        "--concurrency",
        "2",
    )


def instance_type_map() -> str:
    docs = yaml.safe_load_all((ROOT / "manifests" / "configmap.yaml").read_text())
    [configmap] = [d for d in docs if d and d["kind"] == "ConfigMap"]
    return str(configmap["data"]["instance-type-map"])


def test_omes_args_give_omes_settings_and_ports() -> None:
    args = cli.build_parser().parse_args(["run", *ome_args(pathlib.Path("/raid/models"))])
    flags = {f.field: getattr(args, f.field, None) for f in settings.FLAGS}
    config = settings.resolve(flags, {"NODE_NAME": NODE, "INSTANCE_TYPE_MAP": instance_type_map()})
    assert config.models_root_dir == "/raid/models"
    assert (config.num_download_worker, config.concurrency) == (2, 2)
    assert (config.port, config.metrics_port) == (8080, 8080)  # OME's probes and scrape port
    assert config.instance_type_map["BM.GPU.H100.8"] == "H100"
    assert config.write_spec is True  # OME's agent writes the spec back


def sample(name: str, vendor: str, repo: str, root: pathlib.Path, **spec) -> dict:
    storage = {"storageUri": f"hf://{repo}", "path": f"{root}/{vendor}/{name}"}
    storage.update(spec.pop("storage", {}))
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {
            "vendor": vendor,
            "disabled": False,
            "version": "1.0.0",
            "displayName": f"{vendor}.{name}",
            "storage": storage,
            **spec,
        },
    }


def test_omes_daemonset_runs_this_agent_unchanged_with_omes_sample_shapes(
    kube_api, hf_hub_in_thread, tmp_path
):
    hub = hf_hub_in_thread
    hub.add_repo(
        "meta-sample/Tiny-Instruct-FP8",
        modelfiles.tiny_llama_files(
            tmp_path / "gated",
            transformers_version="4.51.3",
            quantization_config={"quant_method": "fp8", "activation_scheme": "dynamic"},
        ),
        gated=True,
        token=TOKEN,
    )
    hub.add_repo(
        "qwen-sample/Tiny-VL",
        modelfiles.tiny_llama_files(tmp_path / "vl", model_type="qwen2"),
    )
    hub.add_repo(
        "baai-sample/tiny-embed",
        modelfiles.tiny_llama_files(tmp_path / "embed", model_type="bert"),
    )
    kube_api.add_node(
        NODE, {"nvidia.com/gpu": "true", "node.kubernetes.io/instance-type": "BM.GPU.H100.8"}
    )
    kube_api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf-token", "namespace": "ome"},
            "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
        }
    )
    models_root = tmp_path / "raid" / "models"  # hostPath DirectoryOrCreate: it exists
    models_root.mkdir(parents=True)
    gated = sample(
        "tiny-instruct-fp8",
        "meta",
        "meta-sample/Tiny-Instruct-FP8",
        models_root,
        modelCapabilities=["TEXT_TO_TEXT"],
        storage={"key": "hf-token"},
    )
    preset = sample(
        "tiny-vl",
        "qwen",
        "qwen-sample/Tiny-VL",
        models_root,
        modelCapabilities=["IMAGE_TEXT_TO_TEXT"],
        modelFormat={"name": "safetensors", "version": "1.0.0"},
        modelFramework={"name": "transformers", "version": "4.40.0"},
        modelArchitecture="Qwen2VLForConditionalGeneration",
        modelType="qwen2_vl",
        modelParameterSize="0.6B",
    )
    embed = sample(
        "tiny-embed",
        "BAAI",
        "baai-sample/tiny-embed",
        models_root,
        modelCapabilities=["TEXT_TO_EMBEDDING"],
    )
    # what OME's agent left on the node: files, a Ready entry and label, no record of ours
    placed_files = modelfiles.tiny_llama_files(tmp_path / "placed")
    hub.add_repo("mistral-sample/Placed", placed_files)
    placed = sample(
        "placed",
        "mistral",
        "mistral-sample/Placed",
        models_root,
        modelCapabilities=["TEXT_TO_TEXT"],
    )
    placed_dir = pathlib.Path(placed["spec"]["storage"]["path"])
    placed_dir.mkdir(parents=True)
    for file, data in placed_files.items():
        (placed_dir / file).write_bytes(data)
    kube_api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": NODE,
                "namespace": "ome",
                "labels": {"models.ome/basemodel-status": "true"},
            },
            "data": {"clusterbasemodel.placed": json.dumps({"name": "placed", "status": "Ready"})},
        }
    )
    kube_api.patch(
        "nodes", NODE, {"metadata": {"labels": {"models.ome.io/clusterbasemodel.placed": "Ready"}}}
    )
    kube_api.create(placed)
    # verified files the analyser cannot read: Ready all the same, as OME reports them
    hub.add_repo(
        "google-sample/Odd",
        modelfiles.tiny_llama_files(tmp_path / "odd") | {"config.json": b'{"model_type": '},
    )
    odd = sample(
        "odd", "google", "google-sample/Odd", models_root, modelCapabilities=["TEXT_TO_TEXT"]
    )
    served = hub.bytes_served()
    env = {"INSTANCE_TYPE_MAP": instance_type_map(), "HF_ENDPOINT": hub.endpoint}

    def ready(name: str) -> bool:
        cm = kube_api.get("configmaps", NODE, "ome") or {}
        text = (cm.get("data") or {}).get(f"clusterbasemodel.{name}")
        labels = kube_api.get("nodes", NODE)["metadata"].get("labels") or {}
        return (
            bool(text)
            and json.loads(text)["status"] == "Ready"
            and labels.get(f"models.ome.io/clusterbasemodel.{name}") == "Ready"
        )

    placed_labels: list[str | None] = []

    with agent_process(
        kube_api,
        NODE,
        args=ome_args(models_root),
        env=env,
        workdir=tmp_path / "agent",
        exact_args=True,
        timeout=60,
    ) as agent:
        for path in ("/livez", "/healthz"):  # OME's startup/liveness and readiness probes
            with urllib.request.urlopen(agent.health_url + path, timeout=10) as answer:
                assert answer.status == 200, path

        def placed_label() -> str | None:
            labels = kube_api.get("nodes", NODE)["metadata"].get("labels") or {}
            placed_labels.append(labels.get("models.ome.io/clusterbasemodel.placed"))
            return placed_labels[-1]

        kube_api.wait_for_sync(
            lambda: (
                placed_label() == "Ready"
                and bool(
                    json.loads(
                        (kube_api.get("configmaps", NODE, "ome") or {})["data"][
                            "clusterbasemodel.placed"
                        ]
                    )
                    .get("config", {})
                    .get("artifact")
                )
            ),
            timeout=60,
        )
        assert set(placed_labels) == {"Ready"}  # adoption never flipped the label
        assert hub.bytes_served() == served  # and downloaded nothing

        for body in (gated, preset, embed, odd):
            kube_api.create(body)  # the fake API server validates against our CRDs

        for body in (gated, preset, embed, odd):
            name = body["metadata"]["name"]
            kube_api.wait_for_sync(lambda n=name: ready(n), timeout=60)
            folder = pathlib.Path(body["spec"]["storage"]["path"])
            assert (folder / "config.json").is_file()
            assert (folder / "model.safetensors").is_file()

        odd_entry = json.loads(
            kube_api.get("configmaps", NODE, "ome")["data"]["clusterbasemodel.odd"]
        )
        assert "config.json" in odd_entry["config"]["analysisError"]

        def filled(name: str) -> dict:
            return kube_api.get("clusterbasemodels", name)["spec"]

        kube_api.wait_for_sync(lambda: filled("tiny-instruct-fp8").get("quantization"), 30)
        kube_api.wait_for_sync(lambda: filled("tiny-embed").get("modelType"), 30)
        spec = filled("tiny-instruct-fp8")
        assert spec["quantization"] == "fp8"  # what OME's runtime selector matches on
        assert spec["modelFormat"]["name"] == "safetensors"
        assert spec["modelFramework"]["version"] == "4.51.3"
        assert spec["modelCapabilities"] == ["TEXT_TO_TEXT"]  # preset: kept
        assert spec["displayName"] == "meta.tiny-instruct-fp8"
        spec = filled("tiny-vl")
        assert spec["modelFramework"]["version"] == "4.40.0"
        assert spec["modelArchitecture"] == "Qwen2VLForConditionalGeneration"
        assert spec["modelType"] == "qwen2_vl"
        assert spec["modelParameterSize"] == "0.6B"
        assert filled("tiny-embed")["modelCapabilities"] == ["TEXT_TO_EMBEDDING"]
        code, log = agent.stop()
    assert code == 0, log
    assert "GPU shape H100 from instance-type-map" in log  # logged once, at start
    assert log.count("GPU shape H100") == 1
    assert TOKEN not in log
    assert (models_root / ".model-agent").is_dir()  # it wrote its state under the root
