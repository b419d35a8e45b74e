"""A model body becomes a validated, frozen ModelSpec.

Aspects: identity of both kinds (cluster models have no namespace); default destination under
the models root named by the ConfigMap key; explicit path rules; storage parameters, secret,
download policy, model format, Serving metadata, skip-parsing annotation and reserve label;
pvc:// is never selected; validation errors naming the field (URI, path, auth, policy,
selectors, missing storage).
"""

from __future__ import annotations

import copy

import pytest

from model_agent import errors, selection, spec

ROOT = "/mnt/models"


def body(kind="BaseModel", name="llama", namespace="default", **storage):
    storage.setdefault("storageUri", "hf://meta/llama@main")
    metadata = {"name": name, "uid": "u-1"}
    if kind == "BaseModel":
        metadata["namespace"] = namespace
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"storage": storage, "modelFormat": {"name": "safetensors"}},
    }


def test_a_basemodel_gets_a_default_path_named_by_its_configmap_key():
    parsed = spec.parse(body(), models_root_dir=ROOT)
    assert parsed.ref.key == ("BaseModel", "default", "llama")
    assert parsed.ref.uid == "u-1"
    assert parsed.path == "/mnt/models/default.basemodel.llama"
    assert parsed.model_format == "safetensors"
    assert parsed.serving and parsed.analyse and not parsed.reserve
    assert parsed.download_policy == "AlwaysDownload"


def test_a_clusterbasemodel_has_no_namespace_even_if_one_is_sent():
    raw = body(kind="ClusterBaseModel", name="big")
    raw["metadata"]["namespace"] = "ignored"
    parsed = spec.parse(raw, models_root_dir=ROOT + "/")
    assert parsed.ref.namespace == ""
    assert parsed.ref.configmap_key == "clusterbasemodel.big"
    assert parsed.ref.label_key == "models.ome.io/clusterbasemodel.big"
    assert parsed.path == "/mnt/models/clusterbasemodel.big"


def test_explicit_paths_are_normalised_and_must_live_under_the_root():
    parsed = spec.parse(body(path=ROOT + "//llama/"), models_root_dir=ROOT)
    assert parsed.path == ROOT + "/llama"
    with pytest.raises(errors.InvalidSpecError, match="outside --models-root-dir"):
        spec.parse(body(path="/etc/ssh"), models_root_dir=ROOT)
    with pytest.raises(errors.InvalidSpecError, match="outside --models-root-dir"):
        spec.parse(body(path=ROOT + "-evil/llama"), models_root_dir=ROOT)


def test_parameters_secret_labels_and_annotations_are_read():
    raw = body(
        storageUri="oci://n/ns/b/bucket/o/llama",
        parameters={"auth": "UserPrincipal", "region": "us-ashburn-1", "secretKey": "hf"},
        key="hf-secret",
        downloadPolicy="ReuseIfExists",
    )
    raw["metadata"]["labels"] = {"models.ome/reserve-model-artifact": "true"}
    raw["metadata"]["annotations"] = {"ome.oracle.com/skip-config-parsing": "true"}
    raw["spec"]["additionalMetadata"] = {"type": "Training"}
    parsed = spec.parse(raw, models_root_dir=ROOT)
    assert parsed.scheme == "oci"
    assert parsed.parameters["region"] == "us-ashburn-1"
    assert parsed.secret_name == "hf-secret"
    assert parsed.secret_key == "hf"
    assert parsed.download_policy == "ReuseIfExists"
    assert parsed.reserve and not parsed.analyse and not parsed.serving


def test_the_token_key_defaults_to_token():
    assert spec.parse(body(key="s"), models_root_dir=ROOT).secret_key == "token"


def test_pvc_models_are_never_selected_and_others_follow_their_selector():
    node = selection.Node(name="n", labels={"gpu": "h100"})
    pvc = spec.parse(body(storageUri="pvc://claim/models/llama"), models_root_dir=ROOT)
    assert not pvc.handled and not pvc.selects(node)
    chosen = spec.parse(body(nodeSelector={"gpu": "h100"}), models_root_dir=ROOT)
    assert chosen.selects(node)
    other = spec.parse(body(nodeSelector={"gpu": "a100"}), models_root_dir=ROOT)
    assert not other.selects(node)


def test_equal_bodies_give_equal_specs_and_a_new_revision_is_another_source():
    first = spec.parse(body(), models_root_dir=ROOT)
    assert first == spec.parse(copy.deepcopy(body()), models_root_dir=ROOT)
    newer = spec.parse(body(storageUri="hf://meta/llama@v2"), models_root_dir=ROOT)
    assert not first.same_source(newer)


