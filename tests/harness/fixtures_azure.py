"""Pytest fixtures for Azure: one Azurite per test session, a fault proxy per test
(``azure_container`` makes a fresh private container)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.harness import azure


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[azure.Azurite]:
    server = azure.Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def azure_container(azurite: azure.Azurite) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    azurite.create_container(name)
    return name


@pytest.fixture
async def azure_proxy(azurite: azure.Azurite) -> AsyncIterator[azure.AzureFaultProxy]:
    proxy = azure.AzureFaultProxy(azurite.endpoint.rsplit("/", 1)[0])
    async with proxy:
        yield proxy


@pytest.fixture
def azure_proxy_in_thread(azurite: azure.Azurite) -> Iterator[azure.AzureFaultProxy]:
    with azure.AzureFaultProxy(azurite.endpoint.rsplit("/", 1)[0]).serve_in_thread() as proxy:
        yield proxy


@pytest.fixture
async def entra() -> AsyncIterator[azure.TokenEndpoint]:
    server = azure.TokenEndpoint()
    async with server:
        yield server
