"""Offline validation of manifests/ and the Dockerfile (no cluster, no Docker).

Covers: a Python equivalent of ``kustomize build`` renders manifests/ and manifests/monitoring/
(every resource path resolves inside its kustomization, every file loads, the dashboard
ConfigMap is generated, no object is defined twice); every rendered Kubernetes object, and every
other YAML in manifests/, validates strictly (unknown fields rejected) against the OpenAPI
schemas of Kubernetes 1.29 and of the newest release kubernetes-validate ships; ServiceMonitor
and PrometheusRule validate against a schema of the Prometheus Operator fields they use; the
CRDs in the kustomization validate the model examples and the other examples validate against
the Kubernetes schema; the peer NetworkPolicy example admits agents, and only agents, to the peer
port and leaves every other port open; every metric named in the PrometheusRule and
the Grafana dashboard exists in model_agent.metrics and every function is PromQL's; the
DaemonSet's args parse as ``model-agent run`` flags (with the env the downward API gives) and
its probes, ports, env, hostPath, peer token Secret, resources and securityContext are wired as
the agent expects; the Service, ServiceMonitor and
alert job agree; RBAC bindings point at existing roles and accounts, grant every verb the agent
uses, and nothing wider (no wildcards, no list/watch on secrets); the Dockerfile parses with
Docker's own parser, its stages and base images are well-formed, its entrypoint is the
package's console script with the ``run`` subcommand, it runs as non-root, and its COPY
sources exist and are not excluded by .dockerignore.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import pathlib
import re
import tomllib
import urllib.parse
from collections.abc import Iterator
from typing import Any

import dockerfile
import jsonschema
import kubernetes_validate
import prometheus_client as prom
import pytest
import yaml

from model_agent import cli, errors, metrics, settings, spec

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


# --- a small kustomize ----------------------------------------------------------------------


def render(directory: pathlib.Path) -> list[dict[str, Any]]:
    """``kustomize build`` for the features manifests/ uses: resources (files and
    directories), configMapGenerator with files, labels and disableNameSuffixHash."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources", "configMapGenerator"}
    assert not unsupported, f"renderer does not support {unsupported}"
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        assert path.is_relative_to(directory.resolve()), f"{entry} escapes {directory}"
        assert path.exists(), f"{directory / entry} listed in kustomization does not exist"
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    for generator in kustomization.get("configMapGenerator", []):
        options = generator.get("options", {})
        assert options.get("disableNameSuffixHash") is True, "renderer does not hash names"
        data = {}
        for file in generator["files"]:
            source = (directory / file).resolve()
            assert source.is_relative_to(directory.resolve()) and source.is_file()
            data[source.name] = source.read_text()
        meta = {"name": generator["name"], "labels": options.get("labels", {})}
        if "namespace" in generator:
            meta["namespace"] = generator["namespace"]
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    return objects


def identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return obj["apiVersion"].split("/")[0], obj["kind"], meta.get("namespace", ""), meta["name"]


CORE = render(MANIFESTS)
MONITORING = render(MANIFESTS / "monitoring")
RENDERED = CORE + MONITORING


