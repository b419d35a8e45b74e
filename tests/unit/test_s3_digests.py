"""The S3 checksum policy (``storage.s3.digests``), the S3 addressing rules
(``storage.s3.addressing``) and the shared parts digests (``checksum_parts``) over every
algorithm S3 uses.

Aspects: sha256 beats everything; a single-part ETag is an MD5 unless SSE-KMS/SSE-C; a 128-bit
MD5 beats a 32-bit CRC; composite checksums (``-N`` or a multipart ETag without FULL_OBJECT)
become parts digests recomputed with candidate part sizes, and a FULL_OBJECT CRC is a content
hash; nothing usable is size-only with a note; parts hashers reproduce S3's composite values
for sha256, crc32c and crc32; folders, virtual-hosted vs path-style URLs, percent-encoding,
version ids; the admin endpoint is trusted and a spec endpoint only when it is the same.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

import crc32c
import pytest

from model_agent import checksum_parts, checksums, errors
from model_agent.storage.s3 import addressing, digests

MIB = 1024 * 1024
DATA = bytes(range(256)) * 4096  # 1 MiB


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc32c_raw(data: bytes) -> bytes:
    return bytes.fromhex(crc32c.CRC32CHash(data).hexdigest())


def crc32_raw(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


MD5_HEX = hashlib.md5(DATA).hexdigest()
SHA256 = hashlib.sha256(DATA).digest()


ETAG = {"ETag": f'"{MD5_HEX}"'}
KMS = {"x-amz-server-side-encryption": "aws:kms"}
SSE_C = {"x-amz-server-side-encryption-customer-algorithm": "AES256"}
SHA256_H = {"x-amz-checksum-sha256": b64(SHA256)}
SHA1_H = {"x-amz-checksum-sha1": b64(hashlib.sha1(DATA).digest())}
CRC32C_H = {"x-amz-checksum-crc32c": b64(crc32c_raw(DATA))}
CRC32_H = {"x-amz-checksum-crc32": b64(crc32_raw(DATA))}


@pytest.mark.parametrize(
    ("headers", "source", "algorithm"),
    [
        ({**ETAG, **SHA256_H, **CRC32C_H}, "x-amz-checksum-sha256", "sha256"),
        ({**ETAG, **CRC32C_H}, "etag-md5", "md5"),
        ({**ETAG, **SHA1_H}, "x-amz-checksum-sha1", "sha1"),
        ({**ETAG, **KMS, **CRC32C_H}, "x-amz-checksum-crc32c", "crc32c"),
        ({**ETAG, **SSE_C, **CRC32_H}, "x-amz-checksum-crc32", "crc32"),
        (ETAG, "etag-md5", "md5"),
    ],
)
def test_single_part_objects_use_the_strongest_digest(headers, source, algorithm) -> None:
    promised = digests.promise(len(DATA), headers)
    assert promised.source == source
    (digest,) = promised.digests
    assert digest.algorithm == algorithm
    hasher = digest.hasher(len(DATA))
    hasher.update(DATA)
    assert hasher.hexdigest() == digest.value


def test_an_encrypted_object_with_no_checksum_is_size_only_and_says_why() -> None:
    promised = digests.promise(
        10,
        {"ETag": '"0123456789abcdef0123456789abcdef"', "x-amz-server-side-encryption": "aws:kms"},
    )
    assert promised.digests == () and promised.source == "size-only"
    assert "SSE-KMS" in promised.note


def parts_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


BIG = (bytes(range(251)) * (11 * MIB // 251 + 1))[: 11 * MIB + 5]


@pytest.mark.parametrize("suffix", [True, False])
def test_a_composite_sha256_is_recomputed_from_five_mib_parts(suffix: bool) -> None:
    parts = parts_of(BIG, 5 * MIB)
    value = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    text = b64(value) + (f"-{len(parts)}" if suffix else "")
    promised = digests.promise(len(BIG), {"ETag": f'"{etag}-3"', "x-amz-checksum-sha256": text})
    (digest,) = promised.digests
    assert isinstance(digest, checksum_parts.PartsChecksum)
    assert (digest.algorithm, digest.parts) == ("sha256-parts", 3)
    hasher = digest.hasher(len(BIG))
    hasher.update(BIG)
    assert hasher.hexdigest() == value.hex()
    assert str(digest) == f"sha256-parts:{value.hex()}-3"


def test_a_multipart_etag_beats_a_composite_crc_and_a_full_object_crc_is_content() -> None:
    parts = parts_of(BIG, 8 * MIB)
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    composite = zlib.crc32(b"".join(crc32_raw(p) for p in parts)).to_bytes(4, "big")
    headers = {"ETag": f'"{etag}-2"', "x-amz-checksum-crc32": b64(composite) + "-2"}
    promised = digests.promise(len(BIG), headers)
    assert promised.source == "etag-multipart-md5"
    (digest,) = promised.digests
    hasher = digest.hasher(len(BIG))
    hasher.update(BIG)
    assert hasher.hexdigest() == etag

    full = {"ETag": f'"{etag}-2"', "x-amz-checksum-crc32c": b64(crc32c_raw(BIG)),
            "x-amz-checksum-type": "FULL_OBJECT"}  # fmt: skip
    assert digests.promise(len(BIG), full).digests[0].algorithm == "md5-parts"
    kms = {**full, "x-amz-server-side-encryption": "aws:kms"}
    (crc,) = digests.promise(len(BIG), kms).digests
    assert crc == checksums.Checksum("crc32c", crc32c_raw(BIG).hex())


def test_composite_crc32c_parts_reproduce_s3s_value() -> None:
    parts = parts_of(BIG, 5 * MIB)
    value = crc32c_raw(b"".join(crc32c_raw(p) for p in parts))
    headers = {"ETag": '"not-an-md5"', "x-amz-checksum-crc32c": b64(value) + "-3"}
    (digest,) = digests.promise(len(BIG), headers).digests
    assert digest.algorithm == "crc32c-parts"
    hasher = digest.hasher(len(BIG))
    hasher.update(BIG)
    assert hasher.hexdigest() == value.hex()


def test_parts_that_fit_no_known_size_are_size_only() -> None:
    headers = {"ETag": f'"{MD5_HEX}-7"'}
    promised = digests.promise(len(DATA), headers)
    assert promised.source == "size-only"
    assert "md5-parts" in promised.note


def test_malformed_checksum_headers_are_ignored() -> None:
    headers = {"ETag": f'"{MD5_HEX}"', "x-amz-checksum-sha256": "not base64!"}
    assert digests.promise(len(DATA), headers).source == "etag-md5"
    assert digests.multipart_count('"abc"') is None
    assert digests.multipart_count(f'"{MD5_HEX}-12"') == 12


@pytest.mark.parametrize(
    ("prefix", "folder"), [("models/llama", "models/llama/"), ("a/", "a/"), ("", ""), ("/", "")]
)
def test_a_prefix_is_a_folder(prefix: str, folder: str) -> None:
    assert addressing.folder(prefix) == folder


@pytest.mark.parametrize(
    ("endpoint", "bucket", "key", "version", "url"),
    [
        ("https://s3.us-west-2.amazonaws.com", "models", "a b/c~d.bin", None,
         "https://models.s3.us-west-2.amazonaws.com/a%20b/c~d.bin"),
        ("https://s3.us-west-2.amazonaws.com", "my.dotted.bucket", "k", None,
         "https://s3.us-west-2.amazonaws.com/my.dotted.bucket/k"),
        ("http://minio.local:9000", "models", "k+1", "v/1",
         "http://minio.local:9000/models/k%2B1?versionId=v%2F1"),
    ],
)  # fmt: skip
def test_object_urls(endpoint, bucket, key, version, url) -> None:
    assert addressing.object_url(endpoint, bucket, key, version_id=version) == url


def test_only_the_admins_endpoint_is_trusted_with_credentials() -> None:
    admin = {"AWS_ENDPOINT_URL_S3": "http://minio.local:9000/"}
    assert addressing.choose_endpoint(None, admin) == addressing.Endpoint(
        "http://minio.local:9000", True
    )
    assert addressing.choose_endpoint(None, {}) == addressing.Endpoint(None, True)
    assert addressing.choose_endpoint("http://MINIO.local:9000", admin).trusted
    assert not addressing.choose_endpoint("http://attacker.example", admin).trusted
    assert not addressing.choose_endpoint("http://minio.local:9000", {}).trusted
    with pytest.raises(errors.InvalidSpecError, match=r"parameters\.endpoint"):
        addressing.choose_endpoint("ftp://x", {})
