"""The pure parts of the GCS, GitHub and Azure backends: endpoints and who may receive the
node's credentials, folders, URLs, pagination links, and the digests each store promises.

Aspects: each store trusts only the admin's endpoint (env) with node credentials, a spec's
endpoint only when equal; a bad URL names the field; GCS md5Hash beats crc32c and neither is
size-only; GitHub ``Link`` headers and ``sha256:`` digests; Azure connection strings (values
containing ``=``), which account a key is for, the List Blobs XML, Content-MD5; Shared Key
signing is deterministic and covers the Range and the query.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from model_agent import checksums, errors
from model_agent.storage.azure import blobs, sharedkey
from model_agent.storage.gcs import addressing as gcs_addressing
from model_agent.storage.gcs import digests as gcs_digests
from model_agent.storage.github import releases

MD5 = hashlib.md5(b"data").digest()


def test_gcs_endpoint_trust() -> None:
    assert gcs_addressing.choose_endpoint(None, {}) == gcs_addressing.Endpoint(
        "https://storage.googleapis.com", True
    )
    emulator = {"STORAGE_EMULATOR_HOST": "localhost:9023"}
    assert gcs_addressing.choose_endpoint(None, emulator).url == "http://localhost:9023"
    assert gcs_addressing.choose_endpoint("http://localhost:9023/", emulator).trusted
    assert not gcs_addressing.choose_endpoint("https://evil.example", emulator).trusted
    with pytest.raises(errors.InvalidSpecError, match=r"parameters\.endpoint"):
        gcs_addressing.choose_endpoint("ftp://x", {})


def test_gcs_urls_pin_the_generation_and_encode_names() -> None:
    url = gcs_addressing.media_url("https://s", "b", "a b/c.bin", generation="17")
    assert url == "https://s/download/storage/v1/b/b/o/a%20b%2Fc.bin?alt=media&generation=17"
    listing = gcs_addressing.list_url("https://s", "b", prefix="m/", page_size=2, token="t")
    assert "prefix=m%2F" in listing and "maxResults=2" in listing and "pageToken=t" in listing


@pytest.mark.parametrize(
    ("item", "source", "algorithm"),
    [
        ({"md5Hash": base64.b64encode(MD5).decode(), "crc32c": "AAAAAA=="}, "md5Hash", "md5"),
        ({"crc32c": "yZRlqg==", "componentCount": 2}, "crc32c", "crc32c"),
        ({"md5Hash": "bad"}, "size-only", None),
        ({}, "size-only", None),
    ],
)
def test_gcs_digests(item, source, algorithm) -> None:
    promised = gcs_digests.promise(item)
    assert promised.source == source
    assert [d.algorithm for d in promised.digests] == ([algorithm] if algorithm else [])


def test_github_endpoint_links_and_digests() -> None:
    assert releases.choose_endpoint(None, {}).url == "https://api.github.com"
    ghes = {"GITHUB_API_URL": "https://ghe.example/api/v3/"}
    assert releases.choose_endpoint("https://ghe.example/api/v3", ghes).trusted
    assert not releases.choose_endpoint("https://evil.example", ghes).trusted
    link = '<https://api/x?page=2>; rel="next", <https://api/x?page=9>; rel="last"'
    assert releases.next_link(link) == "https://api/x?page=2"
    assert releases.next_link('<https://api/x?page=1>; rel="prev"') is None
    assert releases.next_link(None) is None
    digest = releases.asset_digest({"digest": "sha256:" + "AB" * 32})
    assert digest == checksums.Checksum("sha256", "ab" * 32)
    assert releases.asset_digest({"digest": "md5:abc"}) is None
    assert releases.asset_digest({}) is None
    assert (
        releases.release_url("https://a", "o", "r", "latest")
        == "https://a/repos/o/r/releases/latest"
    )
    assert releases.release_url("https://a", "o", "r", "v1/x") == (
        "https://a/repos/o/r/releases/tags/v1%2Fx"
    )


def test_azure_connection_strings_and_which_account_a_key_is_for() -> None:
    text = (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5==;"
        "EndpointSuffix=core.windows.net"
    )
    assert blobs.parse_connection_string(text)["AccountKey"] == "a2V5=="
    with pytest.raises(errors.ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        blobs.parse_connection_string("nonsense")
    env = {"AZURE_STORAGE_CONNECTION_STRING": text}
    mine = blobs.resolve_account("acct", None, env)
    assert (mine.endpoint, mine.key, mine.trusted) == (
        "https://acct.blob.core.windows.net",
        "a2V5==",
        True,
    )
    other = blobs.resolve_account("other", None, env)
    assert other.key is None and other.endpoint == "https://other.blob.core.windows.net"
    spec = blobs.resolve_account("acct", "https://evil.example/acct", env)
    assert spec.key is None and not spec.trusted
    sas = blobs.resolve_account(
        "acct", None, {"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=x"}
    )
    assert sas.sas == "sv=1&sig=x" and sas.key is None


def test_azure_listing_xml_and_content_md5() -> None:
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs>'
        b"<Blob><Name>m/a.bin</Name><Properties><Content-Length>4</Content-Length>"
        b"<Etag>0x8D</Etag><Content-MD5>" + base64.b64encode(MD5) + b"</Content-MD5>"
        b"</Properties></Blob><Blob><Name>m/b.bin</Name><Properties><Content-Length>2"
        b'</Content-Length><Etag>"0x9E"</Etag></Properties></Blob></Blobs>'
        b"<NextMarker>tok</NextMarker></EnumerationResults>"
    )
    page = blobs.parse_listing(body)
    assert page.next_marker == "tok"
    assert [(b.name, b.size, b.etag) for b in page.blobs] == [
        ("m/a.bin", 4, "0x8D"),
        ("m/b.bin", 2, "0x9E"),
    ]
    assert blobs.content_md5(page.blobs[0].content_md5) == checksums.Checksum("md5", MD5.hex())
    assert blobs.content_md5(None) is None and blobs.content_md5("eA==") is None
    with pytest.raises(ValueError, match="not XML"):
        blobs.parse_listing(b"<oops")


def test_shared_key_signature_covers_the_range_and_the_query() -> None:
    key = base64.b64encode(b"k" * 32).decode()
    headers = {"x-ms-date": "Thu, 03 Dec 2026 00:00:00 GMT", "x-ms-version": "2021-08-06"}
    url = "http://h/acct/c?restype=container&comp=list&prefix=m%2F"
    first = sharedkey.authorization("GET", url, headers, account="acct", key=key)
    assert first.startswith("SharedKey acct:")
    assert first == sharedkey.authorization("GET", url, dict(headers), account="acct", key=key)
    ranged = sharedkey.authorization(
        "GET", url, {**headers, "Range": "bytes=0-9"}, account="acct", key=key
    )
    other = sharedkey.authorization(
        "GET", url.replace("m%2F", "n%2F"), headers, account="acct", key=key
    )
    assert len({first, ranged, other}) == 3
    with pytest.raises(errors.ConfigError, match="not base64"):
        sharedkey.authorization("GET", url, headers, account="acct", key="not base64!")


def test_the_object_store_endpoints_the_admin_configures_join_the_credential_policy() -> None:
    from model_agent import settings
    from model_agent.trust import egress

    environ = {
        "AWS_ENDPOINT_URL_S3": "http://minio.corp:9000",
        "STORAGE_EMULATOR_HOST": "gcs.corp:4443",
        "GITHUB_API_URL": "https://ghe.corp/api/v3",
        "AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=a2V5;BlobEndpoint=https://blob.corp/a",
    }
    policy = settings.resolve({}, environ).credential_policy()
    for url in (
        "http://minio.corp:9000",
        "http://gcs.corp:4443",
        "https://ghe.corp/api/v3",
        "https://blob.corp/a",
    ):
        assert egress.allowed(url, policy), url
    assert not egress.allowed("http://minio.corp:9001", policy)
    assert settings.resolve({}, {}).store_endpoints == ()
