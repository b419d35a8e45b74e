"""S3 backend: a bucket prefix pinned to a listing, fetched by SigV4-signed ranged GETs.

``pin()`` runs botocore in threads: the credentials (``auth``), every page of
``ListObjectsV2`` (key, size, ETag), then a ``HeadObject`` with checksum mode for each object
(bounded parallel) for its additional checksums, encryption and version id. An ETag that
changed between the listing and the HEAD fails the pin (retryable: the next try pins again).
``digests.promise`` picks the checksum. The revision is a sha256 of the sorted (key, size,
ETag, version) listing. A versioned object is fetched by its ``versionId``.

The data path is the agent's aiohttp engine: ``request()`` builds the object URL
(``addressing``), signs the GET with its ``Range`` (botocore's ``S3SigV4Auth``; in a thread, as
temporary credentials may refresh) and names the one host that may receive the signature.
``check_response`` refuses a body whose ETag is not the pinned one.

Settings: ``parameters.auth``/``profile`` (``auth``), ``parameters.region`` (or the URI's
``@region``, ``AWS_REGION``, the profile's region, else ``us-east-1``; the bucket's own region
header wins on AWS), ``parameters.endpoint`` (untrusted: see ``addressing``), the admin's
``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import http
import logging
import os
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import botocore
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.exceptions
import yarl

from model_agent import errors, uris
from model_agent.egress import clients, policy
from model_agent.storage import base
from model_agent.storage.s3 import addressing, auth, digests

__all__ = ["S3Backend", "map_error"]

log = logging.getLogger("model_agent.storage.s3")
logging.getLogger("botocore").setLevel(logging.WARNING)

_PAGE_SIZE = 1000
_API_ATTEMPTS = 3
_HEAD_CONCURRENCY = 8
_MAX_PAGES = 100_000


@dataclasses.dataclass(frozen=True)
class _Listed:
    key: str
    size: int
    etag: str


def _etag(text: str | None) -> str:
    return (text or "").strip().removeprefix("W/").strip('"')


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "")
    except ValueError:
        return str(status)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first agent error in a task group's failure (else its first exception)."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    return next((e for e in leaves if isinstance(e, errors.AgentError)), leaves[0])


def map_error(exc: Exception, *, what: str, mode: str) -> errors.AgentError:
    """One agent error per botocore failure: 404, 401/403, 429/503 SlowDown, 5xx, network."""
    if isinstance(exc, botocore.exceptions.ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 0)
        code = str(exc.response.get("Error", {}).get("Code") or status)
        if code == str(status):  # HEAD errors have no body: name the status instead
            code = _phrase(status)
        wait = base.retry_after_seconds(dict(meta.get("HTTPHeaders") or {}).get("retry-after"))
        if status == 404 and code == "NoSuchBucket":
            return errors.NotFoundError(f"{what}: bucket not found (404 NoSuchBucket)")
        if status == 404:
            return errors.NotFoundError(f"{what}: not found (404 {code})")
        if status in (401, 403):
            return errors.AuthError(
                f"{what}: S3 denied access ({status} {code}) with {mode}; check the bucket "
                "policy and the credentials (parameters.auth, the AWS credential chain)"
            )
        if status == 429 or code in ("SlowDown", "Throttling", "TooManyRequests"):
            return errors.RateLimitedError(f"{what}: throttled ({status} {code})", retry_after=wait)
        if status >= 500 or status == 0:
            return errors.ServerError(f"{what}: S3 server error {status} {code}", retry_after=wait)
        if status == 301:
            return errors.ConfigError(
                f"{what}: the bucket is in another region (301 {code}); set the URI's @region "
                "or parameters.region"
            )
        return errors.PermanentError(f"{what}: S3 answered {status} {code}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return errors.AuthError(f"{what}: no AWS credentials found")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return errors.InvalidSpecError(f"{what}: {exc}")
    if isinstance(exc, botocore.exceptions.BotoCoreError | OSError | TimeoutError):
        return errors.NetworkError(f"{what}: cannot reach S3 ({type(exc).__name__})")
    raise exc


def client_config(*, signed: bool, proxy: str | None = None) -> botocore.config.Config:
    """The one place S3 clients are configured (timeouts, retries off: the agent retries; the
    egress policy's metadata proxy)."""
    return botocore.config.Config(
        proxies={"http": proxy, "https": proxy} if proxy else None,
        signature_version="s3v4" if signed else botocore.UNSIGNED,
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


class S3Backend:
    """``base.Backend`` for one bucket/prefix."""

    def __init__(
        self,
        uri: str,
        *,
        parameters: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        credential_hosts: tuple[str, ...] = (),
        egress: policy.Egress | None = None,
        credential_factory: auth.CredentialFactory | None = None,
        page_size: int = _PAGE_SIZE,
    ) -> None:
        parsed = uris.parse_s3(uri)
        params = dict(parameters or {})
        env = os.environ if environ is None else environ
        self.uri = uri
        self.bucket = parsed.bucket
        self.folder = addressing.folder(parsed.prefix)
        self._auth = auth.auth_request(params)
        self._endpoint = addressing.choose_endpoint(
            params.get("endpoint"), env, hosts=credential_hosts
        )
        self._region = parsed.region or params.get("region") or None
        self._env_region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        self._factory = credential_factory or auth.default_factory
        self._page_size = page_size
        self._credentials: botocore.credentials.Credentials | None = None
        self._client: Any = None
        self._signing_region = "us-east-1"
        self._data_endpoint = ""
        self._versions: dict[str, str] = {}
        self.sources: dict[str, str] = {}  # file path -> checksum source (for the report)
        self._egress = egress or policy.Egress()

    def __repr__(self) -> str:
        return f"S3Backend({self.uri!r}, auth={self._auth.mode!r})"

    @property
    def mode(self) -> str:
        """How requests are authenticated, for messages (never a key)."""
        if self._credentials is None:
            return "no credentials (unsigned requests)"
        return f"AWS credentials from {self._credentials.method}"

    # -- pinning (botocore, in threads) ---------------------------------------------------------
    def _connect(self) -> None:
        credentials = None
        if self._auth.mode != "anonymous":
            if self._endpoint.trusted:
                credentials = self._factory(self._auth)
                if credentials is None:
                    raise errors.AuthError(
                        f"{self.uri}: no AWS credentials found (environment, web identity, "
                        "shared files, container or instance metadata); set parameters.auth: "
                        "anonymous for a public bucket"
                    )
            else:
                log.warning(
                    "%s: parameters.endpoint %s is not the admin's S3 endpoint; requests to it "
                    "go unsigned",
                    self.uri,
                    self._endpoint.url,
                )
        session = auth.session(self._auth)
        region = (
            self._region or self._env_region or session.get_config_variable("region") or "us-east-1"
        )
        keys: dict[str, Any] = {}
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            keys = {
                "aws_access_key_id": frozen.access_key,
                "aws_secret_access_key": frozen.secret_key,
                "aws_session_token": frozen.token,
            }
        clients.ssl_context(self._egress.ca)  # an unreadable bundle fails here, naming it
        where = self._endpoint.url or f"https://s3.{region}.amazonaws.com"
        ca = self._egress.ca
        try:
            client = session.create_client(
                "s3",
                region_name=region,
                endpoint_url=self._endpoint.url,
                config=client_config(
                    signed=credentials is not None, proxy=self._egress.metadata_proxy(where)
                ),
                verify=(ca.cafile or ca.capath) if ca.configured else None,
                **keys,
            )
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise errors.ConfigError(
                f"{self.uri}: the S3 client cannot be built ({type(exc).__name__}: {exc})"
            ) from None
        self._credentials, self._client = credentials, client
        self._signing_region = region
        self._data_endpoint = str(client.meta.endpoint_url).rstrip("/")

    def _bucket_region(self, response: Mapping[str, Any]) -> None:
        """On AWS, address and sign data requests in the bucket's own region."""
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = headers.get("x-amz-bucket-region")
        if region and self._endpoint.url is None and region != self._signing_region:
            self._signing_region = region
            self._data_endpoint = f"https://s3.{region}.amazonaws.com"

    async def _call(self, what: str, func: Any, **kwargs: Any) -> Any:
        """Run one botocore call in a thread, retrying retryable failures a few times."""
        for attempt in range(1, _API_ATTEMPTS + 1):
            try:
                return await asyncio.to_thread(func, **kwargs)
            except Exception as exc:  # mapped; unknown errors re-raise from map_error
                error = map_error(exc, what=what, mode=self.mode)
                if not error.retryable or attempt == _API_ATTEMPTS:
                    raise error from None
                assert isinstance(error, errors.RetryableError)
                await asyncio.sleep(error.retry_after or random.uniform(0.1, 0.4 * 2**attempt))
        raise AssertionError("unreachable")

    async def _list(self) -> list[_Listed]:
        where = f"s3://{self.bucket}/{self.folder}"
        listed: list[_Listed] = []
        token: str | None = None
        for page in range(_MAX_PAGES):
            kwargs: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": self.folder,
                "MaxKeys": self._page_size,
            }
            if token:
                kwargs["ContinuationToken"] = token
            response = await self._call(f"listing {where}", self._client.list_objects_v2, **kwargs)
            if page == 0:
                self._bucket_region(response)
            for item in response.get("Contents") or ():
                key = str(item["Key"])
                if not key.startswith(self.folder) or key.endswith("/"):
                    continue  # folder markers
                listed.append(_Listed(key, int(item.get("Size") or 0), _etag(item.get("ETag"))))
            following = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not following:
                return listed
            if following == token:
                raise errors.ServerError(f"listing {where}: the page cursor did not advance")
            token = following
        raise errors.ServerError(f"listing {where}: more than {_MAX_PAGES} pages")

    async def _head(self, key: str) -> Mapping[str, str]:
        response = await self._call(
            f"reading the metadata of s3://{self.bucket}/{key}",
            self._client.head_object,
            Bucket=self.bucket,
            Key=key,
            ChecksumMode="ENABLED",
        )
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return {str(k).lower(): str(v) for k, v in headers.items()}

    async def _checked_head(self, item: _Listed, slots: asyncio.Semaphore) -> Mapping[str, str]:
        async with slots:
            headers = await self._head(item.key)
        if _etag(headers.get("etag")) != item.etag:
            raise errors.ServerError(
                f"s3://{self.bucket}/{item.key} changed while the prefix was being pinned"
            )
        return headers

    async def _single_object(self) -> tuple[_Listed, Mapping[str, str]] | None:
        """The URI's prefix named one object rather than a folder: that object, or None."""
        key = self.folder.rstrip("/")
        if not key:
            return None
        try:
            headers = await self._head(key)
        except errors.NotFoundError:
            return None
        size = int(headers.get("content-length", "0"))
        return _Listed(key, size, _etag(headers.get("etag"))), headers

    async def pin(self) -> base.Plan:
        await asyncio.to_thread(self._connect)
        root = self.folder
        listed = await self._list()
        heads: dict[str, Mapping[str, str]] = {}
        if not listed:
            single = await self._single_object()
            if single is None:
                raise errors.NotFoundError(
                    f"no objects under {self.folder!r} in bucket {self.bucket!r} ({self.uri})"
                )
            only, heads[only.key] = single
            listed, root = [only], only.key[: only.key.rfind("/") + 1]
        slots = asyncio.Semaphore(_HEAD_CONCURRENCY)
        tasks: dict[str, asyncio.Task[Mapping[str, str]]] = {}
        try:
            async with asyncio.TaskGroup() as group:
                for item in listed:
                    if item.key not in heads:
                        tasks[item.key] = group.create_task(self._checked_head(item, slots))
        except BaseExceptionGroup as failure:
            raise _first_error(failure) from None
        heads.update({key: task.result() for key, task in tasks.items()})
        files = []
        digest = hashlib.sha256()
        for item in sorted(listed, key=lambda i: i.key):
            headers = heads[item.key]
            version = headers.get("x-amz-version-id", "")
            if version and version != "null":
                self._versions[item.key] = version
            promised = digests.promise(item.size, headers)
            path = item.key[len(root) :]
            self.sources[path] = promised.source
            if promised.source == "size-only":
                log.warning(
                    "%s: %s; only its size will be verified (size_only)",
                    item.key,
                    promised.note,
                    extra={"file": path},
                )
            digest.update(f"{item.key}\t{item.size}\t{item.etag}\t{version}\n".encode())
            files.append(
                base.RemoteFile(
                    path=path,
                    size=item.size,
                    identity=f"etag:{item.etag}",
                    key=item.key,
                    digests=promised.digests,
                )
            )
        return base.Plan(uri=self.uri, revision=digest.hexdigest(), files=tuple(files))

    # -- data path (aiohttp engine) -------------------------------------------------------------
    def object_url(self, key: str) -> str:
        """The object's URL in the form aiohttp (yarl) sends it, which is the form signed."""
        if not self._data_endpoint:
            raise RuntimeError("pin() first")
        url = addressing.object_url(
            self._data_endpoint, self.bucket, key, version_id=self._versions.get(key)
        )
        return str(yarl.URL(url, encoded=True))

    def _sign(self, url: str, range_value: str) -> dict[str, str]:
        assert self._credentials is not None
        request = botocore.awsrequest.AWSRequest(
            method="GET", url=url, headers={"Range": range_value}
        )
        frozen = self._credentials.get_frozen_credentials()
        botocore.auth.S3SigV4Auth(frozen, "s3", self._signing_region).add_auth(request)
        return {str(k): str(v) for k, v in request.headers.items()}

    async def request(self, file: base.RemoteFile, *, start: int, end: int) -> base.HTTPRequest:
        url = self.object_url(file.key)
        range_value = base.range_header(start, end)
        if self._credentials is None:
            return base.HTTPRequest(url=url, headers={"Range": range_value})
        headers = await asyncio.to_thread(self._sign, url, range_value)
        host = urlsplit(url).netloc.lower()
        return base.HTTPRequest(url=url, headers=headers, auth_hosts=frozenset({host}))

    def check_response(self, file: base.RemoteFile, headers: Mapping[str, str]) -> None:
        etag = _etag(headers.get("ETag"))
        pinned = file.identity.removeprefix("etag:")
        if etag and etag != pinned:
            raise errors.ServerError(
                f"{file.key} changed since it was pinned (ETag {etag}, pinned {pinned})"
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)
