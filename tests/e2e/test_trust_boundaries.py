"""A model author attacks the real ``model-agent run`` process (docs/security.md).

Aspects: a BaseModel in ``team-a`` whose ``parameters.endpoint`` names the tenant's own server
(a second local hub that records every request) is Failed naming ``parameters.endpoint`` and
``--credential-hosts``, and the tenant's server receives no request carrying the node-wide
``HF_TOKEN``, the team's Secret token or an OCI signature, while the configured hub and an
admin-listed mirror do get the tokens; a ``team-b`` model whose path is ``team-a``'s directory
(equal, inside, around, or through a symlink) is Failed with ``PathConflict`` naming the holder,
the holder's files and label stay, the verdict is the same after a restart, and deleting the
holder lets the newcomer in; deleting a model removes only the files it placed (an unknown file
and another model's files stay); a symlink planted in a model directory between runs, or a path
that resolves out of the models root, leads nowhere outside.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fault import support
from tests.harness import hub
from tests.harness.kube import FakeKube
from tests.harness.operator import agent_process

pytestmark = pytest.mark.timeout(180)
NODE = "node-a"
NODE_TOKEN = "Nd4PlantedNodeWideTokenGg7Pp"
SECRET_TOKEN = "Sc6PlantedTeamSecretTokenTt1Vv"


@pytest.fixture
def tenant_hub() -> Iterator[hub.LocalHub]:
    """The tenant's own server: a hub that serves anything and records every request."""
    with hub.LocalHub().serve_in_thread() as server:
        yield server


@pytest.fixture
def mirror_hub() -> Iterator[hub.LocalHub]:
    """A mirror the admin allow-listed."""
    with hub.LocalHub().serve_in_thread() as server:
        yield server


