"""Egress through a real forward proxy (proxy.py, a child process) and private CAs, with the real
``model-agent pull`` and ``model-agent run`` processes.

The hub and CDN names resolve only inside the proxy, so a request that went around it would
fail. Aspects: an HTTPS hub and CDN (a throw-away CA trusted through ``SSL_CERT_FILE``) reached
through CONNECT tunnels of an authenticating proxy named in ``HTTPS_PROXY``: the tunnels carry
at least every CDN byte, and the proxy password and the token appear in no output; a
``NO_PROXY`` host (by CIDR) is reached directly, never in the proxy's log; a plain-HTTP origin
through ``HTTP_PROXY`` is relayed by the proxy (its ``Via``), the token still only to the hub;
``--data-proxy direct`` sends the bytes directly while metadata uses the proxy; a wrong proxy
password fails with 407 and no password in the message; a TLS-intercepting proxy with its own CA
(the shape of a Dragonfly dfdaemon) in front of the hub: Range requests reach the origin intact,
the token reaches the hub, every file verifies; corrupted bytes through the proxy never land;
the same proxy whose CA the agent does not trust fails the pull with a message naming the
certificate problem and ``SSL_CERT_FILE``; ``model-agent run`` downloads through the proxy while
the API server, listed in ``NO_PROXY`` by ``host:port``, is reached directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.e2e import test_pull_oci
from tests.harness import forward_proxy, hub, modelfiles, objectstore, proxy_names, tls
from tests.harness.operator import agent_process

REPO = "org/model"
TOKEN = "hf_egressSecretToken42"
PROXY_AUTH = "agent:pr0xyS3cret"
_PROXY_VARIABLES = (
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY",
    "all_proxy", "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "MODEL_AGENT_DATA_PROXY", "MODEL_AGENT_DATA_NO_PROXY",
    "MODEL_AGENT_CA_BUNDLE",
)  # fmt: skip


@pytest.fixture
def origin_ca(tmp_path: pathlib.Path) -> tls.CertificateAuthority:
    return tls.CertificateAuthority.create(tmp_path / "pki", "origin")


HUB_NAME, CDN_NAME = sorted(proxy_names.NAMES, reverse=True)  # hub.egress.test, cdn.egress.test


def named_hub(ca: tls.CertificateAuthority | None, *, cdn_named: bool = True) -> hub.LocalHub:
    """A hub (HTTPS when ``ca``) whose host names only the test proxy resolves: a request
    that went around the proxy could not even find the host."""
    context = ca.server_context((HUB_NAME, CDN_NAME, "127.0.0.1", hub.CDN_HOST)) if ca else None
    return hub.LocalHub(tls=context, hub_name=HUB_NAME, cdn_name=CDN_NAME if cdn_named else None)


@pytest.fixture
def tls_hub(origin_ca: tls.CertificateAuthority) -> Iterator[hub.LocalHub]:
    with named_hub(origin_ca).serve_in_thread() as server:
        yield server


def make_model(directory: pathlib.Path) -> dict[str, pathlib.Path]:
    tensors = {"a": ("F32", [150_000]), "b": ("F32", [150_000])}
    modelfiles.write_model(directory, shards=2, tensors=tensors)
    return {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*")) if p.is_file()}


def clean_environment(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARIABLES}
    return {**env, "MODEL_AGENT_STATE_DIR": str(tmp_path / "state"), **extra}


def pull(
    endpoint: str, dest: pathlib.Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable, "-m", "model_agent.cli", "pull", f"hf://{REPO}", "--path", str(dest),
        "--param", f"endpoint={endpoint}", "--multipart-threshold", "256Ki",
        "--stall-timeout", "5s", "--download-retry", "0", *extra,
    ]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=90, env=env, check=False)


def assert_pulled(source: dict[str, pathlib.Path], dest: pathlib.Path) -> None:
    assert {str(p.relative_to(dest)) for p in dest.rglob("*")} == set(source)
    for name, path in source.items():
        digest = hashlib.sha256((dest / name).read_bytes()).hexdigest()
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest(), name


def host_port(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


def served_by(origin: hub.LocalHub, host: str) -> int:
    """Data bytes ``origin`` sent from ``host`` (the hub or the CDN)."""
    return sum(r.bytes_sent for r in list(origin.log) if r.host.startswith(host))


def tunnel_bytes(proxy: forward_proxy.ForwardProxy, target: str) -> int:
    """Bytes the proxy relayed from ``target`` to the client over CONNECT tunnels."""
    pattern = re.compile(rf"CONNECT {re.escape(target)} - (\d+) bytes")
    return sum(int(m.group(1)) for m in pattern.finditer(proxy.log()))


def test_a_pull_reaches_hub_and_cdn_only_through_connect_tunnels_of_the_proxy(
    tls_hub: hub.LocalHub, origin_ca: tls.CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    source = make_model(tmp_path / "source")
    tls_hub.add_repo(REPO, source, private=True, token=TOKEN)
    with forward_proxy.ForwardProxy(tmp_path / "proxy", basic_auth=PROXY_AUTH) as proxy:
        env = clean_environment(
            tmp_path,
            HTTPS_PROXY=proxy.url_with_credentials(),
            SSL_CERT_FILE=str(origin_ca.cert_path),
            HF_TOKEN=TOKEN,
        )
        result = pull(tls_hub.endpoint, tmp_path / "out", env)
        assert result.returncode == 0, result.stderr
        assert_pulled(source, tmp_path / "out")
        hub_target, cdn_target = host_port(tls_hub.endpoint), host_port(tls_hub.cdn_endpoint)
        entries = proxy.wait_logged(2)
        assert {e.split()[0] for e in entries} == {"CONNECT"}, entries
        assert {e.split()[1] for e in entries} == {hub_target, cdn_target}
        # every byte the origin sent crossed the proxy (TLS adds overhead, never removes any)
        assert tunnel_bytes(proxy, cdn_target) >= served_by(tls_hub, tls_hub.cdn_host) > 0
        assert tunnel_bytes(proxy, hub_target) > 0
    assert not tls_hub.cdn_saw_authorization()
    password = PROXY_AUTH.split(":")[1]
    assert password not in result.stdout + result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_a_no_proxy_host_is_reached_directly_and_never_appears_in_the_proxy_log(
    origin_ca: tls.CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    source = make_model(tmp_path / "source")
    with (
        named_hub(origin_ca, cdn_named=False).serve_in_thread() as origin,
        forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy,
    ):
        origin.add_repo(REPO, source)
        env = clean_environment(
            tmp_path,
            https_proxy=proxy.url,
            no_proxy=f"example.com,{hub.CDN_HOST}/32",
            SSL_CERT_FILE=str(origin_ca.cert_path),
        )
        result = pull(origin.endpoint, tmp_path / "out", env)
        assert result.returncode == 0, result.stderr
        assert_pulled(source, tmp_path / "out")
        entries = proxy.wait_logged(1)
    assert served_by(origin, hub.CDN_HOST) > 0
    assert entries and all(hub.CDN_HOST not in e for e in entries), entries
    assert {e.split()[1] for e in entries} == {host_port(origin.endpoint)}


def test_every_request_to_a_plain_http_origin_is_relayed_by_the_proxy(
    tmp_path: pathlib.Path,
) -> None:
    source = make_model(tmp_path / "source")
    with (
        named_hub(None).serve_in_thread() as plain_hub,
        forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy,
    ):
        plain_hub.add_repo(REPO, source, private=True, token=TOKEN)
        env = clean_environment(tmp_path, HTTP_PROXY=proxy.url, HF_TOKEN=TOKEN)
        result = pull(plain_hub.endpoint, tmp_path / "out", env)
        assert result.returncode == 0, result.stderr
        assert_pulled(source, tmp_path / "out")
        requests = list(plain_hub.log)
        entries = proxy.wait_logged(2)
    hosts = {host_port(plain_hub.endpoint), host_port(plain_hub.cdn_endpoint)}
    assert {r.host for r in requests} == hosts
    assert {e.split()[1].split("/")[0] for e in entries} == hosts
    # plain HTTP: the proxy relays the request itself ("Via" added), Authorization included;
    # the token still goes only to the hub, never to the CDN
    assert any("proxy.py" in r.headers.get("Via", "") for r in requests)
    assert not plain_hub.cdn_saw_authorization()


def test_data_proxy_direct_sends_bytes_directly_while_metadata_uses_the_proxy(
    origin_ca: tls.CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    source = make_model(tmp_path / "source")
    context = origin_ca.server_context(("127.0.0.1", hub.CDN_HOST))
    with (
        hub.LocalHub(tls=context).serve_in_thread() as origin,
        forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy,
    ):
        origin.add_repo(REPO, source)
        env = clean_environment(
            tmp_path,
            HTTPS_PROXY=proxy.url,
            SSL_CERT_FILE=str(origin_ca.cert_path),
            MODEL_AGENT_DATA_PROXY="direct",
        )
        result = pull(origin.endpoint, tmp_path / "out", env)
        assert result.returncode == 0, result.stderr
        assert_pulled(source, tmp_path / "out")
        entries = proxy.wait_logged(1)
    # the listing went through the proxy; the bytes (hub ranges and the CDN) did not
    assert {e.split()[1] for e in entries} == {host_port(origin.endpoint)}
    assert tunnel_bytes(proxy, host_port(origin.endpoint)) < origin.bytes_served()


def test_a_wrong_proxy_password_fails_with_407_and_never_prints_the_password(
    tls_hub: hub.LocalHub, origin_ca: tls.CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    tls_hub.add_repo(REPO, make_model(tmp_path / "source"))
    with forward_proxy.ForwardProxy(tmp_path / "proxy", basic_auth=PROXY_AUTH) as proxy:
        env = clean_environment(
            tmp_path,
            HTTPS_PROXY=f"http://agent:wrongPassw0rd@127.0.0.1:{proxy.port}",
            SSL_CERT_FILE=str(origin_ca.cert_path),
            MODEL_AGENT_DATA_PROXY=f"http://agent:wrongPassw0rd@127.0.0.1:{proxy.port}",
        )
        result = pull(tls_hub.endpoint, tmp_path / "out", env)
    assert result.returncode != 0
    assert "wrongPassw0rd" not in result.stdout + result.stderr
    assert "407" in result.stderr or "Proxy Authentication" in result.stderr, result.stderr
    assert tls_hub.bytes_served() == 0


def test_a_tls_intercepting_proxy_with_its_own_ca_fronts_the_hub_like_a_dragonfly_dfdaemon(
    origin_ca: tls.CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    source = make_model(tmp_path / "source")
    front_ca = tls.CertificateAuthority.create(tmp_path / "front", "dfdaemon")
    with (
        named_hub(origin_ca).serve_in_thread() as origin,
        forward_proxy.ForwardProxy(
            tmp_path / "proxy", intercept=front_ca, upstream_ca=origin_ca.cert_path
        ) as front,
    ):
        # every file small enough to come from the hub itself (no CDN redirect) in ranged parts
        origin.add_repo(REPO, source, private=True, token=TOKEN, lfs_threshold=1 << 40)
        env = clean_environment(
            tmp_path,
            MODEL_AGENT_DATA_PROXY=front.url,
            HTTPS_PROXY=front.url,
            SSL_CERT_FILE=str(front_ca.cert_path),  # the agent trusts only the front's CA
            HF_TOKEN=TOKEN,
        )
        result = pull(origin.endpoint, tmp_path / "out", env)
        assert result.returncode == 0, result.stderr
        assert_pulled(source, tmp_path / "out")
        requests = list(origin.log)
    assert TOKEN not in front.log()
    ranged = [r for r in requests if "/resolve/" in r.path]
    assert ranged and all(re.fullmatch(r"bytes=\d+-\d+", r.range or "") for r in ranged)
    assert any(not (r.range or "").startswith("bytes=0-") for r in ranged)  # real parts
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in ranged)
    # the agent trusted only the front's CA, so every TLS session ended at the front, which
    # minted a certificate for the hub's name
    assert (front.directory / "generated" / f"{HUB_NAME}.pem").is_file()


def test_corrupted_bytes_that_arrive_through_the_front_are_never_placed(
    tmp_path: pathlib.Path,
) -> None:
    """Bytes relayed by a front (a cache, a P2P daemon) are verified against the digest of the
    origin's listing exactly as direct ones: a data answer whose bytes do not match (corrupted
    here after the listing) never lands."""
    source = make_model(tmp_path / "source")
    with named_hub(None).serve_in_thread() as origin:
        origin.add_repo(REPO, source, lfs_threshold=1 << 40)
        origin.faults.corrupt("*.safetensors")
        with forward_proxy.ForwardProxy(tmp_path / "proxy") as front:
            env = clean_environment(tmp_path, HTTP_PROXY=front.url)
            result = pull(origin.endpoint, tmp_path / "out", env)
    assert result.returncode == 1
    assert "sha1" in result.stderr.lower() or "checksum" in result.stderr.lower(), result.stderr
    assert not list((tmp_path / "out").rglob("*.safetensors"))


def test_a_proxy_whose_ca_is_not_trusted_fails_the_pull_naming_the_certificate_and_variable(
    origin_ca: tls.CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    front_ca = tls.CertificateAuthority.create(tmp_path / "front", "interceptor")
    with (
        named_hub(origin_ca).serve_in_thread() as origin,
        forward_proxy.ForwardProxy(
            tmp_path / "proxy", intercept=front_ca, upstream_ca=origin_ca.cert_path
        ) as front,
    ):
        origin.add_repo(REPO, make_model(tmp_path / "source"))
        env = clean_environment(
            tmp_path, HTTPS_PROXY=front.url, SSL_CERT_FILE=str(origin_ca.cert_path)
        )
        result = pull(origin.endpoint, tmp_path / "out", env)
    assert result.returncode == 1
    message = result.stderr.lower()
    assert "certificate verification failed" in message and "ssl_cert_file" in message, (
        result.stderr
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_oci_pull_lists_heads_and_fetches_through_the_proxy_trusting_a_private_ca(
    origin_ca: tls.CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    store = objectstore.LocalObjectStore()
    store.tls = origin_ca.server_context((HUB_NAME, "127.0.0.1"))
    source = tmp_path / "source"
    modelfiles.write_model(source, shards=2, tensors={"a": ("F32", [150_000])})
    with store.serve_in_thread(), forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy:
        files = test_pull_oci.upload(store, source)
        test_pull_oci.write_config(store, tmp_path)
        endpoint = store.endpoint.replace("127.0.0.1", HUB_NAME)  # only the proxy resolves it
        uri = f"oci://n/{store.namespace}/b/{test_pull_oci.BUCKET}/o/{test_pull_oci.PREFIX}"
        dest = tmp_path / "out"
        result = test_pull_oci.run(
            tmp_path,
            uri,
            dest,
            "--param", "auth=UserPrincipal", "--param", f"endpoint={endpoint}",
            **{
                **dict.fromkeys(_PROXY_VARIABLES, ""),
                "HTTPS_PROXY": proxy.url,
                "SSL_CERT_FILE": str(origin_ca.cert_path),
            },
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        entries = proxy.wait_logged(1)
    placed = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert placed == files
    assert store.log.matching(kind="data")
    assert {e.split()[1] for e in entries} == {host_port(endpoint)}


def test_run_downloads_through_the_proxy_and_reaches_the_api_server_directly(
    kube_api, tls_hub: hub.LocalHub, origin_ca: tls.CertificateAuthority, tmp_path: pathlib.Path
) -> None:
    tls_hub.add_repo("org/llama", make_model(tmp_path / "source"))
    kube_api.add_node("node-a", {})
    api = host_port(kube_api.url)
    with forward_proxy.ForwardProxy(tmp_path / "proxy") as proxy:
        env = {
            "HF_ENDPOINT": tls_hub.endpoint,
            "HTTPS_PROXY": proxy.url,
            "HTTP_PROXY": proxy.url,
            "NO_PROXY": api,
            "SSL_CERT_FILE": str(origin_ca.cert_path),
        }
        with agent_process(
            kube_api,
            "node-a",
            args=("--config-map-sync-interval", "0.2"),
            env=env,
            workdir=tmp_path / "node-a",
            timeout=60,
        ) as agent:
            kube_api.create(
                {
                    "apiVersion": "ome.io/v1beta1",
                    "kind": "ClusterBaseModel",
                    "metadata": {"name": "llama"},
                    "spec": {"storage": {"storageUri": "hf://org/llama"}},
                }
            )

            def ready() -> bool:
                cm = kube_api.get("configmaps", "node-a", "ome") or {}
                text = (cm.get("data") or {}).get("clusterbasemodel.llama")
                return bool(text) and json.loads(text).get("status") == "Ready"

            kube_api.wait_for_sync(ready, timeout=60)
            assert (agent.models_root / "clusterbasemodel.llama" / "config.json").is_file()
        entries = proxy.wait_logged(2)
    targets = {e.split()[1] for e in entries}
    assert targets == {host_port(tls_hub.endpoint), host_port(tls_hub.cdn_endpoint)}, entries
    assert tunnel_bytes(proxy, host_port(tls_hub.cdn_endpoint)) >= served_by(
        tls_hub, tls_hub.cdn_host
    )


@pytest.mark.parametrize(
    ("extra_env", "args", "named"),
    [
        ({}, ("--ca-bundle", "/nonexistent/ca.pem"), "--ca-bundle"),
        ({"SSL_CERT_FILE": "/nonexistent/ca.pem"}, (), "$SSL_CERT_FILE"),
        ({"HTTPS_PROXY": "socks5://proxy:1080"}, (), "$HTTPS_PROXY"),
        ({}, ("--data-proxy", "ftp://proxy"), "--data-proxy"),
    ],
)
def test_a_bad_proxy_or_ca_setting_stops_the_command_at_start_naming_it(
    tmp_path: pathlib.Path, extra_env: dict[str, str], args: tuple[str, ...], named: str
) -> None:
    env = clean_environment(tmp_path, **extra_env)
    result = pull("http://127.0.0.1:9", tmp_path / "out", env, *args)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr
