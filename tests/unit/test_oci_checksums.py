"""OCI checksum policy, pure: parsing ``opc-multipart-md5``, the part sizes that fit a part
count (128 MiB first, bounded), the one-pass multipart hasher against an independent reference
for every chunking, metadata digests in hex or base64, the order metadata > content-md5 >
multipart > size-only, when a HEAD is needed, and ``MultipartMd5`` as a ``Checksum``."""

from __future__ import annotations

import base64
import hashlib

import pytest

from model_agent import checksums
from model_agent.storage import oci_checksums as oc

MIB = 1024 * 1024


def reference_multipart(data: bytes, part_size: int) -> tuple[str, int]:
    """Hex md5 of the part md5s, and the part count, computed the plain way."""
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return hashlib.md5(joined).hexdigest(), len(parts)


def wire(hex_digest: str, parts: int) -> str:
    return f"{base64.b64encode(bytes.fromhex(hex_digest)).decode()}-{parts}"


DATA = bytes(range(251)) * 41  # 10291 bytes, not a multiple of any part size used here


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (wire("00" * 16, 3), (bytes(16), 3)),
        (" " + wire("ab" * 16, 10000) + " ", (bytes.fromhex("ab" * 16), 10000)),
        (wire("00" * 16, 0), None),
        (base64.b64encode(bytes(16)).decode(), None),  # a plain content md5
        ("abc-3", None),
        (base64.b64encode(bytes(15)).decode() + "-2", None),
        ("", None),
        (None, None),
    ],
)
def test_multipart_md5_wire_form_is_parsed_strictly(
    text: str | None, parsed: tuple[bytes, int] | None
) -> None:
    assert oc.parse_multipart_md5(text) == parsed


@pytest.mark.parametrize(
    ("size", "parts", "expected"),
    [
        (300 * MIB, 3, (128 * MIB, 100 * MIB)),  # the SDK/CLI default comes first
        (129 * MIB, 2, (128 * MIB, 100 * MIB)),
        (11 * MIB, 3, (5 * MIB,)),
        (10 * MIB, 1, (10 * MIB,)),  # one part: the object size itself
        (0, 1, (1,)),
        (5000, 5, ()),  # parts of 1000 bytes: no known size fits
        (10 * MIB, 0, ()),
    ],
)
def test_candidate_part_sizes_fit_the_part_count(
    size: int, parts: int, expected: tuple[int, ...]
) -> None:
    found = oc.candidate_part_sizes(size, parts)
    assert found == expected
    assert all(-(-size // p) == parts or parts == 1 for p in found)


def test_candidate_part_sizes_are_bounded_and_ordered() -> None:
    known = (7, 8, 9, 10, 11)
    assert oc.candidate_part_sizes(70, 7, known, limit=2) == (10, 11)
    assert oc.candidate_part_sizes(70, 7, known, limit=1) == (10,)


@pytest.mark.parametrize("part_size", [1000, 4096, 10291, 20000])
@pytest.mark.parametrize("chunk", [1, 999, 1000, 4096, 100_000])
def test_multipart_hasher_matches_the_plain_computation_for_any_chunking(
    part_size: int, chunk: int
) -> None:
    expected, _ = reference_multipart(DATA, part_size)
    hasher = oc.MultipartHasher([part_size], expected=expected)
    for i in range(0, len(DATA), chunk):
        hasher.update(DATA[i : i + chunk])
    assert hasher.hexdigest() == expected
    assert hasher.matched_part_size() == part_size


def test_multipart_hasher_tries_every_candidate_in_one_pass() -> None:
    expected, _ = reference_multipart(DATA, 4096)
    hasher = oc.MultipartHasher([5000, 4096, 3000], expected=expected)
    hasher.update(memoryview(DATA))
    assert hasher.hexdigest() == expected
    assert hasher.matched_part_size() == 4096


def test_multipart_hasher_reports_the_first_candidate_when_none_matches() -> None:
    first, _ = reference_multipart(DATA, 5000)
    hasher = oc.MultipartHasher([5000, 3000], expected="0" * 32)
    hasher.update(DATA)
    assert hasher.hexdigest() == first
    assert hasher.matched_part_size() is None


def test_multipart_hasher_of_an_empty_object_is_one_empty_part() -> None:
    expected, parts = reference_multipart(b"", 1000)
    assert parts == 1
    assert oc.MultipartHasher([1000], expected=expected).hexdigest() == expected
    with pytest.raises(ValueError, match="candidate"):
        oc.MultipartHasher([], expected=expected)


MD5 = hashlib.md5(DATA).digest()
SHA = hashlib.sha256(DATA).digest()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"opc-meta-md5": base64.b64encode(MD5).decode()}, checksums.Checksum("md5", MD5.hex())),
        ({"OPC-META-MD5": MD5.hex().upper()}, checksums.Checksum("md5", MD5.hex())),
        ({"opc-meta-content-md5": f'"{MD5.hex()}"'}, checksums.Checksum("md5", MD5.hex())),
        (
            {"opc-meta-md5": MD5.hex(), "opc-meta-sha256": base64.b64encode(SHA).decode()},
            checksums.Checksum("sha256", SHA.hex()),
        ),
        ({"opc-meta-md5": "not a digest"}, None),
        ({"opc-meta-md5": base64.b64encode(SHA).decode()}, None),  # wrong length for md5
        ({"content-md5": base64.b64encode(MD5).decode()}, None),  # not user metadata
    ],
)
def test_metadata_digests_in_hex_or_base64(
    headers: dict[str, str], expected: checksums.Checksum | None
) -> None:
    assert oc.metadata_digest(headers) == expected