def test_a_changed_file_filter_or_format_is_another_file_set_but_other_fields_are_not():
    """allow/ignore and TensorRT-LLM filtering belong to the identity (a running download is
    restarted for them); a format fill on a safetensors model (spec write-back) does not."""
    first = spec.parse(body(parameters={"allow": "*.json"}), models_root_dir=ROOT)
    assert not first.same_source(spec.parse(body(), models_root_dir=ROOT))
    ignored = spec.parse(body(parameters={"allow": "*.json", "ignore": "x"}), models_root_dir=ROOT)
    assert not first.same_source(ignored)
    raw = body(parameters={"allow": "*.json"})
    raw["spec"]["modelFormat"] = {"name": "tensorrtllm"}
    assert not first.same_source(spec.parse(raw, models_root_dir=ROOT))
    raw["spec"]["modelFormat"] = {"name": "safetensors", "version": "1.0.0"}
    raw["spec"]["modelType"] = "llama"
    assert first.same_source(spec.parse(raw, models_root_dir=ROOT))


def test_a_deletion_timestamp_means_deleting():
    raw = body()
    assert not spec.is_deleting(raw)
    raw["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert spec.is_deleting(raw)


@pytest.mark.parametrize(
    ("raw", "error", "field"),
    [
        (body(storageUri="hf://"), errors.InvalidURIError, "hf://"),
        (body(storageUri="ftp://x/y"), errors.InvalidURIError, "scheme"),
        (body(path="relative/dir"), errors.InvalidSpecError, "spec.storage.path"),
        (body(path="/mnt/models/../etc"), errors.InvalidSpecError, "spec.storage.path"),
        (body(path="/"), errors.InvalidSpecError, "spec.storage.path"),
        (body(path=ROOT), errors.InvalidSpecError, "spec.storage.path"),
        (body(path=ROOT + "/.model-agent/x"), errors.InvalidSpecError, "state directory"),
        (body(path=ROOT + "/.a.model-agent-next"), errors.InvalidSpecError, "reserved name"),
        (body(path=ROOT + "/a/.model-agent-partial/x"), errors.InvalidSpecError, "reserved"),
        (body(path=ROOT + "/.a.model-agent-old/b"), errors.InvalidSpecError, "reserved name"),
        (body(path="/a\\b"), errors.InvalidSpecError, "spec.storage.path"),
        (
            body(storageUri="oci://n/ns/b/b/o/p", parameters={"auth": "Password"}),
            errors.InvalidSpecError,
            "spec.storage.parameters.auth",
        ),
        (body(downloadPolicy="Sometimes"), errors.InvalidSpecError, "downloadPolicy"),
        (body(key=""), errors.InvalidSpecError, "spec.storage.key"),
        (body(parameters={"a": {"b": 1}}), errors.InvalidSpecError, "spec.storage.parameters[a]"),
        (
            body(nodeSelector={f"k{i}": "v" for i in range(100)}),
            errors.InvalidSpecError,
            "spec.storage.nodeSelector",
        ),
        (
            body(
                nodeAffinity={
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "a", "operator": "Near"}]}
                        ]
                    }
                }
            ),
            errors.InvalidSpecError,
            "operator",
        ),
        (
            {"kind": "BaseModel", "metadata": {"name": "x", "namespace": "d"}},
            errors.InvalidSpecError,
            "spec",
        ),
        (
            {"kind": "BaseModel", "metadata": {"name": "x", "namespace": "d"}, "spec": {}},
            errors.InvalidSpecError,
            "spec.storage",
        ),
        ({"kind": "Pod", "metadata": {"name": "x"}}, errors.InvalidSpecError, "BaseModel"),
        ({"kind": "BaseModel", "metadata": {"name": "x"}}, errors.InvalidSpecError, "namespace"),
    ],
)
def test_invalid_specs_are_rejected_naming_the_field(raw, error, field):
    with pytest.raises(error) as caught:
        spec.parse(raw, models_root_dir=ROOT)
    assert field in str(caught.value)


def test_identity_survives_an_invalid_spec():
    raw = body(path="relative")
    ref = spec.identify(raw)
    assert ref.configmap_key == "default.basemodel.llama"
    assert str(ref) == "BaseModel default/llama"


def test_the_selector_of_an_invalid_spec_still_decides_where_it_fails():
    node = selection.Node(name="n", labels={"gpu": "h100"})
    elsewhere = spec.placement_of(body(storageUri="ftp://x", nodeSelector={"gpu": "a100"}))
    assert elsewhere is not None and not selection.matches(elsewhere, node)
    here = spec.placement_of(body(storageUri="ftp://x", nodeSelector={"gpu": "h100"}))
    assert here is not None and selection.matches(here, node)
    assert spec.placement_of(body(storageUri="ftp://x", nodeSelector=["bad"])) is None
    assert spec.placement_of({"kind": "BaseModel", "metadata": {"name": "x"}}) is None


def test_a_malformed_pvc_model_selects_no_node():
    placement = spec.placement_of(body(storageUri="pvc://"))
    assert placement is not None
    assert not selection.matches(placement, selection.Node(name="n", labels={}))


def test_large_unrelated_annotations_do_not_invalidate_a_spec():
    raw = body()
    raw["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "x" * 100_000
    }
    raw["metadata"]["labels"] = {f"team-{i}": "a" for i in range(2000)}
    parsed = spec.parse(raw, models_root_dir=ROOT)
    assert parsed.analyse and not parsed.reserve
