"""A local OCI Object Storage for tests: buckets of objects behind the real API's wire shapes.

Owns the part of the Object Storage API that the oci SDK uses to list and fetch models
(TESTING.md): ``GET /n/``, bucket get/head, ``ListObjects`` with prefix/start/end/startAfter/
limit/delimiter/fields and ``nextStartWith`` paging, ``HeadObject`` with ``content-md5`` or,
for multipart objects, ``opc-multipart-md5`` (then the listing's ``md5`` is that multipart
string too, as the real service lists it), ``opc-meta-*`` metadata, ranged ``GetObject``, and
JSON errors ``{"code", "message"}`` (HEAD errors have no body). Every request must carry an
``Authorization: Signature`` whose RSA-SHA256 signature verifies against the throw-away key of
``config``. Objects are ``bytes`` or paths on disk (streamed in chunks). Faults and the request
log come from ``faults``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import email.utils
import functools
import hashlib
import json
import pathlib
import re
import threading
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.harness import faults as faults_mod

__all__ = ["LocalObjectStore", "StoredObject", "multipart_md5"]

_OBJECT_RE = re.compile(r"^/n/(?P<ns>[^/]+)/b/(?P<bucket>[^/]+)/o/(?P<name>.+)$")
_LIST_RE = re.compile(r"^/n/(?P<ns>[^/]+)/b/(?P<bucket>[^/]+)/o/?$")
_BUCKET_RE = re.compile(r"^/n/(?P<ns>[^/]+)/b/(?P<bucket>[^/]+)/?$")
_SIGNATURE_FIELD_RE = re.compile(r'(\w+)="([^"]*)"')
_HASH_CHUNK = 4 * 1024 * 1024
_MAX_LIMIT = 1000
_TENANCY = "ocid1.tenancy.oc1..aaaaaaaafaketenancyfortestsonly000000000000000000000000000"
_USER = "ocid1.user.oc1..aaaaaaaafakeuserfortestsonly0000000000000000000000000000000000"


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """One object: where its bytes live and what the service reports for it."""

    name: str
    source: faults_mod.Source
    size: int
    md5: str  # base64 MD5 of the content (what content-md5 would say)
    multipart_md5: str | None  # "<base64 md5 of the part digests>-<parts>" for multipart
    etag: str
    created: datetime.datetime
    metadata: Mapping[str, str]

    @property
    def listed_md5(self) -> str:
        """The ``md5`` field ListObjects reports: the multipart string for multipart objects."""
        return self.multipart_md5 or self.md5


def multipart_md5(part_digests: list[bytes]) -> str:
    """OCI's multipart MD5: base64 MD5 of the concatenated binary part MD5s, then ``-<parts>``."""
    combined = hashlib.md5(b"".join(part_digests), usedforsecurity=False).digest()
    return f"{base64.b64encode(combined).decode()}-{len(part_digests)}"


def _digests(source: faults_mod.Source, part_size: int | None) -> tuple[str, str | None]:
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False)
    in_part = 0

    def feed(data: bytes) -> None:
        nonlocal part, in_part
        whole.update(data)
        if part_size is None:
            return
        view = memoryview(data)
        while view:
            take = min(len(view), part_size - in_part)
            part.update(view[:take])
            in_part += take
            view = view[take:]
            if in_part == part_size:
                parts.append(part.digest())
                part, in_part = hashlib.md5(usedforsecurity=False), 0

    if isinstance(source, bytes):
        feed(source)
    else:
        with source.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                feed(chunk)
    if part_size is not None and (in_part or not parts):
        parts.append(part.digest())
    md5 = base64.b64encode(whole.digest()).decode()
    return md5, (multipart_md5(parts) if part_size is not None else None)


