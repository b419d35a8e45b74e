"""Self-tests of the local OCI Object Storage fixture, through the real oci SDK and plain aiohttp.

Aspects covered:
- the fixture's config is accepted by ObjectStorageClient (validate_config) and every SDK
  request passes the signature check; an unsigned request or another key gets 401
  NotAuthenticated;
- list_objects pages with nextStartWith (settable page_limit), prefix, fields and delimiter;
  multipart objects list their multipart md5 (``<base64>-<parts>``);
- head_object: content-md5 for simple objects, opc-multipart-md5 (and no content-md5) for
  multipart ones, opc-meta-* metadata, content-length, etag, last-modified;
- get_object: whole and ranged (206 + content-range), objects from bytes and from disk;
- errors as oci.exceptions.ServiceError: BucketNotFound, ObjectNotFound (404); injected 500 and
  429 with Retry-After;
- fault knobs on object bodies: corruption (bytes differ, headers truthful), 200 for a Range,
  a body cut short; the request log and bytes_served; serve_in_thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import pathlib
from typing import Any

import aiohttp
import oci
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness import objectstore as store_mod

DATA = bytes(range(256)) * 40  # 10240 bytes


def _client(store: store_mod.LocalObjectStore, config: dict[str, Any] | None = None) -> Any:
    return oci.object_storage.ObjectStorageClient(
        config or store.config,
        service_endpoint=store.endpoint,
        retry_strategy=oci.retry.NoneRetryStrategy(),
    )


def _b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


async def test_list_objects_pages_with_next_start_with(
    oci_store: store_mod.LocalObjectStore,
) -> None:
    names = [f"models/llama/part-{i}.bin" for i in range(5)]
    for name in names:
        oci_store.add_object("bucket", name, name.encode())
    oci_store.add_object("bucket", "other/file", b"x")
    oci_store.page_limit = 3
    client = _client(oci_store)

    def list_page(start: str | None) -> Any:
        return client.list_objects(
            oci_store.namespace,
            "bucket",
            prefix="models/",
            start=start,
            fields="name,size,md5,etag,timeCreated",
        ).data

    first = await asyncio.to_thread(list_page, None)
    second = await asyncio.to_thread(list_page, first.next_start_with)
    assert [o.name for o in first.objects] == names[:3]
    assert first.next_start_with == names[3]
    assert [o.name for o in second.objects] == names[3:]
    assert second.next_start_with is None
    assert first.objects[0].size == len(names[0])
    assert first.objects[0].md5 == _b64md5(names[0].encode())
    assert first.objects[0].etag == oci_store.object("bucket", names[0]).etag
    assert first.objects[0].time_created is not None


async def test_list_objects_with_delimiter_reports_prefixes(
    oci_store: store_mod.LocalObjectStore,
) -> None:
    for name in ("m/config.json", "m/sub/a.bin", "m/sub/b.bin", "m/tok.json"):
        oci_store.add_object("bucket", name, b"x")
    data = await asyncio.to_thread(
        lambda: (
            _client(oci_store)
            .list_objects(oci_store.namespace, "bucket", prefix="m/", delimiter="/")
            .data
        )
    )
    assert [o.name for o in data.objects] == ["m/config.json", "m/tok.json"]
    assert data.prefixes == ["m/sub/"]
    assert data.objects[0].size is None  # only the requested fields (default: name)


async def test_head_object_reports_content_md5_or_multipart_md5_and_metadata(
    oci_store: store_mod.LocalObjectStore,
) -> None:
    oci_store.add_object("bucket", "simple.bin", DATA, metadata={"owner": "tests"})
    oci_store.add_object(
        "bucket", "multi.bin", DATA, multipart_part_size=4096, metadata={"md5": _b64md5(DATA)}
    )
    client = _client(oci_store)
    simple = await asyncio.to_thread(
        client.head_object, oci_store.namespace, "bucket", "simple.bin"
    )
    assert simple.headers["content-md5"] == _b64md5(DATA)
    assert "opc-multipart-md5" not in simple.headers
    assert simple.headers["content-length"] == str(len(DATA))
    assert simple.headers["opc-meta-owner"] == "tests"
    assert simple.headers["etag"] and simple.headers["last-modified"]

    multi = await asyncio.to_thread(client.head_object, oci_store.namespace, "bucket", "multi.bin")
    parts = [
        hashlib.md5(DATA[i : i + 4096], usedforsecurity=False).digest()
        for i in range(0, len(DATA), 4096)
    ]
    expected = (
        base64.b64encode(hashlib.md5(b"".join(parts), usedforsecurity=False).digest()).decode()
        + "-3"
    )
    assert multi.headers["opc-multipart-md5"] == expected
    assert "content-md5" not in multi.headers
    assert multi.headers["opc-meta-md5"] == _b64md5(DATA)
    listing = await asyncio.to_thread(
        lambda: client.list_objects(oci_store.namespace, "bucket", fields="name,md5").data
    )
    assert {o.name: o.md5 for o in listing.objects} == {
        "multi.bin": expected,
        "simple.bin": _b64md5(DATA),
    }


async def test_get_object_whole_and_ranged_from_bytes_and_disk(
    oci_store: store_mod.LocalObjectStore, tmp_path: pathlib.Path
) -> None:
    on_disk = tmp_path / "weights.bin"
    on_disk.write_bytes(DATA * 3)
    oci_store.add_object("bucket", "dir/weights.bin", on_disk)
    oci_store.add_object("bucket", "small", DATA)
    client = _client(oci_store)
    whole = await asyncio.to_thread(
        client.get_object, oci_store.namespace, "bucket", "dir/weights.bin"
    )
    assert whole.status == 200
    assert whole.data.content == DATA * 3
    part = await asyncio.to_thread(
        client.get_object, oci_store.namespace, "bucket", "small", range="bytes=100-299"
    )
    assert part.status == 206
    assert part.headers["content-range"] == f"bytes 100-299/{len(DATA)}"
    assert "content-md5" not in part.headers  # an MD5 of the whole object would lie here
    assert part.data.content == DATA[100:300]
    assert oci_store.bytes_served("dir/*") == len(DATA) * 3
    assert oci_store.bytes_served("small") == 200


@pytest.mark.parametrize(
    ("bucket", "name", "status", "code"),
    [("missing", "x", 404, "BucketNotFound"), ("bucket", "missing", 404, "ObjectNotFound")],
)
async def test_missing_bucket_and_object_raise_service_errors(
    oci_store: store_mod.LocalObjectStore, bucket: str, name: str, status: int, code: str
) -> None:
    oci_store.add_object("bucket", "present", b"x")
    with pytest.raises(oci.exceptions.ServiceError) as caught:
        await asyncio.to_thread(_client(oci_store).get_object, oci_store.namespace, bucket, name)
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_requests_without_a_valid_signature_are_not_authenticated(
    oci_store: store_mod.LocalObjectStore,
) -> None:
    oci_store.add_object("bucket", "present", b"x")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    forged = {**oci_store.config, "key_content": pem}
    with pytest.raises(oci.exceptions.ServiceError) as caught:
        await asyncio.to_thread(
            _client(oci_store, forged).get_object, oci_store.namespace, "bucket", "present"
        )
    assert (caught.value.status, caught.value.code) == (401, "NotAuthenticated")
    url = f"{oci_store.endpoint}/n/{oci_store.namespace}/b/bucket/o/present"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 401
        assert (await response.json())["code"] == "NotAuthenticated"


async def test_injected_500_and_429_reach_the_sdk_as_service_errors(
    oci_store: store_mod.LocalObjectStore,
) -> None:
    oci_store.add_object("bucket", "obj", DATA)
    client = _client(oci_store)
    oci_store.faults.fail_next(1, status=500)
    oci_store.faults.fail_next(1, status=429, retry_after=3)
    for status in (500, 429):
        with pytest.raises(oci.exceptions.ServiceError) as caught:
            await asyncio.to_thread(client.get_object, oci_store.namespace, "bucket", "obj")
        assert caught.value.status == status
    assert caught.value.headers["retry-after"] == "3"
    oci_store.faults.fail_next(1, status=503, kind="api")
    with pytest.raises(oci.exceptions.ServiceError) as listing:
        await asyncio.to_thread(client.list_objects, oci_store.namespace, "bucket")
    assert listing.value.status == 503
    response = await asyncio.to_thread(client.get_object, oci_store.namespace, "bucket", "obj")
    assert response.data.content == DATA


async def test_fault_knobs_change_object_bodies_under_truthful_headers(
    oci_store: store_mod.LocalObjectStore,
) -> None:
    oci_store.add_object("bucket", "obj", DATA)
    client = _client(oci_store)
    ns = oci_store.namespace

    oci_store.faults.corrupt("obj", count=1)
    bad = await asyncio.to_thread(client.get_object, ns, "bucket", "obj")
    assert bad.headers["content-md5"] == _b64md5(DATA)
    assert len(bad.data.content) == len(DATA) and bad.data.content != DATA
    good = await asyncio.to_thread(client.get_object, ns, "bucket", "obj")
    assert good.data.content == DATA

    oci_store.faults.ignore_range(1)
    whole = await asyncio.to_thread(client.get_object, ns, "bucket", "obj", range="bytes=0-9")
    assert (whole.status, whole.data.content) == (200, DATA)

    oci_store.faults.cut_short(1, after_bytes=1000)
    with pytest.raises(Exception):  # noqa: B017 - requests raises its own ChunkedEncodingError
        await asyncio.to_thread(lambda: client.get_object(ns, "bucket", "obj").data.content)
    record = oci_store.log[-1]
    assert (record.bytes_sent, record.completed) == (1000, False)


def test_serve_in_thread_serves_the_sdk_outside_any_event_loop() -> None:
    with store_mod.LocalObjectStore().serve_in_thread() as store:
        store.add_object("bucket", "obj", DATA)
        response = _client(store).get_object(store.namespace, "bucket", "obj")
        assert response.data.content == DATA
        assert store.bytes_served() == len(DATA)
