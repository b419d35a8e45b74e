"""Storage URI parsing: every scheme of OME, good and bad forms, errors that quote the URI."""

from __future__ import annotations

import pytest

from model_agent import errors, uris

GOOD = [
    ("oci://n/ns/b/bucket/o/models/llama", uris.OCIURI("ns", "bucket", "models/llama")),
    ("oci://n/ns/b/bucket/o/models/llama/", uris.OCIURI("ns", "bucket", "models/llama")),
    ("oci://n/ns/b/bucket/o/a//b", uris.OCIURI("ns", "bucket", "a/b")),
    (
        "oci://ns@us-ashburn-1/bucket/models/x",
        uris.OCIURI("ns", "bucket", "models/x", "us-ashburn-1"),
    ),
    ("hf://meta-llama/Llama-3.1-8B", uris.HuggingFaceURI("meta-llama/Llama-3.1-8B", "main")),
    ("hf://org/repo@v1.0", uris.HuggingFaceURI("org/repo", "v1.0")),
    ("hf://gpt2", uris.HuggingFaceURI("gpt2", "main")),
    ("hf://org/repo@refs/pr/1", uris.HuggingFaceURI("org/repo", "refs/pr/1")),
    ("hf://org/repo@" + "a" * 40, uris.HuggingFaceURI("org/repo", "a" * 40)),
    ("local:///mnt/models/llama", uris.LocalURI("/mnt/models/llama")),
    ("local:///mnt/models/llama/", uris.LocalURI("/mnt/models/llama")),
    ("pvc://my-pvc/models/llama", uris.PVCURI("my-pvc", "models/llama")),
    ("pvc://team-a:my-pvc/models", uris.PVCURI("my-pvc", "models", "team-a")),
    ("vendor://nvidia/nim/llama", uris.VendorURI("nvidia", "nim", "llama")),
    ("vendor://nvidia/nim/a/b/c", uris.VendorURI("nvidia", "nim", "a/b/c")),
    ("s3://bucket/prefix/x", uris.S3URI("bucket", "prefix/x")),
    ("s3://bucket@us-east-1/prefix", uris.S3URI("bucket", "prefix", "us-east-1")),
    ("gs://bucket/obj/x", uris.GCSURI("bucket", "obj/x")),
    ("az://acct/container/path/x", uris.AzureURI("acct", "container", "path/x")),
    ("az://acct.blob.core.windows.net/container/p", uris.AzureURI("acct", "container", "p")),
    ("github://owner/repo", uris.GitHubURI("owner", "repo", "latest")),
    ("github://owner/repo@v1", uris.GitHubURI("owner", "repo", "v1")),
]


@pytest.mark.parametrize(("uri", "expected"), GOOD, ids=[g[0] for g in GOOD])
def test_good_uri_parses_to_typed_value(uri: str, expected: uris.StorageURI) -> None:
    assert uris.parse(uri) == expected


BAD = [
    ("", "empty"),
    ("   ", "empty"),
    ("ftp://host/x", "unknown storage URI scheme"),
    ("models/llama", "unknown storage URI scheme"),
    ("oci://n/ns/b/bucket", "oci://n/{namespace}"),
    ("oci://n/ns/x/bucket/o/p", "oci://n/{namespace}"),
    ("oci://n//b/bucket/o/p", "oci://n/{namespace}"),
    ("oci://n/ns/b/bucket/o/", "prefix is empty"),
    ("oci://n/ns/b/bucket/o/a/../../etc", "'..'"),
    ("oci://ns/bucket/p", "oci://n/{namespace}"),
    ("oci://ns@/bucket/p", "oci://n/{namespace}"),
    ("hf://", "repository id"),
    ("hf://org/repo/extra", "repository id"),
    ("hf://org/repo@", "revision"),
    ("hf://../etc", "repository id"),
    ("hf://org/re po", "whitespace"),
    ("hf://org/repo@a..b", "revision"),
    ("local://relative/path", "absolute"),
    ("local:///mnt/../etc", "'..'"),
    ("pvc://my-pvc", "subpath"),
    ("pvc://Bad_NS:pvc/x", "namespace"),
    ("pvc://ns:/x", "PVC name"),
    ("vendor://nvidia/nim", "vendor://{vendor}"),
    ("s3://", "bucket"),
    ("gs:///obj", "bucket"),
    ("az://acct", "container"),
    ("github://owner", "github://{owner}"),
]


@pytest.mark.parametrize(("uri", "fragment"), BAD, ids=[b[0] or "<empty>" for b in BAD])
def test_bad_uri_raises_clear_error_quoting_it(uri: str, fragment: str) -> None:
    with pytest.raises(errors.InvalidURIError) as info:
        uris.parse(uri)
    message = str(info.value)
    assert fragment in message
    if uri.strip():
        assert repr(uri) in message


def test_invalid_uri_is_permanent() -> None:
    with pytest.raises(errors.AgentError) as info:
        uris.parse("oci://nope")
    assert info.value.retryable is False


@pytest.mark.parametrize("scheme", ["oci", "hf", "s3", "gs", "github", "az"])
def test_every_object_store_scheme_of_ome_is_downloaded(scheme: str) -> None:
    assert scheme in uris.DOWNLOADABLE
    assert scheme not in uris.UNSUPPORTED
    assert not uris.UNSUPPORTED
