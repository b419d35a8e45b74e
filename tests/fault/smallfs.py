"""Fixtures for the tests that need a small real filesystem: an 8 MiB tmpfs mounted for the
test (skipped with the reason when not root) and a fault-suite ``Harness`` whose models root
lies on it. Import ``small_fs`` and ``world`` into a test module to use them."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fault import support
from tests.fault.agents import Harness

SIZE = 8 * 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    with support.tmpfs(tmp_path / "smallfs", SIZE) as mountpoint:
        yield mountpoint


@pytest.fixture
async def world(kube_api, kube_client, small_fs, hf_hub) -> AsyncIterator[Harness]:
    kube_api.add_node("node-a")
    harness = Harness(kube_api, kube_client, small_fs / "models")
    harness.root.mkdir()
    harness.environ["HF_ENDPOINT"] = hf_hub.endpoint
    yield harness
    await harness.stop_all()
