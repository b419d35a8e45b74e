"""Checksums, pure: git blob sha1 framing, OCI base64 md5 and multipart md5, the strength
order used to pick a file's digest, and refusal of malformed digests."""

from __future__ import annotations

import base64
import hashlib

import pytest

from model_agent import checksums


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"),
        (b"hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"),
    ],
)
def test_git_blob_sha1_matches_git(content: bytes, expected: str) -> None:
    hasher = checksums.new_hasher("git-sha1", len(content))
    hasher.update(content)
    assert hasher.hexdigest() == expected


def test_sha256_and_md5_hashers_are_the_plain_ones() -> None:
    for algorithm, reference in (("sha256", hashlib.sha256), ("md5", hashlib.md5)):
        hasher = checksums.new_hasher(algorithm, 3)
        hasher.update(b"abc")
        assert hasher.hexdigest() == reference(b"abc").hexdigest()


def test_strongest_prefers_sha256_then_git_sha1_then_md5() -> None:
    md5 = checksums.Checksum("md5", "0" * 32)
    sha1 = checksums.Checksum("git-sha1", "1" * 40)
    sha256 = checksums.Checksum("sha256", "2" * 64)
    assert checksums.strongest([md5, sha256, sha1]) == sha256
    assert checksums.strongest([md5, sha1]) == sha1
    assert checksums.strongest([]) is None


def test_digests_are_normalised_to_lower_case_hex() -> None:
    assert checksums.Checksum("md5", '"' + "AB" * 16 + '"').value == "ab" * 16
    assert str(checksums.Checksum("md5", "ab" * 16)) == "md5:" + "ab" * 16


@pytest.mark.parametrize(
    ("algorithm", "value"),
    [("sha256", "abc"), ("md5", "z" * 32), ("crc64nvme", "00000000"), ("git-sha1", "0" * 64)],
)
def test_malformed_digests_are_refused(algorithm: str, value: str) -> None:
    with pytest.raises(ValueError):
        checksums.Checksum(algorithm, value)


def test_oci_content_md5_is_decoded_from_base64() -> None:
    digest = hashlib.md5(b"data").digest()
    parsed = checksums.md5_from_base64(base64.b64encode(digest).decode())
    assert parsed == checksums.Checksum("md5", digest.hex())


@pytest.mark.parametrize("value", ["abc-3", "!!!", base64.b64encode(b"short").decode()])
def test_multipart_or_malformed_md5_is_not_a_content_hash(value: str) -> None:
    assert checksums.md5_from_base64(value) is None


def test_multipart_md5_is_md5_of_part_digests_with_count() -> None:
    parts = [hashlib.md5(b"a").digest(), hashlib.md5(b"b").digest()]
    expected = base64.b64encode(hashlib.md5(parts[0] + parts[1]).digest()).decode() + "-2"
    assert checksums.multipart_md5(parts) == expected