def namespace(kube: FakeKube, name: str) -> None:
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def secret(name: str, ns: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


def digests(directory: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def settle(kube: FakeKube, view: support.View, agent: Any, wanted: dict[str, str]) -> None:
    try:
        for key, status in wanted.items():
            kube.wait_for_sync(lambda k=key, s=status: view.settled(k, s), 60)
    except TimeoutError:
        raise AssertionError((view.data(), agent.log_text()[-6000:])) from None


def test_a_tenant_endpoint_never_receives_a_credential(
    kube_api: FakeKube,
    hf_hub_in_thread: hub.LocalHub,
    tenant_hub: hub.LocalHub,
    mirror_hub: hub.LocalHub,
    oci_store_in_thread: Any,
    tmp_path: pathlib.Path,
) -> None:
    official, view = hf_hub_in_thread, support.View(kube_api, NODE)
    files = support.model_files(tmp_path / "src")
    official.add_repo("org/private", files, private=True, token=SECRET_TOKEN)
    official.add_repo("org/node", files, private=True, token=NODE_TOKEN)
    mirror_hub.add_repo("org/mirrored", files, private=True, token=SECRET_TOKEN)
    for server in (tenant_hub, mirror_hub):
        server.add_repo("org/bait", files)  # public: it would serve anyone
    namespace(kube_api, "team-a")
    kube_api.add_node(NODE)
    kube_api.create(secret("hf", "team-a", SECRET_TOKEN))
    oci_config = support.write_oci_config(oci_store_in_thread, tmp_path / "oci")
    bait = {"endpoint": tenant_hub.endpoint}
    models = {
        "team-a.basemodel.env-token": (
            "Failed",
            support.model("BaseModel", "env-token", "hf://org/bait", namespace="team-a",
                          parameters=bait),
        ),
        "team-a.basemodel.secret-token": (
            "Failed",
            support.model("BaseModel", "secret-token", "hf://org/bait", namespace="team-a",
                          key="hf", parameters=bait),
        ),
        "team-a.basemodel.signature": (
            "Failed",
            support.model("BaseModel", "signature", "oci://n/ns/b/bucket/o/m",
                          namespace="team-a", parameters={"auth": "UserPrincipal", **bait}),
        ),
        "team-a.basemodel.official": (
            "Ready",
            support.model("BaseModel", "official", "hf://org/private", namespace="team-a",
                          key="hf"),
        ),
        "team-a.basemodel.node": (
            "Ready",
            support.model("BaseModel", "node", "hf://org/node", namespace="team-a"),
        ),
        "team-a.basemodel.mirror": (
            "Ready",
            support.model("BaseModel", "mirror", "hf://org/mirrored", namespace="team-a",
                          key="hf", parameters={"endpoint": mirror_hub.endpoint}),
        ),
    }  # fmt: skip
    mirror_host = mirror_hub.endpoint.removeprefix("http://")
    with support.running_agent(
        lambda: agent_process(
            kube_api,
            NODE,
            args=("--config-map-sync-interval", "0.2", "--credential-hosts", mirror_host),
            env={
                "HF_ENDPOINT": official.endpoint,
                "HF_TOKEN": NODE_TOKEN,
                "OCI_CONFIG_FILE": str(oci_config),
            },
            workdir=tmp_path / "node",
            timeout=60,
        )
    ) as agent:
        for _, body in models.values():
            kube_api.create(body)
        settle(kube_api, view, agent, {k: s for k, (s, _) in models.items()})
        code, log = agent.stop()
    assert code == 0, log[-3000:]
    for key, (status, _) in models.items():
        if status == "Failed":
            entry = view.entry(key) or {}
            assert entry.get("reason") == "EndpointNotAllowed", entry
            assert "parameters.endpoint" in entry.get("message", ""), entry
            assert "--credential-hosts" in entry.get("message", ""), entry
    # The tokens went where the admin said (so the search below can find them if they leak).
    assert any(SECRET_TOKEN in json.dumps(r.headers) for r in official.log)
    assert any(NODE_TOKEN in json.dumps(r.headers) for r in official.log)
    assert any(SECRET_TOKEN in json.dumps(r.headers) for r in mirror_hub.log)
    planted = [NODE_TOKEN, SECRET_TOKEN]
    planted += [base64.b64encode(t.encode()).decode() for t in planted]
    for record in list(tenant_hub.log):
        seen = json.dumps({"path": record.path, "headers": record.headers})
        assert "authorization" not in {h.lower() for h in record.headers}, seen
        for token in planted:
            assert token not in seen, f"{token[:10]}... reached the tenant's server"
    assert list(tenant_hub.log) == []  # not even an anonymous request: refused before any


def model_at(name: str, ns: str, repo: str, path: str | None) -> dict[str, Any]:
    storage: dict[str, Any] = {} if path is None else {"path": path}
    return support.model("BaseModel", name, f"hf://{repo}", namespace=ns, **storage)


def test_another_namespace_cannot_take_or_delete_a_models_directory(
    kube_api: FakeKube, hf_hub_in_thread: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    hub_, view = hf_hub_in_thread, support.View(kube_api, NODE)
    hub_.add_repo("team/a", support.model_files(tmp_path / "a", extra={"sub/a.txt": b"A" * 64}))
    hub_.add_repo("team/b", support.model_files(tmp_path / "b", extra={"b.txt": b"B" * 64}))
    for ns in ("team-a", "team-b"):
        namespace(kube_api, ns)
    kube_api.add_node(NODE)
    workdir = tmp_path / "node"
    root = workdir / "models"
    own = root / "shared" / "a"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep me")
    root.mkdir(parents=True)
    (root / "alias").symlink_to(own)  # a second name for team-a's directory
    (root / "escape").symlink_to(outside)
    make = lambda: agent_process(  # noqa: E731
        kube_api,
        NODE,
        args=("--config-map-sync-interval", "0.2"),
        env={"HF_ENDPOINT": hub_.endpoint},
        workdir=workdir,
        timeout=60,
    )
    holder = "team-a.basemodel.a"
    newcomers = {
        "team-b.basemodel.same": model_at("same", "team-b", "team/b", str(own)),
        "team-b.basemodel.inside": model_at("inside", "team-b", "team/b", str(own / "sub")),
        "team-b.basemodel.around": model_at("around", "team-b", "team/b", str(root / "shared")),
        "team-b.basemodel.alias": model_at("alias", "team-b", "team/b", str(root / "alias")),
    }
    with support.running_agent(make) as agent:
        kube_api.create(model_at("a", "team-a", "team/a", str(own)))
        settle(kube_api, view, agent, {holder: "Ready"})
        before = digests(own)
        (own / "notes.txt").write_text("not the agent's")
        for body in newcomers.values():
            kube_api.create(body)
        kube_api.create(model_at("out", "team-b", "team/b", str(root / "escape" / "m")))
        settle(kube_api, view, agent, dict.fromkeys(newcomers, "Failed"))
        settle(kube_api, view, agent, {"team-b.basemodel.out": "Failed"})
        for key in newcomers:
            entry = view.entry(key) or {}
            assert entry.get("reason") == "PathConflict", entry
            assert holder in entry.get("message", ""), entry
        assert view.entry("team-b.basemodel.out")["reason"] == "UnsafePath"
        assert view.settled(holder, "Ready")
        assert digests(own) == {**before, "notes.txt": digests(own)["notes.txt"]}
        # Deleting a newcomer (which holds nothing) removes nothing of the holder's.
        kube_api.delete("basemodels", "inside", "team-b")
        kube_api.wait_for_sync(lambda: view.entry("team-b.basemodel.inside") is None, 30)
        code, log = agent.stop()
    assert code == 0, log[-3000:]
    assert sorted(os.listdir(outside)) == ["victim.txt"]
    # After a restart the same models get the same verdicts.
    with support.running_agent(make) as agent:
        settle(kube_api, view, agent, {holder: "Ready"})
        remaining = set(newcomers) - {"team-b.basemodel.inside"}
        settle(kube_api, view, agent, dict.fromkeys(remaining, "Failed"))
        assert view.entry("team-b.basemodel.same")["reason"] == "PathConflict"
        assert {k: v for k, v in digests(own).items() if k != "notes.txt"} == before
        # The holder goes: only its own files go, and a waiting newcomer gets the directory.
        for name in ("around", "alias", "out"):
            kube_api.delete("basemodels", name, "team-b")
        kube_api.delete("basemodels", "a", "team-a")
        settle(kube_api, view, agent, {"team-b.basemodel.same": "Ready"})
        code, log = agent.stop()
    assert code == 0, log[-3000:]
    assert (own / "notes.txt").exists(), log[-12000:]
    assert (own / "notes.txt").read_text() == "not the agent's"
    assert not (own / "sub").exists()  # team-a's sub/a.txt went, and its emptied folder
    assert (own / "b.txt").exists(), log[-12000:]
    assert (own / "b.txt").read_bytes() == b"B" * 64
    assert sorted(os.listdir(outside)) == ["victim.txt"]
    assert "left" in log and "notes.txt" in log  # the leftover is logged, not deleted


def test_symlinks_planted_in_a_model_directory_between_runs_lead_nowhere(
    kube_api: FakeKube, hf_hub_in_thread: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    hub_, view = hf_hub_in_thread, support.View(kube_api, NODE)
    files = support.model_files(tmp_path / "src", extra={"sub/x.txt": b"X" * 64})
    hub_.add_repo("org/m", files)
    kube_api.add_node(NODE)
    workdir = tmp_path / "node"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.txt").write_text("victim")
    (outside / "config.json").write_text("victim config")
    make = lambda: agent_process(  # noqa: E731
        kube_api,
        NODE,
        args=("--config-map-sync-interval", "0.2"),
        env={"HF_ENDPOINT": hub_.endpoint},
        workdir=workdir,
        timeout=60,
    )
    key = "default.basemodel.m"
    destination = workdir / "models" / key
    with support.running_agent(make) as agent:
        kube_api.create(support.model("BaseModel", "m", "hf://org/m"))
        settle(kube_api, view, agent, {key: "Ready"})
        code, log = agent.stop()
    assert code == 0, log[-3000:]
    # Between runs: a file becomes a symlink out; a folder becomes a symlink out.
    (destination / "config.json").unlink()
    (destination / "config.json").symlink_to(outside / "config.json")
    for name in os.listdir(destination / "sub"):
        (destination / "sub" / name).unlink()
    (destination / "sub").rmdir()
    (destination / "sub").symlink_to(outside)
    with support.running_agent(make) as agent:
        settle(kube_api, view, agent, {key: "Failed"})
        assert view.entry(key)["reason"] == "UnsafePath"
        kube_api.delete("basemodels", "m", "default")
        kube_api.wait_for_sync(lambda: view.entry(key) is None, 30)
        code, log = agent.stop()
    assert code == 0, log[-3000:]
    assert (outside / "x.txt").read_text() == "victim"
    assert (outside / "config.json").read_text() == "victim config"
    assert sorted(os.listdir(outside)) == ["config.json", "x.txt"]
