"""Pytest fixtures for GCS: one emulator per test session, a fault proxy and a token endpoint
per test (``gcs_bucket`` makes a fresh bucket)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.harness import gcs


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[gcs.GCSEmulator]:
    server = gcs.GCSEmulator()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: gcs.GCSEmulator) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    gcs_emulator.create_bucket(name)
    return name


@pytest.fixture
async def gcs_proxy(gcs_emulator: gcs.GCSEmulator) -> AsyncIterator[gcs.GCSFaultProxy]:
    proxy = gcs.GCSFaultProxy(gcs_emulator.endpoint)
    async with proxy:
        yield proxy


@pytest.fixture
def gcs_proxy_in_thread(gcs_emulator: gcs.GCSEmulator) -> Iterator[gcs.GCSFaultProxy]:
    with gcs.GCSFaultProxy(gcs_emulator.endpoint).serve_in_thread() as proxy:
        yield proxy


@pytest.fixture
async def token_server() -> AsyncIterator[gcs.TokenServer]:
    server = gcs.TokenServer()
    async with server:
        yield server