@functools.cache
def _session_key() -> rsa.RSAPrivateKey:
    """One throw-away RSA key per test session (generation takes a noticeable moment)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _fingerprint(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.md5(der, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class LocalObjectStore(faults_mod.ServerBase):
    """The local Object Storage on 127.0.0.1. ``page_limit`` (settable) caps ListObjects pages."""

    def __init__(self, *, namespace: str = "testns", page_limit: int = _MAX_LIMIT) -> None:
        super().__init__()
        self.namespace = namespace
        self.page_limit = page_limit
        self.endpoint = ""
        self.region = "us-ashburn-1"
        self._key = _session_key()
        self._public = self._key.public_key()
        fingerprint = _fingerprint(self._public)
        self.key_id = f"{_TENANCY}/{_USER}/{fingerprint}"
        self.config: dict[str, Any] = {
            "user": _USER,
            "tenancy": _TENANCY,
            "fingerprint": fingerprint,
            "key_content": self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode(),
            "region": self.region,
        }
        self._buckets: dict[str, dict[str, StoredObject]] = {}
        self._lock = threading.Lock()

    # -- content -------------------------------------------------------------------------------
    def add_bucket(self, bucket: str) -> None:
        with self._lock:
            self._buckets.setdefault(bucket, {})

    def add_object(
        self,
        bucket: str,
        name: str,
        data: bytes | pathlib.Path,
        *,
        multipart_part_size: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Store (or replace) an object, creating the bucket if needed.

        ``multipart_part_size``: the object looks uploaded in parts of that size (HEAD has
        ``opc-multipart-md5`` and no ``content-md5``). ``metadata`` keys become
        ``opc-meta-<key>`` headers.
        """
        if not isinstance(data, bytes | pathlib.Path):
            raise TypeError(f"{name}: object data must be bytes or pathlib.Path")
        if not name or len(name.encode()) > 1024:
            raise ValueError(f"bad object name {name!r}")
        if multipart_part_size is not None and multipart_part_size <= 0:
            raise ValueError("multipart_part_size must be positive")
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        md5, multipart = _digests(data, multipart_part_size)
        stored = StoredObject(
            name=name,
            source=data,
            size=size,
            md5=md5,
            multipart_md5=multipart,
            etag=str(uuid.uuid4()),
            created=datetime.datetime.now(datetime.UTC),
            metadata=dict(metadata or {}),
        )
        with self._lock:
            self._buckets.setdefault(bucket, {})[name] = stored
        return stored

    def remove_object(self, bucket: str, name: str) -> None:
        with self._lock:
            self._buckets[bucket].pop(name, None)

    def object(self, bucket: str, name: str) -> StoredObject:
        return self._buckets[bucket][name]

    # -- server plumbing -----------------------------------------------------------------------
    def _apps(self) -> list[tuple[web.Application, str]]:
        app = web.Application(middlewares=[faults_mod.log_middleware(self.log)])
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return [(app, "127.0.0.1")]

    def _bound(self, ports: list[tuple[str, int]]) -> None:
        host, port = ports[0]
        scheme = "https" if self.tls is not None else "http"
        self.endpoint = f"{scheme}://{host}:{port}"

    # -- handlers ------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authenticated(request):
            return _error(
                request,
                401,
                "NotAuthenticated",
                "The required information to complete authentication was not "
                "provided or was incorrect.",
            )
        raw = request.rel_url.raw_path
        if request.method not in ("GET", "HEAD"):
            return _error(request, 405, "MethodNotAllowed", "This fake store is read-only.")
        if raw in ("/n", "/n/"):
            return _json(request, self.namespace)
        if match := _OBJECT_RE.match(raw):
            return await self._object(request, match)
        if match := _LIST_RE.match(raw):
            if request.method == "GET":
                return self._list(request, match)
        if match := _BUCKET_RE.match(raw):
            return self._bucket(request, match)
        return _error(request, 404, "NotFound", "Not found.")

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Signature "):
            return False
        fields = dict(_SIGNATURE_FIELD_RE.findall(header))
        if fields.get("keyId") != self.key_id or "signature" not in fields:
            return False
        lines: list[str] = []
        for name in fields.get("headers", "date").split():
            if name == "(request-target)":
                lines.append(f"(request-target): {request.method.lower()} {request.raw_path}")
            elif name in request.headers:
                lines.append(f"{name}: {request.headers[name]}")
            else:
                return False
        try:
            self._public.verify(
                base64.b64decode(fields["signature"]),
                "\n".join(lines).encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    def _bucket_or_error(
        self, request: web.Request, match: re.Match[str]
    ) -> dict[str, StoredObject] | web.StreamResponse:
        bucket = _unquote(match["bucket"])
        objects = self._buckets.get(bucket)
        if _unquote(match["ns"]) != self.namespace or objects is None:
            return _error(
                request,
                404,
                "BucketNotFound",
                f"Either the bucket named '{bucket}' does not exist in the namespace "
                f"'{_unquote(match['ns'])}' or you are not authorized to access it",
            )
        return objects

    def _bucket(self, request: web.Request, match: re.Match[str]) -> web.StreamResponse:
        objects = self._bucket_or_error(request, match)
        if isinstance(objects, web.StreamResponse):
            return objects
        bucket = _unquote(match["bucket"])
        etag = hashlib.sha1(bucket.encode(), usedforsecurity=False).hexdigest()
        body = {
            "namespace": self.namespace,
            "name": bucket,
            "compartmentId": "ocid1.compartment.oc1..aaaaaaaafake",
            "createdBy": _USER,
            "timeCreated": "2024-01-01T00:00:00.000Z",
            "etag": etag,
            "publicAccessType": "NoPublicAccess",
            "storageTier": "Standard",
        }
        return _json(request, body, {"ETag": etag})

    def _list(self, request: web.Request, match: re.Match[str]) -> web.StreamResponse:
        plan = self.faults.plan([_unquote(match["bucket"])], "api")
        if plan.fail_status is not None:
            return _injected(request, plan)
        objects = self._bucket_or_error(request, match)
        if isinstance(objects, web.StreamResponse):
            return objects
        query = request.query
        try:
            limit = int(query.get("limit", _MAX_LIMIT))
        except ValueError:
            return _error(request, 400, "InvalidParameter", "limit must be an integer")
        if not 1 <= limit <= _MAX_LIMIT:
            return _error(request, 400, "InvalidParameter", "limit must be 1..1000")
        limit = min(limit, max(1, self.page_limit))
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter")
        start, end, after = query.get("start"), query.get("end"), query.get("startAfter")
        if delimiter not in (None, "/"):
            return _error(request, 400, "InvalidParameter", "Only '/' is a valid delimiter")
        fields = {f.strip() for f in query.get("fields", "name").split(",") if f.strip()}
        listed: list[dict[str, Any]] = []
        prefixes: list[str] = []
        next_start: str | None = None
        for name in sorted(objects):
            if (
                not name.startswith(prefix)
                or (start is not None and name < start)
                or (end is not None and name >= end)
                or (after is not None and name <= after)
            ):
                continue
            common = None
            if delimiter is not None and delimiter in name[len(prefix) :]:
                cut = name.index(delimiter, len(prefix)) + 1
                common = name[:cut]
                if prefixes and prefixes[-1] == common:
                    continue
            if len(listed) + len(prefixes) == limit:
                next_start = name
                break
            if common is not None:
                prefixes.append(common)
            else:
                listed.append(_summary(objects[name], fields))
        body: dict[str, Any] = {"objects": listed, "prefixes": prefixes}
        if next_start is not None:
            body["nextStartWith"] = next_start
        return _json(request, body)

    async def _object(self, request: web.Request, match: re.Match[str]) -> web.StreamResponse:
        record = request[faults_mod.RECORD]
        name, bucket = _unquote(match["name"]), _unquote(match["bucket"])
        record.file = name
        record.kind = "data" if request.method == "GET" else "meta"
        range_header = request.headers.get("Range")
        plan = self.faults.plan(
            [name, f"{bucket}/{name}"], record.kind, has_range=range_header is not None
        )
        if plan.fail_status is not None:
            return _injected(request, plan)
        objects = self._bucket_or_error(request, match)
        if isinstance(objects, web.StreamResponse):
            return objects
        stored = objects.get(name)
        if stored is None:
            return _error(
                request,
                404,
                "ObjectNotFound",
                f"The object '{name}' was not found in the bucket '{bucket}'",
            )
        headers = {
            "ETag": stored.etag,
            "Last-Modified": email.utils.format_datetime(stored.created, usegmt=True),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "storage-tier": "Standard",
            "opc-request-id": uuid.uuid4().hex,
        }
        if stored.multipart_md5 is not None:
            headers["opc-multipart-md5"] = stored.multipart_md5
        else:
            headers["Content-MD5"] = stored.md5
        headers.update({f"opc-meta-{k}": v for k, v in stored.metadata.items()})
        if_match = request.headers.get("If-Match")
        if if_match is not None and if_match not in (stored.etag, "*"):
            return _error(request, 412, "IfMatchFailed", "The If-Match precondition failed")
        span = None if plan.ignore_range else faults_mod.parse_range(range_header, stored.size)
        if span == "invalid":
            return _error(
                request,
                416,
                "InvalidRange",
                "The requested range is not valid",
                {"Content-Range": f"bytes */{stored.size}"},
            )
        return await faults_mod.serve_span(
            request,
            span=span,
            size=stored.size,
            headers=headers,
            source=stored.source,
            plan=plan,
            faults=self.faults,
            record=record,
            whole_body_headers=("Content-MD5",),
        )


def _summary(stored: StoredObject, fields: set[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {"name": stored.name}
    values = {
        "size": stored.size,
        "md5": stored.listed_md5,
        "etag": stored.etag,
        "timeCreated": stored.created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "timeModified": stored.created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "storageTier": "Standard",
    }
    summary.update({k: v for k, v in values.items() if k in fields})
    return summary


def _unquote(value: str) -> str:
    return urllib.parse.unquote(value)


def _json(
    request: web.Request, body: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers={"opc-request-id": uuid.uuid4().hex, **(headers or {})},
    )


def _injected(request: web.Request, plan: faults_mod.Plan) -> web.Response:
    status = plan.fail_status or 500
    code = "TooManyRequests" if status == 429 else "InternalServerError"
    return _error(request, status, code, "injected failure", faults_mod.error_headers(plan))


def _error(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    extra: Mapping[str, str] | None = None,
) -> web.Response:
    request[faults_mod.RECORD].status = status
    headers = {"opc-request-id": uuid.uuid4().hex, **(extra or {})}
    if request.method == "HEAD":
        return web.Response(status=status, headers=headers)
    body = json.dumps({"code": code, "message": message}).encode()
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")