def test_policy_prefers_metadata_then_content_md5_then_multipart_then_size() -> None:
    size = len(DATA)
    multipart_hex, parts = reference_multipart(DATA, 5 * MIB)
    multipart = wire(multipart_hex, parts)
    plain = base64.b64encode(MD5).decode()
    meta = {"opc-meta-sha256": SHA.hex(), "opc-multipart-md5": multipart}

    assert oc.promise(size, multipart, meta).digests == (checksums.Checksum("sha256", SHA.hex()),)
    assert oc.promise(size, multipart, meta).source == "metadata"
    assert oc.promise(size, plain, None) == oc.Promise(
        (checksums.Checksum("md5", MD5.hex()),), "content-md5"
    )
    assert oc.promise(size, None, {"content-md5": plain}).source == "content-md5"

    chosen = oc.promise(size, multipart, {"opc-multipart-md5": multipart})
    (digest,) = chosen.digests
    assert chosen.source == "multipart-md5"
    assert isinstance(digest, oc.MultipartMd5)
    assert (digest.algorithm, digest.value, digest.parts) == ("md5-parts", multipart_hex, 1)

    unfit = oc.promise(5000, wire("00" * 16, 5), {"opc-multipart-md5": wire("00" * 16, 5)})
    assert unfit.digests == () and unfit.source == "size-only"
    assert "fits none of the known part sizes" in unfit.note
    nothing = oc.promise(size, None, {})
    assert nothing.digests == () and nothing.source == "size-only"


@pytest.mark.parametrize(
    ("listed", "needed"),
    [
        (base64.b64encode(MD5).decode(), False),
        (wire("00" * 16, 4), True),
        (None, True),
        ("garbage", True),
    ],
)
def test_head_is_needed_only_when_the_listed_md5_cannot_verify(
    listed: str | None, needed: bool
) -> None:
    assert oc.needs_head(listed) is needed


def test_multipart_md5_is_a_checksum_that_builds_its_own_hasher() -> None:
    expected, parts = reference_multipart(DATA, 1000)
    digest = oc.MultipartMd5("md5-parts", expected.upper(), parts=parts, part_sizes=(1000,))
    assert digest.value == expected
    assert str(digest) == f"md5-parts:{expected}-{parts}"
    plain_md5 = checksums.Checksum("md5", MD5.hex())
    assert checksums.strongest([digest, plain_md5]) == plain_md5
    hasher = digest.hasher(len(DATA))
    hasher.update(DATA)
    assert hasher.hexdigest() == digest.value
    with pytest.raises(ValueError, match="md5-parts"):
        checksums.new_hasher("md5-parts", 1)
