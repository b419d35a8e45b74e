"""Parse every storage URI scheme of OME into typed values.

Pure. Each parser raises ``errors.InvalidURIError`` quoting the URI and the expected form.
``parse`` dispatches on the scheme; ``is_downloadable`` says whether the agent fetches bytes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from model_agent import errors

__all__ = [
    "GCSURI",
    "OCIURI",
    "PVCURI",
    "S3URI",
    "AzureURI",
    "GitHubURI",
    "HuggingFaceURI",
    "LocalURI",
    "StorageURI",
    "VendorURI",
    "parse",
]

_NAMESPACE_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HF_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9._/-]+$")


@dataclasses.dataclass(frozen=True)
class OCIURI:
    namespace: str
    bucket: str
    prefix: str
    region: str | None = None
    scheme = "oci"


@dataclasses.dataclass(frozen=True)
class HuggingFaceURI:
    repo_id: str
    revision: str = "main"
    scheme = "hf"


@dataclasses.dataclass(frozen=True)
class LocalURI:
    path: str
    scheme = "local"


@dataclasses.dataclass(frozen=True)
class PVCURI:
    pvc_name: str
    sub_path: str
    namespace: str | None = None
    scheme = "pvc"


@dataclasses.dataclass(frozen=True)
class VendorURI:
    vendor: str
    resource_type: str
    resource_path: str
    scheme = "vendor"


@dataclasses.dataclass(frozen=True)
class S3URI:
    bucket: str
    prefix: str
    region: str | None = None
    scheme = "s3"


@dataclasses.dataclass(frozen=True)
class GCSURI:
    bucket: str
    object: str
    scheme = "gs"


@dataclasses.dataclass(frozen=True)
class AzureURI:
    account: str
    container: str
    blob_path: str
    scheme = "az"


@dataclasses.dataclass(frozen=True)
class GitHubURI:
    owner: str
    repository: str
    tag: str = "latest"
    scheme = "github"


StorageURI = (
    OCIURI | HuggingFaceURI | LocalURI | PVCURI | VendorURI | S3URI | GCSURI | AzureURI | GitHubURI
)

#: Schemes whose bytes the agent downloads itself.
DOWNLOADABLE = frozenset({"oci", "hf", "s3", "gs", "github", "az"})
#: Schemes OME knows but this agent does not download: a clear Failed, never a hang.
UNSUPPORTED: frozenset[str] = frozenset()


def _bad(uri: str, expected: str, why: str = "") -> errors.InvalidURIError:
    detail = f": {why}" if why else ""
    return errors.InvalidURIError(f"invalid storage URI {uri!r}{detail}; expected {expected}")


_OCI_FORMS = (
    "oci://n/{namespace}/b/{bucket}/o/{prefix} or oci://{namespace}@{region}/{bucket}/{prefix}"
)


def _clean_prefix(uri: str, prefix: str, expected: str) -> str:
    parts = [p for p in prefix.split("/") if p]
    if any(p in {".", ".."} for p in parts) or "\\" in prefix:
        raise _bad(uri, expected, "the object prefix must not contain '.', '..' or '\\'")
    return "/".join(parts)


def parse_oci(uri: str) -> OCIURI:
    rest = uri[len("oci://") :]
    if rest.startswith("n/"):
        parts = rest.split("/", 5)
        if len(parts) < 6 or parts[2] != "b" or parts[4] != "o" or not parts[1] or not parts[3]:
            raise _bad(uri, _OCI_FORMS)
        prefix = _clean_prefix(uri, parts[5], _OCI_FORMS)
        if not prefix:
            raise _bad(uri, _OCI_FORMS, "the object prefix is empty")
        return OCIURI(namespace=parts[1], bucket=parts[3], prefix=prefix)
    head, sep, tail = rest.partition("/")
    namespace, at, region = head.partition("@")
    bucket, _, prefix = tail.partition("/")
    if not sep or not at or not namespace or not region or not bucket:
        raise _bad(uri, _OCI_FORMS)
    prefix = _clean_prefix(uri, prefix, _OCI_FORMS)
    if not prefix:
        raise _bad(uri, _OCI_FORMS, "the object prefix is empty")
    return OCIURI(namespace=namespace, bucket=bucket, prefix=prefix, region=region)


_HF_FORM = "hf://{org}/{repo}[@{revision}]"


def parse_hf(uri: str) -> HuggingFaceURI:
    rest = uri[len("hf://") :]
    repo_id, at, revision = rest.partition("@")
    if at and not revision:
        raise _bad(uri, _HF_FORM, "the revision after '@' is empty")
    parts = repo_id.split("/")
    if not repo_id or len(parts) > 2 or not all(_HF_PART_RE.match(p) for p in parts):
        raise _bad(uri, _HF_FORM, "the repository id must be {org}/{repo} or {repo}")
    if any(".." in p for p in parts):
        raise _bad(uri, _HF_FORM, "the repository id must not contain '..'")
    revision = revision or "main"
    if not _REVISION_RE.match(revision) or ".." in revision:
        raise _bad(uri, _HF_FORM, f"invalid revision {revision!r}")
    return HuggingFaceURI(repo_id=repo_id, revision=revision)


def parse_local(uri: str) -> LocalURI:
    path = uri[len("local://") :]
    if not path.startswith("/"):
        raise _bad(uri, "local://{absolute path}", "the path must be absolute")
    if any(p == ".." for p in path.split("/")):
        raise _bad(uri, "local://{absolute path}", "the path must not contain '..'")
    return LocalURI(path=path.rstrip("/") or "/")


_PVC_FORM = "pvc://[{namespace}:]{pvc}/{subpath}"


def parse_pvc(uri: str) -> PVCURI:
    rest = uri[len("pvc://") :]
    first, slash, sub_path = rest.partition("/")
    if not slash or not sub_path:
        raise _bad(uri, _PVC_FORM, "missing subpath")
    namespace: str | None = None
    pvc_name = first
    if ":" in first:
        namespace, _, pvc_name = first.partition(":")
        if not namespace or not _NAMESPACE_RE.match(namespace):
            raise _bad(uri, _PVC_FORM, f"invalid namespace {namespace!r}")
        if not pvc_name or ":" in pvc_name:
            raise _bad(uri, _PVC_FORM, "invalid PVC name")
    if not pvc_name:
        raise _bad(uri, _PVC_FORM, "missing PVC name")
    return PVCURI(pvc_name=pvc_name, sub_path=sub_path, namespace=namespace)


def parse_vendor(uri: str) -> VendorURI:
    parts = uri[len("vendor://") :].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise _bad(uri, "vendor://{vendor}/{type}/{path}")
    return VendorURI(vendor=parts[0], resource_type=parts[1], resource_path=parts[2])


def parse_s3(uri: str) -> S3URI:
    rest = uri[len("s3://") :]
    region: str | None = None
    if "@" in rest:
        bucket, _, tail = rest.partition("@")
        region, _, prefix = tail.partition("/")
    else:
        bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise _bad(uri, "s3://{bucket}[@{region}]/{prefix}", "the bucket is empty")
    return S3URI(bucket=bucket, prefix=prefix, region=region or None)


def parse_gcs(uri: str) -> GCSURI:
    bucket, _, obj = uri[len("gs://") :].partition("/")
    if not bucket:
        raise _bad(uri, "gs://{bucket}/{object}", "the bucket is empty")
    return GCSURI(bucket=bucket, object=obj)


def parse_azure(uri: str) -> AzureURI:
    rest = uri[len("az://") :]
    marker = ".blob.core.windows.net/"
    if marker in rest:
        account, _, tail = rest.partition(marker)
        container, _, blob = tail.partition("/")
    else:
        parts = rest.split("/", 2)
        if len(parts) < 2:
            raise _bad(uri, "az://{account}/{container}/{path}", "missing container")
        account, container = parts[0], parts[1]
        blob = parts[2] if len(parts) > 2 else ""
    if not account or not container:
        raise _bad(uri, "az://{account}/{container}/{path}", "account and container are required")
    return AzureURI(account=account, container=container, blob_path=blob)


def parse_github(uri: str) -> GitHubURI:
    rest = uri[len("github://") :]
    repo, at, tag = rest.partition("@")
    owner, slash, repository = repo.partition("/")
    if not slash or not owner or not repository or "/" in repository:
        raise _bad(uri, "github://{owner}/{repository}[@{tag}]")
    return GitHubURI(owner=owner, repository=repository, tag=tag if at and tag else "latest")


_PARSERS: dict[str, Callable[[str], StorageURI]] = {
    "oci": parse_oci,
    "hf": parse_hf,
    "local": parse_local,
    "pvc": parse_pvc,
    "vendor": parse_vendor,
    "s3": parse_s3,
    "gs": parse_gcs,
    "az": parse_azure,
    "github": parse_github,
}


def parse(uri: str) -> StorageURI:
    """Parse any storage URI OME knows. Raises ``InvalidURIError`` for anything else."""
    if not isinstance(uri, str) or not uri.strip():
        raise errors.InvalidURIError("spec.storage.storageUri is empty")
    if uri != uri.strip() or any(ch.isspace() or ord(ch) < 32 for ch in uri):
        raise errors.InvalidURIError(f"invalid storage URI {uri!r}: contains whitespace")
    scheme, sep, _ = uri.partition("://")
    parser = _PARSERS.get(scheme)
    if not sep or parser is None:
        known = ", ".join(f"{s}://" for s in _PARSERS)
        raise errors.InvalidURIError(
            f"unknown storage URI scheme in {uri!r}; expected one of {known}"
        )
    return parser(uri)
