"""Pytest fixtures for S3: one moto server per test session, a fault proxy per test.

``moto_s3`` is shared (moto keeps its buckets in this process: each test makes its own bucket,
``s3_bucket``). ``s3_proxy`` runs on the test's event loop; ``s3_proxy_in_thread`` on its own
loop in a thread (subprocess and kill -9 tests).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.harness import s3


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[s3.MotoS3]:
    server = s3.MotoS3()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_s3: s3.MotoS3) -> str:
    """A fresh, empty, private bucket."""
    name = f"models-{uuid.uuid4().hex[:12]}"
    moto_s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
async def s3_proxy(moto_s3: s3.MotoS3) -> AsyncIterator[s3.S3FaultProxy]:
    proxy = s3.S3FaultProxy(moto_s3.endpoint)
    async with proxy:
        yield proxy


@pytest.fixture
def s3_proxy_in_thread(moto_s3: s3.MotoS3) -> Iterator[s3.S3FaultProxy]:
    with s3.S3FaultProxy(moto_s3.endpoint).serve_in_thread() as proxy:
        yield proxy
