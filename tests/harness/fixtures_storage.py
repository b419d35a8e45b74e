"""Pytest fixtures for the fake storage servers: ``hf_hub`` (a LocalHub with its CDN) and
``oci_store`` (a LocalObjectStore), each started on ephemeral loopback ports for one test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.harness import hub, objectstore


@pytest.fixture
async def hf_hub() -> AsyncIterator[hub.LocalHub]:
    """A running local Hugging Face Hub (127.0.0.1) with its CDN host (127.0.0.2)."""
    server = hub.LocalHub()
    async with server:
        yield server


@pytest.fixture
async def oci_store() -> AsyncIterator[objectstore.LocalObjectStore]:
    """A running local OCI Object Storage (127.0.0.1) with a throw-away API-key ``config``."""
    server = objectstore.LocalObjectStore()
    async with server:
        yield server