def the(kind: str, objects: list[dict[str, Any]] = RENDERED) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in the(kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def test_kustomizations_render_with_every_object_defined_once() -> None:
    ids = [identity(o) for o in RENDERED]
    assert len(ids) == len(set(ids)), "an object is defined twice"
    kinds = {o["kind"] for o in CORE}
    assert {
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "DaemonSet",
        "Service",
    } <= kinds
    assert {o["kind"] for o in MONITORING} == {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    assert len(the("CustomResourceDefinition")) == 2


def test_examples_are_not_applied_by_the_kustomization() -> None:
    kinds = {o["kind"] for o in RENDERED}
    assert "BaseModel" not in kinds and "ClusterBaseModel" not in kinds


def test_every_namespaced_object_is_in_the_ome_namespace_except_the_events_role() -> None:
    cluster_kinds = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in RENDERED:
        if obj["kind"] in cluster_kinds:
            continue
        if obj["metadata"]["name"] == "ome-model-agent-events":  # cluster-scoped CRs' events
            assert obj["kind"] in {"Role", "RoleBinding"}
            assert obj["metadata"]["namespace"] == "default"
        else:
            assert obj["metadata"].get("namespace") == "ome", identity(obj)


# --- schemas --------------------------------------------------------------------------------


def every_yaml_object() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or "examples" in path.parts:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield f"{path.relative_to(MANIFESTS)}:{doc['kind']}/{doc['metadata']['name']}", doc


ALL_OBJECTS = dict(every_yaml_object()) | {
    f"generated:{o['kind']}/{o['metadata']['name']}": o for o in the("ConfigMap", MONITORING)
}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    "name", sorted(k for k, v in ALL_OBJECTS.items() if v["kind"] not in OPERATOR_KINDS)
)
def test_objects_validate_strictly_against_the_kubernetes_openapi_schema(
    name: str, version: str
) -> None:
    kubernetes_validate.validate(ALL_OBJECTS[name], version, strict=True)


def test_a_wrong_field_is_caught_by_the_schema_validation() -> None:
    daemonset = json.loads(json.dumps(one("DaemonSet")))
    daemonset["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, K8S_VERSIONS[-1], strict=True)


_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_LABELS = {"type": "object", "additionalProperties": _STR}
_META = {
    "type": "object",
    "required": ["name", "namespace"],
    "additionalProperties": False,
    "properties": {"name": _STR, "namespace": _STR, "labels": _LABELS, "annotations": _LABELS},
}
#: The Prometheus Operator (monitoring.coreos.com/v1) fields manifests/ uses, closed to others.
OPERATOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"matchNames": _STRS, "any": {"type": "boolean"}},
                    },
                    "selector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"matchLabels": _LABELS},
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": _STR,
                                "path": {"type": "string", "pattern": "^/"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                "scrapeTimeout": {
                                    "type": "string",
                                    "pattern": "^[0-9]+(ms|s|m|h)$",
                                },
                                "honorLabels": {"type": "boolean"},
                                "relabelings": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "sourceLabels": _STRS,
                                            "targetLabel": _STR,
                                            "regex": _STR,
                                            "replacement": _STR,
                                            "action": {
                                                "enum": [
                                                    "replace",
                                                    "keep",
                                                    "drop",
                                                    "labeldrop",
                                                    "labelkeep",
                                                    "labelmap",
                                                ]
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": _STR,
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["alert", "expr"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {
                                                "type": "string",
                                                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                                            },
                                            "expr": _STR,
                                            "for": {
                                                "type": "string",
                                                "pattern": "^[0-9]+(ms|s|m|h|d)$",
                                            },
                                            "labels": _LABELS,
                                            "annotations": _LABELS,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
}


@pytest.mark.parametrize("kind", sorted(OPERATOR_KINDS))
def test_prometheus_operator_objects_validate(kind: str) -> None:
    jsonschema.validate(one(kind), OPERATOR_SCHEMAS[kind])


def test_the_crds_in_the_kustomization_validate_the_examples() -> None:
    schemas = {
        crd["spec"]["names"]["kind"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for crd in the("CustomResourceDefinition")
    }
    examples = [doc for _, doc in example_objects() if doc["kind"] in schemas]
    assert examples
    for doc in examples:
        jsonschema.validate(doc, schemas[doc["kind"]])


def example_objects() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in sorted((MANIFESTS / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    "name",
    sorted(k for k, v in example_objects() if v["kind"] not in ("BaseModel", "ClusterBaseModel")),
)
def test_the_other_examples_validate_strictly_against_the_kubernetes_openapi_schema(
    name: str, version: str
) -> None:
    kubernetes_validate.validate(dict(example_objects())[name], version, strict=True)


# --- PromQL over the agent's metrics --------------------------------------------------------

PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
    "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "count_values", "delta",
    "deriv", "exp", "floor", "group", "histogram_quantile", "idelta", "increase", "irate",
    "label_join", "label_replace", "last_over_time", "ln", "log2", "log10", "max",
    "max_over_time", "min", "min_over_time", "predict_linear", "quantile", "quantile_over_time",
    "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev",
    "stddev_over_time", "stdvar", "sum", "sum_over_time", "time", "timestamp", "topk", "vector",
}  # fmt: skip
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
#: Series Prometheus itself generates for every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def exposed_series_names() -> set[str]:
    """Every series name the agent's registry can expose, with the type suffixes."""
    names: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
    }
    for family in metrics.Metrics(prom.CollectorRegistry()).registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


EXPOSED = exposed_series_names()


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, function names) used by a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without)\s*\([^()]*\)\s*", "", text)  # sum by (x) (...) -> sum(...)
    text = re.sub(r"\b(on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    assert text.count("(") == text.count(")"), f"unbalanced parentheses: {expr}"
    metric_names, functions = set(), set()
    modifiers = {"by", "without", "on", "ignoring", "group_left", "group_right"}
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if word in modifiers or word.lower() in PROMQL_KEYWORDS:
            continue
        (functions if call else metric_names).add(word)
    return metric_names, functions


def test_the_promql_name_extractor_finds_metrics_and_functions() -> None:
    names, functions = promql_names(
        'sum by (node) (rate(foo_total{job="x", a=~"b.*"}[5m])) / on (node) bar > 1e9'
    )
    assert names == {"foo_total", "bar"} and functions == {"sum", "rate"}


def rule_expressions() -> list[tuple[str, str]]:
    return [
        (rule["alert"], rule["expr"])
        for group in one("PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
    ]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        one("ConfigMap", "ome-model-agent-dashboard")["data"]["grafana-dashboard.json"]
    )
    return data


def dashboard_expressions() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']}/{target['refId']}", target["expr"])
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


@pytest.mark.parametrize(("where", "expr"), rule_expressions() + dashboard_expressions())
def test_every_expression_names_only_metrics_the_agent_exposes(where: str, expr: str) -> None:
    names, functions = promql_names(expr)
    assert names, f"{where}: no metric in {expr}"
    assert names <= EXPOSED | PROMETHEUS_SERIES, f"{where}: unknown {names - EXPOSED}"
    assert functions <= PROMQL_FUNCTIONS, f"{where}: unknown function {functions}"


def test_alerts_cover_failures_down_stuck_checksums_disk_and_peers() -> None:
    used = set().union(*(promql_names(expr)[0] for _, expr in rule_expressions()))
    assert {
        "model_agent_downloads_failed_total",
        "up",
        "model_agent_download_in_progress_bytes",
        "model_agent_md5_checksum_failed_total",
        "model_agent_filesystem_free_bytes",
        "model_agent_disk_waiting_downloads",
        "model_agent_peer_rejections_total",
        "model_agent_peer_requests_total",
    } <= used


def test_dashboard_panels_have_unique_ids_and_cover_the_contract_metrics() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    used = set().union(*(promql_names(expr)[0] for _, expr in dashboard_expressions()))
    for name in (
        "model_agent_downloads_success_total",
        "model_agent_downloads_failed_total",
        "model_agent_download_bytes_total",
        "model_agent_active_workers",
        "model_agent_task_queue_depth",
        "model_agent_download_duration_seconds_bucket",
        "model_agent_verifications_total",
        "model_agent_md5_checksum_failed_total",
        "model_agent_rate_limit_total",
        "model_agent_rate_limit_wait_seconds_sum",
        "model_agent_configmap_operations_total",
        "model_agent_verification_duration_seconds_bucket",
        "model_agent_model_disk_bytes",
        "model_agent_disk_partial_bytes",
        "model_agent_disk_orphan_bytes",
        "model_agent_disk_waiting_downloads",
        "model_agent_peer_served_bytes_total",
        "model_agent_peer_requests_total",
        "model_agent_peer_rejections_total",
    ):
        assert name in used, name
    titles = {panel["title"] for panel in board["panels"]}
    assert "Storage usage per node" in titles


# --- the DaemonSet and friends --------------------------------------------------------------


def container() -> dict[str, Any]:
    [main] = one("DaemonSet")["spec"]["template"]["spec"]["containers"]
    return dict(main)


#: What the downward API gives the fieldRefs the DaemonSet uses, on one node.
DOWNWARD = {"spec.nodeName": "node-1", "metadata.namespace": "ome", "status.podIP": "10.42.0.7"}


def agent_environ() -> dict[str, str]:
    """The container's environment as the kubelet builds it from the DaemonSet's env."""
    environ = {}
    for entry in container()["env"]:
        source = entry.get("valueFrom", {})
        if "value" in entry:
            environ[entry["name"]] = entry["value"]
        elif "fieldRef" in source:
            environ[entry["name"]] = DOWNWARD[source["fieldRef"]["fieldPath"]]
        else:
            ref = source["configMapKeyRef"]
            environ[entry["name"]] = one("ConfigMap", ref["name"])["data"][ref["key"]]
    return environ


def agent_settings() -> settings.Settings:
    args = cli.build_parser().parse_args(["run", *container()["args"]])
    flags = {f.field: getattr(args, f.field, None) for f in settings.FLAGS}
    return settings.resolve(flags, agent_environ())


def test_daemonset_args_are_valid_run_flags() -> None:
    config = agent_settings()
    assert config.models_root_dir == "/raid/models"  # OME's root: its samples' paths lie under it
    assert config.log_format == "json"


def test_the_daemonset_turns_peering_on_with_the_pod_ip_and_the_token_secret() -> None:
    """The peer server listens on the container port named ``peer``, advertises the pod IP
    (downward API) and reads the token from the Secret, mounted read-only and not optional,
    readable by the agent's group only."""
    config = agent_settings()
    assert config.peer_port == port_number("peer") == 8090
    assert config.peer_address == DOWNWARD["status.podIP"]
    env = {e["name"]: e for e in container()["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert config.peer_token_file is not None
    token = pathlib.PurePosixPath(config.peer_token_file)
    [mount] = [m for m in container()["volumeMounts"] if m["mountPath"] == str(token.parent)]
    assert mount["readOnly"] is True and "subPath" not in mount  # subPath never sees updates
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    assert secret["secretName"] == "model-agent-peer-token"
    assert secret["optional"] is False
    assert secret["items"] == [{"key": "token", "path": token.name}]
    assert secret["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert config.peer_tls_cert is None  # plain HTTP unless the operator adds TLS (docs/peers.md)


def test_the_daemonset_without_the_pod_ip_is_refused() -> None:
    """The downward-API variable is what gives the peer server its address."""
    args = cli.build_parser().parse_args(["run", *container()["args"]])
    flags = {f.field: getattr(args, f.field, None) for f in settings.FLAGS}
    environ = agent_environ()
    del environ["POD_IP"]
    with pytest.raises(errors.ConfigError, match="POD_IP"):
        settings.resolve(flags, environ)


def test_the_tls_snippet_of_the_peers_page_fits_the_daemonset() -> None:
    """docs/peers.md's DaemonSet additions for peer TLS validate and give the agent all three
    TLS files (it refuses one or two), from the mounted Secret."""
    page = (ROOT / "docs" / "peers.md").read_text()
    [block] = re.findall(r"```yaml\n(.*?)```", page, flags=re.S)
    snippet = yaml.safe_load(block)
    daemonset = json.loads(json.dumps(one("DaemonSet")))
    pod = daemonset["spec"]["template"]["spec"]
    main = pod["containers"][0]
    main["args"] += snippet["args"]
    main["volumeMounts"] += snippet["volumeMounts"]
    pod["volumes"] += snippet["volumes"]
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(daemonset, version, strict=True)
    args = cli.build_parser().parse_args(["run", *main["args"]])
    config = settings.resolve(
        {f.field: getattr(args, f.field, None) for f in settings.FLAGS}, agent_environ()
    )
    [mount] = snippet["volumeMounts"]
    for path in (config.peer_tls_cert, config.peer_tls_key, config.peer_tls_ca):
        assert path is not None and path.startswith(mount["mountPath"] + "/"), path


def test_daemonset_env_comes_from_the_downward_api_and_the_instance_type_map() -> None:
    env = {e["name"]: e for e in container()["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    ref = env["INSTANCE_TYPE_MAP"]["valueFrom"]["configMapKeyRef"]
    mapping = json.loads(one("ConfigMap", ref["name"])["data"][ref["key"]])
    assert mapping["BM.GPU.H100.8"] == "H100"
    settings.resolve({}, {"INSTANCE_TYPE_MAP": json.dumps(mapping)})  # the agent accepts it


def test_the_instance_type_map_has_every_entry_of_omes() -> None:
    """OME's config/model-agent/configmap.yaml ships 19 entries, CoreWeave and Nebius included."""
    mapping = json.loads(one("ConfigMap", "model-agent-config-map")["data"]["instance-type-map"])
    assert len(mapping) == 19
    assert mapping["gd-8xh100ib-i128"] == "H100"
    assert mapping["gd-8xh200ib-i128"] == "H200"
    assert mapping["gd-8xl40-i128"] == "L40"
    assert mapping["gpu-b200-sxm"] == "B200"
    assert mapping["Standard_ND96isr_H100_v5"] == "H100"


def test_the_agent_runs_where_and_how_omes_does() -> None:
    """GPU nodes only (OME's affinity and toleration), system-node-critical, and NVML visible
    through the NVIDIA runtime without claiming a GPU."""
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {"key": "nvidia.com/gpu", "operator": "In", "values": ["true"]}
    ]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    env = {e["name"]: e.get("value") for e in container()["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    for resources in (container()["resources"].get("limits", {}), container()["resources"]):
        assert "nvidia.com/gpu" not in resources  # no GPU claimed


def port_number(name_or_number: str | int) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    return {p["name"]: p["containerPort"] for p in container()["ports"]}[name_or_number]


def test_probes_hit_the_endpoints_the_agent_serves() -> None:
    config = agent_settings()
    main = container()
    kopf = urllib.parse.urlsplit(config.liveness_endpoint)
    live = main["livenessProbe"]["httpGet"]
    assert (port_number(live["port"]), live["path"]) == (kopf.port, kopf.path) == (8081, "/healthz")
    ready = main["readinessProbe"]["httpGet"]
    assert (port_number(ready["port"]), ready["path"]) == (config.port, "/readyz")
    start = main["startupProbe"]["httpGet"]
    assert port_number(start["port"]) == config.port and start["path"] in {"/livez", "/healthz"}
    startup_budget = (
        main["startupProbe"]["periodSeconds"] * main["startupProbe"]["failureThreshold"]
    )
    assert startup_budget >= 60


def test_the_models_root_is_a_host_path_mounted_where_the_agent_writes() -> None:
    spec = one("DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    root = agent_settings().models_root_dir
    assert volumes[mounts[root]]["hostPath"]["path"] == root
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_the_examples_lie_under_the_daemonsets_models_root() -> None:
    """The agent refuses a storage.path outside --models-root-dir: the examples must fit ours."""
    root = agent_settings().models_root_dir
    examples = sorted((MANIFESTS / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        for body in yaml.safe_load_all(path.read_text()):
            if body and body.get("kind") in ("BaseModel", "ClusterBaseModel"):
                assert spec.parse(body, models_root_dir=root).path.startswith(root + "/"), path


def quantity(text: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


def test_resources_come_from_the_measured_budget_not_100_gib() -> None:
    resources = container()["resources"]
    assert 150 * 2**20 <= quantity(resources["requests"]["memory"]) <= 512 * 2**20
    assert 512 * 2**20 <= quantity(resources["limits"]["memory"]) <= 2 * 2**30
    assert quantity(resources["requests"]["cpu"]) <= 1


def test_the_agent_runs_non_root_read_only_without_capabilities() -> None:
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    context = container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"]
    for init in pod.get("initContainers", []):  # root only to chown, with CHOWN alone
        assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}


def test_service_servicemonitor_and_alerts_point_at_the_agent() -> None:
    pod_labels = one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    service = one("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port_number(port["targetPort"]) == agent_settings().metrics_port
    monitor = one("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == port["name"]
    jobs = {m for _, e in rule_expressions() for m in re.findall(r'job="([^"]+)"', e)}
    assert jobs == {service["metadata"]["name"]}


# --- the peer NetworkPolicy example ---------------------------------------------------------


def peer_policy() -> dict[str, Any]:
    [policy] = [doc for _, doc in example_objects() if doc["kind"] == "NetworkPolicy"]
    return policy


def admits(policy: dict[str, Any], port: int, labels: dict[str, str], namespace: str) -> bool:
    """Whether ``policy`` lets a TCP connection from a pod (``labels`` in ``namespace``) reach
    ``port`` of a pod it selects. Conservative where a selector is not fully modelled: a
    namespace selector or an ipBlock counts as matching every source."""

    def port_matches(entry: dict[str, Any]) -> bool:
        if entry.get("protocol", "TCP") != "TCP":
            return False
        if "port" not in entry:
            return True
        first = port_number(entry["port"])
        return first <= port <= entry.get("endPort", first)

    def pod_matches(selector: dict[str, Any]) -> bool:
        assert set(selector) <= {"matchLabels"}, "only matchLabels is modelled"
        return bool(selector.get("matchLabels", {}).items() <= labels.items())

    for rule in policy["spec"].get("ingress", []):
        if "ports" in rule and not any(port_matches(p) for p in rule["ports"]):
            continue
        if not rule.get("from"):
            return True
        for source in rule["from"]:
            if "ipBlock" in source or "namespaceSelector" in source:
                if "podSelector" not in source or pod_matches(source["podSelector"]):
                    return True
            elif namespace == policy["metadata"]["namespace"] and pod_matches(
                source["podSelector"]
            ):
                return True
    return False


AGENT_NAMESPACE = one("DaemonSet")["metadata"]["namespace"]


def test_the_peer_policy_selects_the_agent_pods_and_only_ingress() -> None:
    policy = peer_policy()
    pod_labels = one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert policy["metadata"]["namespace"] == AGENT_NAMESPACE
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress to the origin untouched


def test_only_agents_reach_the_peer_port_and_every_other_port_stays_open() -> None:
    policy = peer_policy()
    agent = one("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    peer = port_number("peer")
    assert admits(policy, peer, agent, AGENT_NAMESPACE)
    # attacks: any other pod next to the agents, or a pod labelled like an agent elsewhere
    assert not admits(policy, peer, {"app": "inference"}, AGENT_NAMESPACE)
    assert not admits(policy, peer, {}, AGENT_NAMESPACE)
    assert not admits(policy, peer, agent, "default")
    for other in (p["containerPort"] for p in container()["ports"] if p["name"] != "peer"):
        assert admits(policy, other, {}, "monitoring"), other


def test_the_policy_check_catches_a_policy_that_opens_the_peer_port() -> None:
    for opened in (
        {"ports": [{"port": 8000, "endPort": 9000}]},  # a range that covers the peer port
        {"from": [{"namespaceSelector": {}}], "ports": [{"port": "peer"}]},
        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
    ):
        policy = json.loads(json.dumps(peer_policy()))
        policy["spec"]["ingress"].append(opened)
        assert admits(policy, port_number("peer"), {}, "default"), opened


# --- RBAC -----------------------------------------------------------------------------------


def granted(
    namespace: str | None, *, skip_bindings: frozenset[str] | set[str] = frozenset()
) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) the agent's ServiceAccount gets in ``namespace``
    (None: cluster-wide only), ignoring the bindings named in ``skip_bindings``."""
    roles = {("ClusterRole", r["metadata"]["name"]): r for r in the("ClusterRole")}
    roles |= {
        ("Role", r["metadata"]["name"]): r
        for r in the("Role")
        if r["metadata"]["namespace"] == namespace
    }
    bindings = the("ClusterRoleBinding") + [
        b for b in the("RoleBinding") if b["metadata"]["namespace"] == namespace
    ]
    result = set()
    for binding in bindings:
        subjects = {(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]}
        if ("ServiceAccount", "ome-model-agent", "ome") not in subjects:
            continue
        if binding["metadata"]["name"] in skip_bindings:
            continue
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    result.update((group, resource, verb) for verb in rule["verbs"])
    return result


def test_bindings_point_at_existing_roles_and_the_service_account() -> None:
    accounts = {(a["metadata"]["namespace"], a["metadata"]["name"]) for a in the("ServiceAccount")}
    roles = {(r["kind"], r["metadata"]["name"]) for r in the("ClusterRole") + the("Role")}
    assert one("DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"] == "ome-model-agent"
    for binding in the("ClusterRoleBinding") + the("RoleBinding"):
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles
        for subject in binding["subjects"]:
            assert (subject["namespace"], subject["name"]) in accounts


NEEDED_CLUSTER_WIDE = {
    # the spec write-back reads the newest object before it patches
    ("ome.io", "basemodels", "get"),
    ("ome.io", "clusterbasemodels", "get"),
    ("ome.io", "basemodels", "list"),
    ("ome.io", "basemodels", "watch"),
    ("ome.io", "clusterbasemodels", "list"),
    ("ome.io", "clusterbasemodels", "watch"),
    # spec write-back (on by default): a resourceVersion-guarded merge patch; update is OME's
    # verb for the same write, granted so that switching agents needs no RBAC change.
    ("ome.io", "basemodels", "patch"),
    ("ome.io", "clusterbasemodels", "patch"),
    ("ome.io", "basemodels", "update"),
    ("ome.io", "clusterbasemodels", "update"),
    ("", "nodes", "get"),
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    ("", "nodes", "patch"),
    ("", "secrets", "get"),
    ("", "events", "create"),
}
NEEDED_IN_OME = {
    ("", "configmaps", "get"),
    # peer discovery (--peer-port): the node ConfigMaps that hold a model, and their address
    ("", "configmaps", "list"),
    ("", "configmaps", "create"),
    ("", "configmaps", "patch"),
    ("", "secrets", "get"),
}
#: Events about ClusterBaseModels live in default (API server rule for cluster-scoped objects).
NEEDED_IN_DEFAULT = {("", "events", "create")}


def test_rbac_grants_every_verb_the_agent_and_kopf_use() -> None:
    assert NEEDED_CLUSTER_WIDE <= granted(None)
    assert NEEDED_IN_OME <= granted("ome")
    assert NEEDED_IN_DEFAULT <= granted("default")


def test_the_narrow_install_still_serves_clusterbasemodels() -> None:
    """Without the cluster-wide binding for model namespaces (the tighter install), the
    ConfigMap, ClusterBaseModel secrets and ClusterBaseModel events still work."""
    skip = {"ome-model-agent-model-namespaces"}
    assert NEEDED_IN_OME <= granted("ome", skip_bindings=skip)
    assert NEEDED_IN_DEFAULT <= granted("default", skip_bindings=skip)
    assert ("", "secrets", "get") not in granted(None, skip_bindings=skip)


def test_rbac_grants_nothing_beyond_what_is_needed() -> None:
    assert granted(None) == NEEDED_CLUSTER_WIDE
    assert granted("ome") - granted(None) == {
        ("", "configmaps", "get"),
        ("", "configmaps", "list"),
        ("", "configmaps", "create"),
        ("", "configmaps", "patch"),
    }
    assert granted("default") - granted(None) == set()
    for role in the("ClusterRole") + the("Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    assert not {("", "secrets", v) for v in ("list", "watch")} & granted("ome")
    assert not {("", "namespaces", v) for v in ("get", "list", "watch")} & granted("ome")


# --- the Dockerfile -------------------------------------------------------------------------

DOCKERFILE = dockerfile.parse_file(str(ROOT / "Dockerfile"))
IMAGE_RE = re.compile(
    r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def stages() -> list[tuple[str, str]]:
    """(resolved base image, stage name) per FROM, with global ARG defaults substituted."""
    args: dict[str, str] = {}
    result = []
    for command in DOCKERFILE:
        if command.cmd == "FROM":
            break
        if command.cmd == "ARG":
            name, _, default = command.value[0].partition("=")
            args[name] = default
    for command in DOCKERFILE:
        if command.cmd == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)],
                           command.value[0])  # fmt: skip
            assert len(command.value) == 3 and command.value[1].upper() == "AS", command.original
            result.append((image, command.value[2]))
    return result


def test_dockerfile_stages_and_base_images_parse() -> None:
    found = stages()
    assert len(found) >= 2, "multi-stage build expected"
    names = [name for _, name in found]
    assert len(names) == len(set(names))
    for image, _ in found:
        assert IMAGE_RE.match(image), image
        assert "slim" in image or "distroless" in image, f"{image} is not a slim runtime"
    seen: set[str] = set()
    for command in DOCKERFILE:
        if command.cmd == "FROM":
            seen.add(command.value[2])
        for flag in command.flags:
            match = re.search(r"(?:^--from=|[,=]from=)([\w.-]+)", flag)
            if match:
                assert match.group(1) in seen - {command.value[-1]}, command.original


def test_dockerfile_entrypoint_is_the_packages_console_script_with_run() -> None:
    [entrypoint] = [c for c in DOCKERFILE if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json, "exec form, so SIGTERM reaches the agent"
    assert entrypoint.value == ("model-agent", "run")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts[entrypoint.value[0]].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    args = cli.build_parser().parse_args([entrypoint.value[1], "--node-name", "n"])
    assert args.command == "run"


def test_the_image_defaults_to_root_and_our_daemonset_runs_it_as_65532() -> None:
    """OME's DaemonSet sets no securityContext and mounts a root-owned hostPath: the image's
    default user must be able to write it. Our DaemonSet is hardened explicitly."""
    final = DOCKERFILE[max(i for i, c in enumerate(DOCKERFILE) if c.cmd == "FROM") :]
    users = [c.value[0].split(":")[0] for c in final if c.cmd == "USER"]
    assert users in ([], ["0"], ["root"])
    created = " ".join(c.value[0] for c in final if c.cmd == "RUN")
    assert "--uid 65532" in created
    pod = one("DaemonSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["runAsNonRoot"] is True
    exposed = {int(p) for c in final if c.cmd == "EXPOSE" for p in c.value}
    assert {p["containerPort"] for p in container()["ports"]} <= exposed


def dockerignored(path: str) -> bool:
    """Docker's .dockerignore semantics for the patterns used: last match wins, ``!`` re-includes,
    a pattern matching a directory covers everything below it."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if pattern == "**" or any(re.fullmatch(regex, p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_copies_exist_and_are_not_dockerignored() -> None:
    for command in DOCKERFILE:
        if command.cmd == "COPY" and not any(f.startswith("--from") for f in command.flags):
            for source in command.value[:-1]:
                assert (ROOT / source).exists(), source
                assert not dockerignored(source), f"{source} is excluded by .dockerignore"
    assert dockerignored(".venv") and dockerignored(".git") and dockerignored("tests")
    assert not dockerignored("model_agent/http.py")
