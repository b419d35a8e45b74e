"""GitHub releases backend: one release's assets, pinned by asset id, fetched by ranged GETs.

``pin()`` reads the release (``releases/latest`` or ``releases/tags/{tag}``) and every page of
its assets (``Link: rel="next"``) with aiohttp: name, size, id, ``digest``. The revision is a
sha256 of the release id and the sorted (name, size, asset id, digest) list. An asset that is
replaced gets a new id, so the pinned ids can never serve other bytes (a gone id answers 404).

``request()`` asks the asset's API URL for ``application/octet-stream`` with the ``Range``;
GitHub redirects to its CDN, and the engine follows without the ``Authorization`` header
(``auth_hosts`` is the API host only).

Token: ``storage.key``'s Secret, else ``GITHUB_TOKEN`` (to the admin's endpoint only, see
``releases``). A 404 without a token says the repository may be private. Rate limits
(``403``/``429`` with ``x-ratelimit-remaining: 0`` or ``Retry-After``) are retryable waits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from model_agent import errors, uris
from model_agent.egress import clients, policy
from model_agent.storage import api_session, base
from model_agent.storage.github import releases

__all__ = ["GitHubBackend", "status_error"]

log = logging.getLogger("model_agent.storage.github")

_PER_PAGE = 100
_API_ATTEMPTS = 3
_MAX_PAGES = 1000
_API_VERSION = "2022-11-28"


def status_error(
    status: int, headers: Mapping[str, str], what: str, *, has_token: bool
) -> errors.AgentError:
    """The agent error for a failed GitHub API answer."""
    wait = base.retry_after_seconds(headers.get("Retry-After"))
    if headers.get("x-ratelimit-remaining") == "0" and status in (403, 429):
        reset = headers.get("x-ratelimit-reset", "")
        if wait is None and reset.isdigit():
            wait = max(0.0, int(reset) - time.time())
        return errors.RateLimitedError(f"{what}: GitHub rate limit reached", retry_after=wait)
    if status == 429 or (status == 403 and wait is not None):
        return errors.RateLimitedError(f"{what}: GitHub asked to slow down", retry_after=wait)
    if status == 401:
        return errors.AuthError(f"{what}: GitHub rejected the token (401 Bad credentials)")
    if status == 403:
        return errors.AuthError(f"{what}: the token lacks access (403)")
    if status == 404 and not has_token:
        return errors.AuthError(
            f"{what}: not found (404) without a token: the repository or release does not "
            "exist, or it is private (set GITHUB_TOKEN or storage.key)"
        )
    if status == 404:
        return errors.NotFoundError(f"{what}: not found (404)")
    if status >= 500:
        return errors.ServerError(f"{what}: GitHub server error {status}", retry_after=wait)
    return errors.PermanentError(f"{what}: GitHub answered {status}")


class GitHubBackend:
    """``base.Backend`` for one release of one repository."""

    def __init__(
        self,
        uri: str,
        *,
        parameters: Mapping[str, str] | None = None,
        token: str | None = None,
        environ: Mapping[str, str] | None = None,
        credential_hosts: tuple[str, ...] = (),
        egress: policy.Egress | None = None,
        per_page: int = _PER_PAGE,
    ) -> None:
        parsed = uris.parse_github(uri)
        params = dict(parameters or {})
        env = os.environ if environ is None else environ
        self.uri = uri
        self.owner, self.repository, self.tag = parsed.owner, parsed.repository, parsed.tag
        self._endpoint = releases.choose_endpoint(
            params.get("endpoint"), env, hosts=credential_hosts
        )
        node_token = env.get("GITHUB_TOKEN") or None
        if token:
            self._token: str | None = token
        elif node_token and self._endpoint.trusted:
            self._token = node_token
        else:
            self._token = None
            if node_token:
                log.warning(
                    "%s: parameters.endpoint %s is not the admin's GitHub API; GITHUB_TOKEN "
                    "is not sent to it",
                    uri,
                    self._endpoint.url,
                )
        self._per_page = per_page
        self._host = urlsplit(self._endpoint.url).netloc.lower()
        self._session: aiohttp.ClientSession | None = None
        self._asset_ids: dict[str, int] = {}
        self.sources: dict[str, str] = {}
        self._egress = egress or policy.Egress()

    def _route(self, url: str) -> dict[str, Any]:
        """The proxy and SSL settings of a metadata request to ``url`` (egress policy)."""
        return {
            "proxy": self._egress.metadata_proxy(url),
            "ssl": clients.ssl_context(self._egress.ca),
        }

    def __repr__(self) -> str:
        return f"GitHubBackend({self.uri!r})"

    def _headers(self, accept: str = "application/vnd.github+json") -> dict[str, str]:
        headers = {"Accept": accept, "X-GitHub-Api-Version": _API_VERSION}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def _get_json(self, url: str, what: str) -> tuple[Any, str | None]:
        """The JSON body and the ``Link`` header of a GET, retrying retryable failures."""
        assert self._session is not None
        for attempt in range(1, _API_ATTEMPTS + 1):
            try:
                async with self._session.get(
                    url, headers=self._headers(), **self._route(url)
                ) as response:
                    if response.status == 200:
                        return await response.json(content_type=None), response.headers.get("Link")
                    error = status_error(
                        response.status, response.headers, what, has_token=bool(self._token)
                    )
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                error = errors.NetworkError(f"{what}: cannot reach GitHub ({type(exc).__name__})")
            if not error.retryable or attempt == _API_ATTEMPTS:
                raise error
            assert isinstance(error, errors.RetryableError)
            await asyncio.sleep(error.retry_after or random.uniform(0.1, 0.4 * 2**attempt))
        raise AssertionError("unreachable")

    async def pin(self) -> base.Plan:
        self._session = api_session.new_session()
        where = f"github://{self.owner}/{self.repository}@{self.tag}"
        url = releases.release_url(self._endpoint.url, self.owner, self.repository, self.tag)
        release, _ = await self._get_json(url, f"reading release {where}")
        if not isinstance(release, dict) or not isinstance(release.get("id"), int):
            raise errors.ServerError(f"reading release {where}: unexpected answer")
        release_id = int(release["id"])
        assets: list[Mapping[str, Any]] = []
        next_url: str | None = releases.assets_url(
            self._endpoint.url, self.owner, self.repository, release_id, per_page=self._per_page
        )
        for _ in range(_MAX_PAGES):
            if next_url is None:
                break
            page, link = await self._get_json(next_url, f"listing the assets of {where}")
            if not isinstance(page, list):
                raise errors.ServerError(f"listing the assets of {where}: unexpected answer")
            assets.extend(a for a in page if isinstance(a, dict))
            following = releases.next_link(link)
            if following == next_url:
                raise errors.ServerError(f"listing the assets of {where}: the page did not advance")
            next_url = following
        if not assets:
            raise errors.NotFoundError(f"release {where} has no assets")
        files = []
        digest = hashlib.sha256(f"release {release_id}\n".encode())
        for asset in sorted(assets, key=lambda a: str(a.get("name"))):
            name, size, asset_id = str(asset["name"]), int(asset["size"]), int(asset["id"])
            promised = releases.asset_digest(asset)
            self._asset_ids[name] = asset_id
            self.sources[name] = "digest" if promised else "size-only"
            if promised is None:
                log.warning(
                    "%s: GitHub gave no digest for asset %s; only its size will be verified "
                    "(size_only)",
                    where,
                    name,
                    extra={"file": name},
                )
            digest.update(f"{name}\t{size}\t{asset_id}\t{promised}\n".encode())
            files.append(
                base.RemoteFile(
                    path=name,
                    size=size,
                    identity=f"asset:{asset_id}",
                    key=name,
                    digests=(promised,) if promised else (),
                )
            )
        return base.Plan(uri=self.uri, revision=digest.hexdigest(), files=tuple(files))

    async def request(self, file: base.RemoteFile, *, start: int, end: int) -> base.HTTPRequest:
        url = releases.asset_url(
            self._endpoint.url, self.owner, self.repository, self._asset_ids[file.key]
        )
        headers = {
            **self._headers("application/octet-stream"),
            "Range": base.range_header(start, end),
        }
        return base.HTTPRequest(url=url, headers=headers, auth_hosts=frozenset({self._host}))

    def check_response(self, file: base.RemoteFile, headers: Mapping[str, str]) -> None:
        """Nothing to compare: the pinned asset id is immutable (a replaced asset gets a new
        id, and the old one answers 404)."""

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
