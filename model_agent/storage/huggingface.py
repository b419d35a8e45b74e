"""Hugging Face Hub backend: ``hf://org/repo[@revision]`` pinned to a commit, fetched by sha.

``pin()`` resolves the revision to a commit sha once (``HfApi.model_info``) and lists the tree
at that sha (``HfApi.list_repo_tree``, recursive) for sizes, LFS sha256 and git blob sha1. Both
SDK calls are synchronous and run in a thread, against the endpoint given explicitly (default
``HF_ENDPOINT``). Data requests go to ``/{repo}/resolve/{sha}/{path}``: a moved branch cannot
mix two commits. URLs and headers (user agent, token rules) come from the library's own
``hf_hub_url`` and ``build_hf_headers``, as its downloads do. The token is sent to the hub
host only: the engine drops it on the redirect to the CDN. Errors: 401, 403, 404 (repo /
revision) and gated repos each raise their own message; 429 and 5xx are retryable.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import huggingface_hub
from huggingface_hub import HfApi, hf_api
from huggingface_hub import errors as hf_errors
from huggingface_hub import utils as hf_utils

from model_agent import checksums, errors, uris
from model_agent.egress import clients, hub, policy
from model_agent.storage import base

__all__ = ["GatedRepoError", "HuggingFaceBackend"]

# The SDK's HTTP client logs every request URL at INFO; keep the agent's log to its own lines.
for _noisy in ("httpx", "httpx2", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

_API_TIMEOUT = 30.0
_PIN_ATTEMPTS = 3
#: Connection-level failures of the SDK's HTTP client (httpx in 1.x+, requests before).
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    *(c for c in (getattr(hf_errors, "HTTPError", None),) if isinstance(c, type)),
    OSError,
    TimeoutError,
)


class GatedRepoError(errors.AuthError):
    """The repo is gated and the token (if any) has not been granted access."""

    reason = "GatedRepo"


def _status(exc: hf_errors.HfHubHTTPError) -> tuple[int, Mapping[str, str]]:
    response: Any = getattr(exc, "response", None)
    if response is None:
        return 0, {}
    return int(getattr(response, "status_code", 0) or 0), dict(response.headers or {})


def map_error(
    exc: Exception,
    *,
    uri: str,
    revision: str,
    has_token: bool,
    egress: policy.Egress | None = None,
    endpoint: str = "",
) -> errors.AgentError:
    """One agent error per Hub failure, each with its own clear message (no token in it)."""
    if egress is not None:
        explained = clients.transport_error(
            exc,
            host=urlsplit(endpoint).netloc or uri,
            proxy=egress.metadata_proxy(endpoint),
            ca=egress.ca,
        )
        if explained is not None:
            return explained
    if isinstance(exc, hf_errors.GatedRepoError):
        return GatedRepoError(
            f"{uri} is a gated repository: accept its terms on the Hub with the account whose "
            "token is used, then pass that token (--param token, storage.key or HF_TOKEN)"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return errors.NotFoundError(f"revision {revision!r} not found in {uri}")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status, headers = _status(exc)
        if status == 401:
            hint = "the token was rejected" if has_token else "no token was given"
            return errors.AuthError(
                f"401 Unauthorized for {uri}: the repository is private or does not exist and "
                f"{hint} (set --param token, storage.key or HF_TOKEN)"
            )
        if status == 403:
            return errors.AuthError(f"403 Forbidden for {uri}: the token has no access")
        if status == 404 or isinstance(exc, hf_errors.RepositoryNotFoundError):
            return errors.NotFoundError(f"repository {uri} not found (404)")
        if status == 429:
            wait = base.retry_after_seconds(headers.get("Retry-After"))
            return errors.RateLimitedError(
                f"rate limited (429) by the Hub for {uri}", retry_after=wait
            )
        if status >= 500:
            return errors.ServerError(f"Hub server error {status} for {uri}")
        return errors.PermanentError(f"Hub answered {status} for {uri}")
    if isinstance(exc, _TRANSPORT_ERRORS):
        return errors.NetworkError(f"cannot reach the Hub for {uri}: {type(exc).__name__}")
    raise exc


class HuggingFaceBackend:
    """``base.Backend`` for one Hub repository."""

    def __init__(
        self,
        uri: str,
        *,
        endpoint: str,
        token: str | None = None,
        egress: policy.Egress | None = None,
    ) -> None:
        parsed = uris.parse_hf(uri)
        self.uri = uri
        self.repo_id = parsed.repo_id
        self.revision = parsed.revision
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self._egress = egress or policy.Egress()
        self._host = urlsplit(self.endpoint).netloc.lower()
        # token=False: never the library's own fallback to HF_TOKEN or a cached login; the
        # agent decides which token (if any) is used.
        self._headers = hf_utils.build_hf_headers(token=token or False, library_name="model-agent")
        self.commit: str | None = None

    def __repr__(self) -> str:  # never show the token
        return f"HuggingFaceBackend({self.uri!r}, endpoint={self.endpoint!r})"

    def _list(self) -> tuple[str, list[hf_api.RepoFile]]:
        hub.install(self._egress)
        api = HfApi(endpoint=self.endpoint, token=self._token or False, library_name="model-agent")
        info = api.model_info(self.repo_id, revision=self.revision, timeout=_API_TIMEOUT)
        sha = info.sha
        if not sha or len(sha) != 40:
            raise errors.ServerError(f"the Hub gave no commit sha for {self.uri}")
        entries = api.list_repo_tree(self.repo_id, revision=sha, recursive=True)
        return sha, [e for e in entries if isinstance(e, hf_api.RepoFile)]

    async def pin(self) -> base.Plan:
        for attempt in range(1, _PIN_ATTEMPTS + 1):
            try:
                sha, entries = await asyncio.to_thread(self._list)
                break
            except Exception as exc:  # mapped below; unknown errors re-raise
                error = map_error(
                    exc,
                    uri=self.uri,
                    revision=self.revision,
                    has_token=bool(self._token),
                    egress=self._egress,
                    endpoint=self.endpoint,
                )
                if not error.retryable or attempt == _PIN_ATTEMPTS:
                    raise error from None
                assert isinstance(error, errors.RetryableError)
                await asyncio.sleep(error.retry_after or random.uniform(0.2, 0.5 * 2**attempt))
        self.commit = sha
        files = []
        for entry in entries:
            if entry.lfs is not None:
                identity = f"sha256:{entry.lfs.sha256}"
                digests: tuple[checksums.Checksum, ...] = (
                    checksums.Checksum("sha256", entry.lfs.sha256),
                )
            else:
                identity = f"git-sha1:{entry.blob_id}"
                digests = (checksums.Checksum("git-sha1", entry.blob_id),)
            files.append(
                base.RemoteFile(
                    path=entry.path,
                    size=int(entry.size),
                    identity=identity,
                    key=entry.path,
                    digests=digests,
                )
            )
        return base.Plan(uri=self.uri, revision=sha, files=tuple(files))

    async def request(self, file: base.RemoteFile, *, start: int, end: int) -> base.HTTPRequest:
        if self.commit is None:
            raise RuntimeError("pin() first")
        url = huggingface_hub.hf_hub_url(
            self.repo_id, file.key, revision=self.commit, endpoint=self.endpoint
        )
        headers = {**self._headers, "Range": base.range_header(start, end)}
        return base.HTTPRequest(url=url, headers=headers, auth_hosts=frozenset({self._host}))

    def check_response(self, file: base.RemoteFile, headers: Mapping[str, str]) -> None:
        commit = headers.get("X-Repo-Commit")
        if commit and self.commit and commit != self.commit:
            raise errors.ServerError(
                f"{file.path}: the Hub served commit {commit}, not the pinned {self.commit}"
            )

    async def close(self) -> None:
        return None
