"""The egress policy applied to each real client in this process, against a real proxy.py.

Aspects: huggingface_hub's metadata calls (pin) follow the agent's policy even with no proxy
variable in the environment (the hub's name resolves only inside the proxy, so the pin could
not have gone around it), and a second policy replaces the client; the kubernetes-asyncio
client gets the API server's proxy from the policy, honours a CIDR ``NO_PROXY`` entry that
aiohttp's own reading would not, and no longer reads the environment itself; an oci SDK session
gets the endpoint's proxy, the CA bundle and ``trust_env`` off.
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest
from oci._vendor import requests as oci_requests

from model_agent import errors
from model_agent.egress import clients, policy
from model_agent.kube import client as kube_client
from model_agent.storage import huggingface
from tests.harness import forward_proxy, hub, modelfiles, proxy_names, tls

HUB_NAME = "hub.egress.test"
assert HUB_NAME in proxy_names.NAMES


async def test_hub_metadata_follows_the_policy_not_the_environment(
    hf_hub: hub.LocalHub, tmp_path: pathlib.Path
) -> None:
    assert not any(k.lower().endswith("_proxy") for k in os.environ)
    modelfiles.write_model(tmp_path / "src", shards=1, tensors={"a": ("F32", [100])})
    hf_hub.add_repo("org/tiny", {p.name: p for p in (tmp_path / "src").iterdir()})
    endpoint = hf_hub.endpoint.replace("127.0.0.1", HUB_NAME)
    with forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy:
        egress = policy.build({"HTTP_PROXY": proxy.url})
        backend = huggingface.HuggingFaceBackend("hf://org/tiny", endpoint=endpoint, egress=egress)
        plan = await backend.pin()
        assert {f.path for f in plan.files} >= {"config.json"}
        # a policy without the proxy replaces the client (closing the proxied one, which lets
        # the proxy log its connection): the name no longer resolves
        direct = huggingface.HuggingFaceBackend(
            "hf://org/tiny", endpoint=endpoint, egress=policy.build({})
        )
        with pytest.raises(errors.NetworkError, match="cannot reach the Hub"):
            await direct.pin()
        entries = proxy.wait_logged(1)
    assert entries and all(HUB_NAME in e for e in entries), entries


async def test_the_kube_client_uses_the_policy_for_the_api_server(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://10.96.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    proxied = await kube_client.make_api_client(
        {"KUBECONFIG": str(config), "HTTP_PROXY": "http://proxy:3128"}
    )
    bypassed = await kube_client.make_api_client(
        {"KUBECONFIG": str(config), "HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.0/8"}
    )
    try:
        assert proxied.rest_client.proxy == "http://proxy:3128"
        assert bypassed.rest_client.proxy is None  # CIDR: aiohttp's own reading would proxy it
        for api in (proxied, bypassed):
            assert api.rest_client.pool_manager.trust_env is False
    finally:
        await proxied.close()
        await bypassed.close()


def test_an_oci_session_gets_the_endpoint_proxy_the_ca_bundle_and_no_env_guessing(
    tmp_path: pathlib.Path,
) -> None:
    bundle = tls.CertificateAuthority.create(tmp_path, "private").cert_path
    egress = policy.build(
        {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".internal"}, ca_bundle=str(bundle)
    )
    session = oci_requests.Session()
    clients.configure_requests_session(
        session, egress, "https://objectstorage.us-ashburn-1.oraclecloud.com"
    )
    assert session.trust_env is False
    assert session.proxies == {"http": "http://proxy:3128", "https": "http://proxy:3128"}
    assert session.verify == str(bundle)
    inside = oci_requests.Session()
    clients.configure_requests_session(inside, egress, "https://objects.mirror.internal")
    assert inside.proxies == {}
