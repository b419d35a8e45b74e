"""Pytest fixtures for the fake Kubernetes API: ``kube_api`` (a started ``FakeKube``) and
``kube_client`` (a kubernetes-asyncio ``ApiClient`` configured from its kubeconfig, which
carries the fake's CA: the client verifies the server as it would a cluster's)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes_asyncio import client, config

from tests.harness.kube import FakeKube


@pytest.fixture(autouse=True)
async def _tls_connections_close(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a test that talked to the fake over HTTPS, give the closed clients' TLS
    transports the loop turns they need to finish closing (a TLS close is not immediate,
    and the test's loop ends right after its fixtures), so no socket is reported leaked."""
    yield
    if "kube_api" in request.fixturenames:
        await asyncio.sleep(0.1)


@pytest.fixture
def kube_api() -> Iterator[FakeKube]:
    """A fake API server on 127.0.0.1 with the CRDs of manifests/crds, the namespaces
    default, kube-system and ome, and no nodes (add them with ``add_node``). Requests
    need the kubeconfig's bearer token. A test fails if the fake itself raised."""
    with FakeKube() as kube:
        yield kube
    assert not kube.server_errors, "the fake API server failed:\n" + "\n".join(kube.server_errors)


@pytest.fixture
async def kube_client(kube_api: FakeKube) -> AsyncIterator[client.ApiClient]:
    """A kubernetes-asyncio ApiClient loaded from ``kube_api.kubeconfig``; closed at teardown."""
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=kube_api.kubeconfig, client_configuration=configuration
    )
    api_client = client.ApiClient(configuration)
    try:
        yield api_client
    finally:
        await api_client.close()
