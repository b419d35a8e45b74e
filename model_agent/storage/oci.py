"""OCI Object Storage backend: a bucket prefix pinned to a listing, fetched by signed ranged GETs.

URIs: ``oci://n/{namespace}/b/{bucket}/o/{prefix}`` and ``oci://{namespace}@{region}/{bucket}/
{prefix}``. The prefix is a folder: ``models/llama`` lists ``models/llama/`` (never
``models/llama-v2/``) and an object lands at ``<destination>/<name minus "models/llama/">``.
Folder markers (names ending in ``/``) are skipped. When nothing is under the folder and the
prefix names one object exactly (``o/models/model.gguf``), that object lands at
``<destination>/model.gguf``.

``pin()`` runs the synchronous oci SDK in threads: the credentials (``oci_auth``), every page of
``ListObjects`` (name, size, md5, etag), and a ``HeadObject`` for each object whose listing md5
cannot verify it (multipart or missing; bounded parallel). ``oci_checksums.promise`` picks the
digest. The revision is a sha256 of the sorted (name, size, etag) listing.

The data path is the agent's aiohttp engine: ``request()`` builds a (vendored) requests
``PreparedRequest`` for the GET with its ``Range``, lets the SDK signer sign it (in a thread: a
token signer may refresh its token, which blocks) and hands the signed URL and headers to the
engine. ``check_response`` refuses a body whose ETag is not the pinned one.

Settings: ``parameters.auth``/``profile``/``region`` (see ``oci_auth``), ``parameters.endpoint``
or ``OCI_OBJECT_STORAGE_ENDPOINT`` (private endpoints, mirrors, tests), ``OCI_CONFIG_FILE``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import oci
import yarl

from model_agent import errors, uris
from model_agent.egress import clients, policy
from model_agent.storage import base, oci_auth, oci_checksums

__all__ = ["OCIBackend", "map_error"]

log = logging.getLogger("model_agent.storage.oci")
# The SDK logs its circuit-breaker setup at INFO; keep the agent's log to its own lines.
logging.getLogger("oci").setLevel(logging.WARNING)

_PAGE_LIMIT = 1000
_FIELDS = "name,size,md5,etag,timeCreated"
_API_ATTEMPTS = 3
_HEAD_CONCURRENCY = 8
_TIMEOUT = (10.0, 60.0)  # connect, read (seconds) for SDK calls
_MAX_PAGES = 100_000


@dataclasses.dataclass
class _SignableGet:
    """The request shape the SDK's signers work on (method, url, path_url, headers, body),
    so a data GET is signed through the signer's public call, not the SDK's vendored HTTP
    library. Header names are lower case; the signer adds date and host."""

    url: str
    headers: dict[str, str]
    method: str = "GET"
    body: None = None

    @property
    def path_url(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclasses.dataclass(frozen=True)
class _Listed:
    name: str
    size: int
    md5: str | None
    etag: str | None


def map_error(
    exc: Exception,
    *,
    what: str,
    mode: str,
    egress: policy.Egress | None = None,
    endpoint: str = "",
) -> errors.AgentError:
    """One agent error per SDK failure: 404 bucket/object, 401 and 403 each say what to check;
    certificate and proxy failures say which setting to change (``egress``)."""
    if egress is not None and not isinstance(exc, oci.exceptions.ServiceError):
        explained = clients.transport_error(
            exc,
            host=urlsplit(endpoint).netloc or what,
            proxy=egress.metadata_proxy(endpoint),
            ca=egress.ca,
        )
        if explained is not None:
            return explained
    if isinstance(exc, oci.exceptions.ServiceError):
        status, code = int(exc.status or 0), str(exc.code or "")
        headers = dict(exc.headers or {})
        if status == 404 and code == "BucketNotFound":
            return errors.NotFoundError(
                f"{what}: bucket not found (404 BucketNotFound), or the {mode} credentials "
                "may not read it"
            )
        if status == 404:
            return errors.NotFoundError(f"{what}: not found (404 {code or 'NotFound'})")
        if status == 401:
            return errors.AuthError(
                f"{what}: OCI rejected the {mode} credentials (401 {code or 'NotAuthenticated'}); "
                "check the user, tenancy, key fingerprint and the clock"
            )
        if status == 403:
            return errors.AuthError(f"{what}: {mode} credentials lack access (403 {code})")
        if status == 429:
            wait = base.retry_after_seconds(headers.get("retry-after"))
            return errors.RateLimitedError(f"{what}: rate limited (429)", retry_after=wait)
        if status >= 500 or status == 0:
            return errors.ServerError(f"{what}: OCI server error {status} {code}".rstrip())
        return errors.PermanentError(f"{what}: OCI answered {status} {code}".rstrip())
    if isinstance(exc, OSError | TimeoutError):  # the SDK's request errors are OSErrors
        return errors.NetworkError(
            f"{what}: cannot reach OCI Object Storage ({type(exc).__name__})"
        )
    raise exc


class OCIBackend:
    """``base.Backend`` for one namespace/bucket/prefix."""

    def __init__(
        self,
        uri: str,
        *,
        parameters: Mapping[str, str] | None = None,
        config_file: str | None = None,
        environ: Mapping[str, str] | None = None,
        signer_factory: oci_auth.SignerFactory | None = None,
        egress: policy.Egress | None = None,
    ) -> None:
        parsed = uris.parse_oci(uri)
        params = dict(parameters or {})
        env = os.environ if environ is None else environ
        self.uri = uri
        self.namespace, self.bucket = parsed.namespace, parsed.bucket
        self.folder = parsed.prefix.rstrip("/") + "/"
        if not params.get("region") and parsed.region:
            params["region"] = parsed.region
        self._auth = oci_auth.auth_request(params, config_file=config_file, environ=env)
        override = params.get("endpoint") or env.get("OCI_OBJECT_STORAGE_ENDPOINT") or None
        self._override = override.rstrip("/") if override else None
        self._factory = signer_factory or oci_auth.build_credentials
        self._egress = egress or policy.Egress()
        self._signer: Any = None
        self._client: Any = None
        self.endpoint: str | None = None
        self._host = ""

    def __repr__(self) -> str:
        return f"OCIBackend({self.uri!r}, auth={self._auth.mode!r}, endpoint={self.endpoint!r})"

    # -- pinning (SDK, in threads) ----------------------------------------------------------------
    def _connect(self) -> None:
        credentials = self._factory(self._auth)
        config = dict(credentials.config)
        if self._auth.region:
            config["region"] = self._auth.region
        if not self._override and not config.get("region"):
            raise errors.ConfigError(
                f"{self.uri}: no OCI region known for {self._auth.mode} auth; set "
                "parameters.region (or parameters.endpoint)"
            )
        try:
            client = oci.object_storage.ObjectStorageClient(
                config,
                signer=credentials.signer,
                service_endpoint=self._override,
                retry_strategy=oci.retry.NoneRetryStrategy(),
                circuit_breaker_strategy=oci.circuit_breaker.NoCircuitBreakerStrategy(),
                timeout=_TIMEOUT,
            )
        except (oci.exceptions.InvalidConfig, ValueError) as exc:
            raise errors.ConfigError(
                f"{self.uri}: the OCI client cannot be built for {self._auth.mode} auth "
                f"({type(exc).__name__})"
            ) from None
        self._signer, self._client = credentials.signer, client
        self.endpoint = str(client.base_client.endpoint).rstrip("/")
        clients.configure_requests_session(client.base_client.session, self._egress, self.endpoint)
        self._host = urlsplit(self.endpoint).netloc.lower()

    async def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one SDK call in a thread, retrying retryable failures a few times."""
        for attempt in range(1, _API_ATTEMPTS + 1):
            try:
                return await asyncio.to_thread(func, *args, **kwargs)
            except Exception as exc:  # mapped; unknown errors re-raise from map_error
                error = map_error(
                    exc,
                    what=what,
                    mode=self._auth.mode,
                    egress=self._egress,
                    endpoint=self.endpoint or "",
                )
                if not error.retryable or attempt == _API_ATTEMPTS:
                    raise error from None
                assert isinstance(error, errors.RetryableError)
                await asyncio.sleep(error.retry_after or random.uniform(0.1, 0.4 * 2**attempt))
        raise AssertionError("unreachable")

    async def _list(self) -> list[_Listed]:
        where = f"oci://n/{self.namespace}/b/{self.bucket}/o/{self.folder}"
        listed: list[_Listed] = []
        start: str | None = None
        for _ in range(_MAX_PAGES):
            response = await self._call(
                f"listing {where}",
                self._client.list_objects,
                self.namespace,
                self.bucket,
                prefix=self.folder,
                start=start,
                limit=_PAGE_LIMIT,
                fields=_FIELDS,
            )
            for summary in response.data.objects or ():
                name = str(summary.name)
                if not name.startswith(self.folder) or name.endswith("/"):
                    continue  # folder markers; the service already filtered the prefix
                listed.append(
                    _Listed(name, int(summary.size or 0), summary.md5 or None, summary.etag)
                )
            following = response.data.next_start_with
            if not following:
                return listed
            if start is not None and following <= start:
                raise errors.ServerError(f"listing {where}: the page cursor did not advance")
            start = following
        raise errors.ServerError(f"listing {where}: more than {_MAX_PAGES} pages")

    async def _head(self, item: _Listed, slots: asyncio.Semaphore) -> Mapping[str, str]:
        async with slots:
            response = await self._call(
                f"reading the metadata of {item.name}",
                self._client.head_object,
                self.namespace,
                self.bucket,
                item.name,
            )
        headers = {str(k).lower(): str(v) for k, v in dict(response.headers).items()}
        etag = headers.get("etag")
        if item.etag and etag and etag != item.etag:
            raise errors.ServerError(f"{item.name} changed while the prefix was being pinned")
        return headers

    async def _single_object(self) -> tuple[_Listed, Mapping[str, str]] | None:
        """The URI's prefix named one object rather than a folder: that object, or None."""
        name = self.folder.rstrip("/")
        try:
            response = await self._call(
                f"reading the metadata of {name}",
                self._client.head_object,
                self.namespace,
                self.bucket,
                name,
            )
        except errors.NotFoundError as exc:
            if "BucketNotFound" in str(exc):
                raise
            return None
        headers = {str(k).lower(): str(v) for k, v in dict(response.headers).items()}
        md5 = headers.get("content-md5") or headers.get("opc-multipart-md5")
        size = int(headers.get("content-length", "0"))
        return _Listed(name, size, md5, headers.get("etag")), headers

    async def pin(self) -> base.Plan:
        try:
            await asyncio.to_thread(self._connect)
        except oci.exceptions.ClientError as exc:
            raise errors.ConfigError(
                f"{self.uri}: {self._auth.mode} auth: {type(exc).__name__}"
            ) from None
        root = self.folder
        listed = await self._list()
        known: dict[str, Mapping[str, str]] = {}
        if not listed:
            single = await self._single_object()
            if single is None:
                raise errors.NotFoundError(
                    f"no objects under {self.folder!r} in bucket {self.bucket!r} of namespace "
                    f"{self.namespace!r} ({self.uri})"
                )
            only, only_headers = single
            known[only.name] = only_headers
            listed, root = [only], only.name[: only.name.rfind("/") + 1]
        slots = asyncio.Semaphore(_HEAD_CONCURRENCY)
        heads: dict[str, asyncio.Task[Mapping[str, str]]] = {}
        async with asyncio.TaskGroup() as group:
            for item in listed:
                if item.name not in known and oci_checksums.needs_head(item.md5):
                    heads[item.name] = group.create_task(self._head(item, slots))
        known.update({name: task.result() for name, task in heads.items()})
        files = []
        digest = hashlib.sha256()
        for item in sorted(listed, key=lambda i: i.name):
            headers = known.get(item.name)
            promised = oci_checksums.promise(item.size, item.md5, headers)
            path = item.name[len(root) :]
            if promised.source == "size-only":
                log.warning(
                    "%s: %s; only its size will be verified (size_only)",
                    item.name,
                    promised.note,
                    extra={"file": path},
                )
            identity = item.etag or (headers or {}).get("etag") or f"md5:{item.md5}"
            digest.update(f"{item.name}\t{item.size}\t{identity}\n".encode())
            files.append(
                base.RemoteFile(
                    path=path,
                    size=item.size,
                    identity=f"etag:{identity}",
                    key=item.name,
                    digests=promised.digests,
                )
            )
        return base.Plan(uri=self.uri, revision=digest.hexdigest(), files=tuple(files))

    # -- data path (aiohttp engine) ---------------------------------------------------------------
    def object_url(self, name: str) -> str:
        """The object's URL in the form aiohttp (yarl) sends it: the signature covers the path
        exactly as sent, so it is signed in that canonical form."""
        if self.endpoint is None:
            raise RuntimeError("pin() first")
        url = (
            f"{self.endpoint}/n/{quote(self.namespace, safe='')}/b/{quote(self.bucket, safe='')}"
            f"/o/{quote(name, safe='/')}"
        )
        return str(yarl.URL(url))

    def _sign(self, url: str, range_value: str) -> tuple[str, dict[str, str]]:
        request = _SignableGet(url, {"range": range_value})
        self._signer(request)  # every SDK signer signs a request object in place
        headers = {
            str(k): str(v) for k, v in request.headers.items() if str(k).lower() != "content-type"
        }
        return url, headers

    async def request(self, file: base.RemoteFile, *, start: int, end: int) -> base.HTTPRequest:
        url, headers = await asyncio.to_thread(
            self._sign, self.object_url(file.key), base.range_header(start, end)
        )
        return base.HTTPRequest(url=url, headers=headers, auth_hosts=frozenset({self._host}))

    def check_response(self, file: base.RemoteFile, headers: Mapping[str, str]) -> None:
        etag = (headers.get("ETag") or "").strip().removeprefix("W/").strip('"')
        pinned = file.identity.removeprefix("etag:").strip('"')
        if etag and file.identity.startswith("etag:") and etag != pinned:
            raise errors.ServerError(
                f"{file.key} changed since it was pinned (etag {etag}, pinned {pinned})"
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            session = getattr(client.base_client, "session", None)
            if session is not None:
                await asyncio.to_thread(session.close)
