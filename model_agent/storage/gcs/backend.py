"""GCS backend: a bucket prefix pinned to a listing (by generation), fetched by ranged GETs.

``pin()`` resolves the credentials (``auth``, in a thread) and reads every page of the JSON
API's object listing (name, size, md5Hash, crc32c, generation) with aiohttp; ``digests``
picks the checksum. The revision is a sha256 of the sorted (name, size, generation) listing.
Every data request names the pinned ``generation``, so a replaced object can never be mixed
in (GCS answers 404 for a generation that is gone); a response whose ``x-goog-generation``
differs from the pinned one is refused as well.

The data path is the agent's engine: ``request()`` returns the media URL with the ``Range``
and, when authenticated, ``Authorization: Bearer`` for the endpoint's host only.

Settings: ``parameters.auth`` (``auth``), ``parameters.endpoint`` (untrusted, see
``addressing``), ``STORAGE_EMULATOR_HOST``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import google.auth.credentials

from model_agent import errors, uris
from model_agent.egress import clients, policy
from model_agent.storage import api_session, base
from model_agent.storage.gcs import addressing, auth, digests

__all__ = ["GCSBackend", "status_error"]

log = logging.getLogger("model_agent.storage.gcs")

_PAGE_SIZE = 1000
_API_ATTEMPTS = 3
_MAX_PAGES = 100_000


def status_error(
    status: int, headers: Mapping[str, str], what: str, mode: str
) -> errors.AgentError:
    """The agent error for a failed JSON API answer."""
    wait = base.retry_after_seconds(headers.get("Retry-After"))
    if status == 404:
        return errors.NotFoundError(f"{what}: not found (404)")
    if status in (401, 403):
        return errors.AuthError(
            f"{what}: GCS denied access ({status}) with {mode}; check the bucket's IAM and the "
            "credentials (parameters.auth, Application Default Credentials)"
        )
    if status == 429:
        return errors.RateLimitedError(f"{what}: rate limited (429)", retry_after=wait)
    if status >= 500:
        return errors.ServerError(f"{what}: GCS server error {status}", retry_after=wait)
    return errors.PermanentError(f"{what}: GCS answered {status}")


class GCSBackend:
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
        parsed = uris.parse_gcs(uri)
        params = dict(parameters or {})
        env = os.environ if environ is None else environ
        self.uri = uri
        self.bucket = parsed.bucket
        self.folder = addressing.folder(parsed.object)
        self._auth = auth.auth_request(params)
        self._endpoint = addressing.choose_endpoint(
            params.get("endpoint"), env, hosts=credential_hosts
        )
        self._factory = credential_factory or auth.default_factory
        self._page_size = page_size
        self._credentials: google.auth.credentials.Credentials | None = None
        self._session: aiohttp.ClientSession | None = None
        self._host = urlsplit(self._endpoint.url).netloc.lower()
        self._generations: dict[str, str] = {}
        self.sources: dict[str, str] = {}
        self._egress = egress or policy.Egress()

    def _route(self, url: str) -> dict[str, Any]:
        """The proxy and SSL settings of a metadata request to ``url`` (egress policy)."""
        return {
            "proxy": self._egress.metadata_proxy(url),
            "ssl": clients.ssl_context(self._egress.ca),
        }

    def __repr__(self) -> str:
        return f"GCSBackend({self.uri!r}, auth={self._auth.mode!r})"

    @property
    def mode(self) -> str:
        return "no credentials" if self._credentials is None else "Application Default Credentials"

    async def _headers(self) -> dict[str, str]:
        if self._credentials is None:
            return {}
        token = await asyncio.to_thread(auth.token, self._credentials)
        return {"Authorization": f"Bearer {token}"}

    def _connect(self) -> None:
        if self._auth.mode == "anonymous":
            return
        if not self._endpoint.trusted:
            log.warning(
                "%s: parameters.endpoint %s is not the admin's GCS endpoint; requests to it "
                "carry no token",
                self.uri,
                self._endpoint.url,
            )
            return
        self._credentials = self._factory(self._auth)

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        assert self._session is not None
        for attempt in range(1, _API_ATTEMPTS + 1):
            try:
                headers = await self._headers()
                async with self._session.get(url, headers=headers, **self._route(url)) as response:
                    if response.status == 200:
                        body = await response.json(content_type=None)
                        if not isinstance(body, dict):
                            raise errors.ServerError(f"{what}: the answer is not a JSON object")
                        return body
                    error = status_error(response.status, response.headers, what, self.mode)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                error = errors.NetworkError(f"{what}: cannot reach GCS ({type(exc).__name__})")
            if not error.retryable or attempt == _API_ATTEMPTS:
                raise error
            assert isinstance(error, errors.RetryableError)
            await asyncio.sleep(error.retry_after or random.uniform(0.1, 0.4 * 2**attempt))
        raise AssertionError("unreachable")

    async def _list(self) -> list[Mapping[str, Any]]:
        where = f"gs://{self.bucket}/{self.folder}"
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        for _ in range(_MAX_PAGES):
            url = addressing.list_url(
                self._endpoint.url,
                self.bucket,
                prefix=self.folder,
                page_size=self._page_size,
                token=token,
            )
            page = await self._get_json(url, f"listing {where}")
            for item in page.get("items") or ():
                name = str(item.get("name", ""))
                if name.startswith(self.folder) and name and not name.endswith("/"):
                    items.append(item)
            following = page.get("nextPageToken")
            if not following:
                return items
            if following == token:
                raise errors.ServerError(f"listing {where}: the page cursor did not advance")
            token = str(following)
        raise errors.ServerError(f"listing {where}: more than {_MAX_PAGES} pages")

    async def _single_object(self) -> Mapping[str, Any] | None:
        name = self.folder.rstrip("/")
        if not name:
            return None
        url = addressing.object_url(self._endpoint.url, self.bucket, name)
        try:
            return await self._get_json(url, f"reading the metadata of gs://{self.bucket}/{name}")
        except errors.NotFoundError:
            return None

    async def pin(self) -> base.Plan:
        await asyncio.to_thread(self._connect)
        self._session = api_session.new_session()
        root = self.folder
        items = await self._list()
        if not items:
            single = await self._single_object()
            if single is None:
                raise errors.NotFoundError(
                    f"no objects under {self.folder!r} in bucket {self.bucket!r} ({self.uri}), "
                    "or the bucket does not exist"
                )
            items = [single]
            name = str(single["name"])
            root = name[: name.rfind("/") + 1]
        files = []
        digest = hashlib.sha256()
        for item in sorted(items, key=lambda i: str(i["name"])):
            name = str(item["name"])
            size = int(item.get("size") or 0)
            generation = str(item.get("generation") or "")
            if generation:
                self._generations[name] = generation
            promised = digests.promise(item)
            path = name[len(root) :]
            self.sources[path] = promised.source
            if promised.source == "size-only":
                log.warning(
                    "%s: %s; only its size will be verified (size_only)",
                    name,
                    promised.note,
                    extra={"file": path},
                )
            digest.update(f"{name}\t{size}\t{generation}\n".encode())
            files.append(
                base.RemoteFile(
                    path=path,
                    size=size,
                    identity=f"generation:{generation or item.get('etag', '')}",
                    key=name,
                    digests=promised.digests,
                )
            )
        return base.Plan(uri=self.uri, revision=digest.hexdigest(), files=tuple(files))

    async def request(self, file: base.RemoteFile, *, start: int, end: int) -> base.HTTPRequest:
        url = addressing.media_url(
            self._endpoint.url, self.bucket, file.key, generation=self._generations.get(file.key)
        )
        headers = {"Range": base.range_header(start, end), **(await self._headers())}
        hosts = frozenset({self._host}) if self._credentials is not None else frozenset()
        return base.HTTPRequest(url=url, headers=headers, auth_hosts=hosts)

    def check_response(self, file: base.RemoteFile, headers: Mapping[str, str]) -> None:
        generation = headers.get("x-goog-generation")
        pinned = self._generations.get(file.key)
        if generation and pinned and generation != pinned:
            raise errors.ServerError(
                f"{file.key} changed since it was pinned (generation {generation}, pinned {pinned})"
            )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
