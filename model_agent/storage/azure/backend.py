"""Azure Blob Storage backend: a container prefix pinned to a listing, fetched by ranged GETs.

``pin()`` reads every page of ``List Blobs`` (name, size, ETag, Content-MD5) with aiohttp. The
revision is a sha256 of the sorted (name, size, ETag) listing. ``check_response`` refuses a
body whose ETag is not the pinned one (the pull retries and pins again).

Credentials (``blobs`` says which may go where), strongest configured first: the account key
(every request signed with Shared Key, ``sharedkey``), a SAS (appended to every URL), workload
identity (a bearer token, ``auth``), else none (public containers). ``parameters.auth:
anonymous`` forces none.

Checksum: ``Content-MD5`` when the blob has one (Put Blob sets it; a block-list upload only
when the uploader set ``x-ms-blob-content-md5``), else the size only, with a WARNING.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import os
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from model_agent import errors, uris
from model_agent.egress import clients, policy
from model_agent.storage import api_session, base
from model_agent.storage.azure import auth, blobs, sharedkey

__all__ = ["AzureBackend", "status_error"]

log = logging.getLogger("model_agent.storage.azure")

_VERSION = "2021-08-06"
_PAGE_SIZE = 5000
_API_ATTEMPTS = 3
_MAX_PAGES = 100_000
_MODES = ("default", "anonymous")


def status_error(
    status: int, headers: Mapping[str, str], what: str, mode: str
) -> errors.AgentError:
    wait = base.retry_after_seconds(headers.get("Retry-After"))
    code = headers.get("x-ms-error-code") or str(status)
    if status in (401, 403):
        return errors.AuthError(
            f"{what}: Azure denied access ({status} {code}) with {mode}; check the credentials "
            "(connection string, account key, SAS, workload identity) and the container's access"
        )
    if status == 404 and mode == "no credentials" and code == "ResourceNotFound":
        return errors.AuthError(
            f"{what}: not found (404 ResourceNotFound) without credentials: the container does "
            "not exist, or it is private"
        )
    if status == 404:
        return errors.NotFoundError(f"{what}: not found (404 {code})")
    if status == 429:
        return errors.RateLimitedError(f"{what}: throttled (429 {code})", retry_after=wait)
    if status >= 500:
        return errors.ServerError(f"{what}: Azure server error {status} {code}", retry_after=wait)
    return errors.PermanentError(f"{what}: Azure answered {status} {code}")


class AzureBackend:
    """``base.Backend`` for one account/container/prefix."""

    def __init__(
        self,
        uri: str,
        *,
        parameters: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        credential_hosts: tuple[str, ...] = (),
        egress: policy.Egress | None = None,
        page_size: int = _PAGE_SIZE,
    ) -> None:
        parsed = uris.parse_azure(uri)
        params = dict(parameters or {})
        env = os.environ if environ is None else environ
        self.uri = uri
        self.container = parsed.container
        self.folder = blobs.folder(parsed.blob_path)
        mode = (params.get("auth") or "default").strip().lower()
        if mode not in _MODES:
            raise errors.InvalidSpecError(
                f"parameters.auth {params.get('auth')!r} is not an Azure auth mode; use one of "
                f"{', '.join(_MODES)}"
            )
        self._account = blobs.resolve_account(
            parsed.account, params.get("endpoint"), env, hosts=credential_hosts
        )
        identity = auth.from_environ(env) if self._account.trusted else None
        if mode == "anonymous":
            self._account = blobs.Account(self._account.name, self._account.endpoint, trusted=False)
            identity = None
        self._identity = identity
        self._page_size = page_size
        self._host = urlsplit(self._account.endpoint).netloc.lower()
        self._session: aiohttp.ClientSession | None = None
        self.sources: dict[str, str] = {}
        self._egress = egress or policy.Egress()

    def _route(self, url: str) -> dict[str, Any]:
        """The proxy and SSL settings of a metadata request to ``url`` (egress policy)."""
        return {
            "proxy": self._egress.metadata_proxy(url),
            "ssl": clients.ssl_context(self._egress.ca),
        }

    def __repr__(self) -> str:
        return f"AzureBackend({self.uri!r}, {self.mode})"

    @property
    def mode(self) -> str:
        if self._account.key:
            return "the account key"
        if self._account.sas:
            return "a SAS"
        if self._identity is not None:
            return "workload identity"
        return "no credentials"

    def _url(self, url: str) -> str:
        if self._account.sas and not self._account.key:
            return f"{url}{'&' if '?' in url else '?'}{self._account.sas}"
        return url

    async def _headers(self, url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {
            "x-ms-version": _VERSION,
            "x-ms-date": email.utils.formatdate(usegmt=True),
            **(extra or {}),
        }
        if self._account.key:
            headers["Authorization"] = sharedkey.authorization(
                "GET", url, headers, account=self._account.name, key=self._account.key
            )
        elif self._identity is not None and not self._account.sas:
            assert self._session is not None
            token = await self._identity.token(self._session, route=self._route)
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _get(self, url: str, what: str) -> bytes:
        assert self._session is not None
        url = self._url(url)
        for attempt in range(1, _API_ATTEMPTS + 1):
            try:
                headers = await self._headers(url)
                async with self._session.get(url, headers=headers, **self._route(url)) as response:
                    if response.status == 200:
                        return await response.read()
                    error = status_error(response.status, response.headers, what, self.mode)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = errors.NetworkError(f"{what}: cannot reach Azure ({type(exc).__name__})")
            if not error.retryable or attempt == _API_ATTEMPTS:
                raise error
            assert isinstance(error, errors.RetryableError)
            await asyncio.sleep(error.retry_after or random.uniform(0.1, 0.4 * 2**attempt))
        raise AssertionError("unreachable")

    async def _list(self, prefix: str) -> list[blobs.Listed]:
        where = f"az://{self._account.name}/{self.container}/{prefix}"
        found: list[blobs.Listed] = []
        marker: str | None = None
        for _ in range(_MAX_PAGES):
            url = blobs.list_url(
                self._account.endpoint,
                self.container,
                prefix=prefix,
                marker=marker,
                size=self._page_size,
            )
            body = await self._get(url, f"listing {where}")
            try:
                page = blobs.parse_listing(body)
            except ValueError as exc:
                raise errors.ServerError(f"listing {where}: {exc}") from None
            found.extend(b for b in page.blobs if b.name.startswith(prefix))
            if not page.next_marker:
                return found
            if page.next_marker == marker:
                raise errors.ServerError(f"listing {where}: the page marker did not advance")
            marker = page.next_marker
        raise errors.ServerError(f"listing {where}: more than {_MAX_PAGES} pages")

    async def pin(self) -> base.Plan:
        self._session = api_session.new_session()
        root = self.folder
        listed = [b for b in await self._list(self.folder) if not b.name.endswith("/")]
        if not listed and self.folder:
            name = self.folder.rstrip("/")
            listed = [b for b in await self._list(name) if b.name == name]
            root = name[: name.rfind("/") + 1]
        if not listed:
            raise errors.NotFoundError(
                f"no blobs under {self.folder!r} in container {self.container!r} ({self.uri})"
            )
        files = []
        digest = hashlib.sha256()
        for item in sorted(listed, key=lambda b: b.name):
            promised = blobs.content_md5(item.content_md5)
            path = item.name[len(root) :]
            self.sources[path] = "Content-MD5" if promised else "size-only"
            if promised is None:
                log.warning(
                    "%s: the blob has no Content-MD5; only its size will be verified (size_only)",
                    item.name,
                    extra={"file": path},
                )
            digest.update(f"{item.name}\t{item.size}\t{item.etag}\n".encode())
            files.append(
                base.RemoteFile(
                    path=path,
                    size=item.size,
                    identity=f"etag:{item.etag}",
                    key=item.name,
                    digests=(promised,) if promised else (),
                )
            )
        return base.Plan(uri=self.uri, revision=digest.hexdigest(), files=tuple(files))

    async def request(self, file: base.RemoteFile, *, start: int, end: int) -> base.HTTPRequest:
        url = self._url(blobs.blob_url(self._account.endpoint, self.container, file.key))
        headers = await self._headers(url, {"Range": base.range_header(start, end)})
        return base.HTTPRequest(url=url, headers=headers, auth_hosts=frozenset({self._host}))

    def check_response(self, file: base.RemoteFile, headers: Mapping[str, str]) -> None:
        etag = (headers.get("ETag") or "").strip('"')
        pinned = file.identity.removeprefix("etag:")
        if etag and etag != pinned:
            raise errors.ServerError(
                f"{file.key} changed since it was pinned (ETag {etag}, pinned {pinned})"
            )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
