"""Pytest fixtures for the fake storage servers, each on ephemeral loopback ports for one test.

``hf_hub`` / ``oci_store`` run on the test's own event loop (async tests that await). The
``*_in_thread`` variants run the server on its own loop in a thread: use them when the test
blocks (a synchronous client, ``subprocess.run``, a kill -9 test polling with
``wait_for_blocking``) or when another thread drives the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.harness import github as github_mod
from tests.harness import hub, objectstore


@pytest.fixture
async def hf_hub() -> AsyncIterator[hub.LocalHub]:
    """A running local Hugging Face Hub (127.0.0.1) with its CDN host (127.0.0.2)."""
    server = hub.LocalHub()
    async with server:
        yield server


@pytest.fixture
def hf_hub_in_thread() -> Iterator[hub.LocalHub]:
    """The local Hub served from its own thread and event loop."""
    with hub.LocalHub().serve_in_thread() as server:
        yield server


@pytest.fixture
async def oci_store() -> AsyncIterator[objectstore.LocalObjectStore]:
    """A running local OCI Object Storage (127.0.0.1) with a throw-away API-key ``config``."""
    server = objectstore.LocalObjectStore()
    async with server:
        yield server


@pytest.fixture
def oci_store_in_thread() -> Iterator[objectstore.LocalObjectStore]:
    """The local Object Storage served from its own thread and event loop."""
    with objectstore.LocalObjectStore().serve_in_thread() as server:
        yield server


@pytest.fixture
async def github() -> AsyncIterator[github_mod.LocalGitHub]:
    """A running local GitHub REST API (127.0.0.1) with its asset CDN (127.0.0.2)."""
    server = github_mod.LocalGitHub()
    async with server:
        yield server


@pytest.fixture
def github_in_thread() -> Iterator[github_mod.LocalGitHub]:
    with github_mod.LocalGitHub().serve_in_thread() as server:
        yield server
