"""A local Hugging Face Hub for tests: model repos, commits, the API, resolve and a CDN host.

Owns the Hub's wire contract as huggingface_hub uses it (TESTING.md): revision info (with
``?blobs=True``), paginated recursive tree listings with git-blob and LFS oids, ``resolve``
answering small files directly (200/206 with ``ETag`` = git blob sha1) and LFS files with a 302
to a CDN served on another host (127.0.0.2, so clients drop ``Authorization``), private and
gated repos, and the ``X-Error-Code`` errors. Never emits ``xetHash``. Files are ``bytes`` or
paths on disk (streamed in chunks). Faults and the request log come from ``faults``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import json
import os
import pathlib
import re
import secrets
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.harness import faults as faults_mod

__all__ = ["HubFile", "LocalHub"]

CDN_HOST = "127.0.0.2"
_HASH_CHUNK = 4 * 1024 * 1024
_REPO = r"(?P<repo>[^/]+/[^/]+|[^/]+)"
_REVISION_RE = re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
_TREE_RE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE_RE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN_RE = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+|[^/]+)/(?P<sha>[0-9a-f]{40})/(?P<path>.+)$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")

# (resolved path, size, mtime_ns) -> sha256 hex, so big benchmark files are hashed once.
_DIGEST_CACHE: dict[tuple[str, int, int], str] = {}
_DIGEST_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class HubFile:
    """One file of a commit: where its bytes live and the oids the Hub reports for it."""

    path: str
    source: faults_mod.Source
    size: int
    sha256: str
    git_oid: str  # sha1 of the git blob: the content, or the LFS pointer for LFS files
    lfs: bool
    pointer_size: int = 0


@dataclasses.dataclass(frozen=True)
class _Commit:
    sha: str
    files: Mapping[str, HubFile]
    created: str


@dataclasses.dataclass
class _Repo:
    repo_id: str
    private: bool
    gated: bool
    token: str | None
    commits: dict[str, _Commit] = dataclasses.field(default_factory=dict)
    refs: dict[str, str] = dataclasses.field(default_factory=dict)


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    spec = "https://git-lfs.github.com/spec/v1"
    return f"version {spec}\noid sha256:{sha256}\nsize {size}\n".encode()


def _sha256_of(source: faults_mod.Source) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    stat = source.stat()
    key = (str(source.resolve()), stat.st_size, stat.st_mtime_ns)
    with _DIGEST_LOCK:
        cached = _DIGEST_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    with _DIGEST_LOCK:
        _DIGEST_CACHE[key] = digest.hexdigest()
    return digest.hexdigest()


def _make_file(path: str, source: bytes | pathlib.Path, lfs_threshold: int) -> HubFile:
    if isinstance(source, bytearray | memoryview):
        source = bytes(source)
    if not isinstance(source, bytes | pathlib.Path):
        raise TypeError(f"{path}: file content must be bytes or pathlib.Path")
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    sha256 = _sha256_of(source)
    if size >= lfs_threshold:
        pointer = _lfs_pointer(sha256, size)
        return HubFile(path, source, size, sha256, _git_blob_sha1(pointer), True, len(pointer))
    content = source if isinstance(source, bytes) else source.read_bytes()
    return HubFile(path, source, size, sha256, _git_blob_sha1(content), False)


class LocalHub(faults_mod.ServerBase):
    """The local Hub (``endpoint`` on 127.0.0.1) and its CDN (``cdn_endpoint`` on 127.0.0.2).

    ``tls`` serves both over HTTPS; ``hub_name``/``cdn_name`` are the host names the endpoints
    use instead of the addresses (names only a test proxy resolves, see ``forward_proxy``).

    ``tree_page_size`` (settable) is the number of entries per tree page.
    """

    def __init__(
        self,
        *,
        tree_page_size: int = 1000,
        tls: ssl.SSLContext | None = None,
        hub_name: str | None = None,
        cdn_name: str | None = None,
    ) -> None:
        super().__init__()
        self.tls = tls
        self.hub_name = hub_name
        self.cdn_name = cdn_name
        self.tree_page_size = tree_page_size
        self.endpoint = ""
        self.cdn_endpoint = ""
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(16)
        self._counter = 0

    # -- content -------------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | pathlib.Path],
        *,
        private: bool = False,
        gated: bool = False,
        token: str | None = None,
        lfs_threshold: int = 1024,
        tags: tuple[str, ...] = (),
        allow_unsafe_paths: bool = False,
    ) -> str:
        """Make a commit whose tree is exactly ``files`` and move ``main`` (and ``tags``) to it.

        The first call creates the repo (``private``/``gated``/``token`` apply; with no
        ``token`` any bearer token opens a private or gated repo). Later calls add a new commit
        on ``main`` (earlier commits stay reachable by sha). Files of ``lfs_threshold`` bytes or
        more are LFS files. ``allow_unsafe_paths`` lets a hostile repo list names such as
        ``../x`` or ``/etc/x`` (to test that clients refuse them). Returns the new commit sha.
        """
        check = (lambda p: p) if allow_unsafe_paths else _check_path
        built = {p: _make_file(check(p), src, lfs_threshold) for p, src in files.items()}
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                repo = _Repo(repo_id, private, gated, token)
                self._repos[repo_id] = repo
            self._counter += 1
            seed = f"{repo_id}\0{self._counter}\0" + "\0".join(
                f"{f.path}:{f.git_oid}" for f in built.values()
            )
            sha = hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()
            created = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
            repo.commits[sha] = _Commit(sha, dict(built), created)
            repo.refs = {**repo.refs, "main": sha, **dict.fromkeys(tags, sha)}
        return sha

    def tag(self, repo_id: str, name: str, revision: str = "main") -> str:
        """Point tag (or branch) ``name`` at ``revision``; returns the commit sha."""
        with self._lock:
            repo = self._repos[repo_id]
            sha = self._resolve(repo, revision)
            if sha is None:
                raise KeyError(f"{repo_id} has no revision {revision!r}")
            repo.refs = {**repo.refs, name: sha}
        return sha

    def commit_of(self, repo_id: str, revision: str = "main") -> str:
        sha = self._resolve(self._repos[repo_id], revision)
        if sha is None:
            raise KeyError(f"{repo_id} has no revision {revision!r}")
        return sha

    def file(self, repo_id: str, path: str, revision: str = "main") -> HubFile:
        """The stored file (with its sha256 and oids) at ``revision``."""
        repo = self._repos[repo_id]
        return repo.commits[self.commit_of(repo_id, revision)].files[path]

    @property
    def cdn_host(self) -> str:
        return self.cdn_name or CDN_HOST

    def cdn_saw_authorization(self) -> bool:
        """Whether any request that reached the CDN host carried an Authorization header."""
        return any(
            r.host.startswith(self.cdn_host) and "authorization" in {k.lower() for k in r.headers}
            for r in list(self.log)
        )

    # -- server plumbing -----------------------------------------------------------------------
    def _apps(self) -> list[tuple[web.Application, str]]:
        hub = web.Application(middlewares=[faults_mod.log_middleware(self.log)])
        hub.router.add_route("*", "/{tail:.*}", self._handle_hub)
        cdn = web.Application(middlewares=[faults_mod.log_middleware(self.log)])
        cdn.router.add_route("*", "/{tail:.*}", self._handle_cdn)
        return [(hub, "127.0.0.1"), (cdn, CDN_HOST)]

    def _bound(self, ports: list[tuple[str, int]]) -> None:
        (hub_host, hub_port), (cdn_host, cdn_port) = ports
        scheme = "https" if self.tls is not None else "http"
        self.endpoint = f"{scheme}://{self.hub_name or hub_host}:{hub_port}"
        self.cdn_endpoint = f"{scheme}://{self.cdn_name or cdn_host}:{cdn_port}"

    @staticmethod
    def _resolve(repo: _Repo, revision: str) -> str | None:
        if revision in repo.refs:
            return repo.refs[revision]
        if _COMMIT_RE.match(revision) and revision in repo.commits:
            return revision
        return None

    # -- handlers ------------------------------------------------------------------------------
    async def _handle_hub(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _error(request, 405, None, "Method not allowed")
        raw = request.rel_url.raw_path
        if match := _REVISION_RE.match(raw):
            return self._revision_info(request, match)
        if match := _TREE_RE.match(raw):
            return self._tree(request, match)
        if match := _RESOLVE_RE.match(raw):
            return await self._resolve_file(request, match)
        return _error(request, 404, None, "Not found")

    def _open(
        self, request: web.Request, repo_id: str, revision: str
    ) -> tuple[_Repo, _Commit] | web.StreamResponse:
        """The repo and commit the request may see, or the Hub's error answer."""
        repo = self._repos.get(repo_id)
        authorization = request.headers.get("Authorization", "")
        bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        if repo is None:
            status = 404 if bearer else 401
            return _error(request, status, "RepoNotFound", "Repository not found")
        if (repo.private or repo.gated) and not (
            bearer and (repo.token is None or hmac.compare_digest(bearer, repo.token))
        ):
            if repo.gated and not repo.private:
                return _error(request, 401, "GatedRepo", "Access to this repo is restricted")
            return _error(request, 401, "RepoNotFound", "Repository not found")
        sha = self._resolve(repo, revision)
        if sha is None:
            return _error(request, 404, "RevisionNotFound", "Invalid rev id: " + revision[:100])
        return repo, repo.commits[sha]

    def _failure(
        self, request: web.Request, names: list[str], kind: str
    ) -> web.StreamResponse | None:
        plan = self.faults.plan(names, kind)
        if plan.fail_status is None:
            return None
        return _error(
            request, plan.fail_status, None, "injected failure", faults_mod.error_headers(plan)
        )

    def _revision_info(self, request: web.Request, match: re.Match[str]) -> web.StreamResponse:
        repo_id, revision = _unquote(match["repo"]), _unquote(match["rev"] or "main")
        request[faults_mod.RECORD].file = None
        if failed := self._failure(request, [], "api"):
            return failed
        opened = self._open(request, repo_id, revision)
        if isinstance(opened, web.StreamResponse):
            return opened
        repo, commit = opened
        blobs = request.query.get("blobs", "").lower() in ("1", "true")
        siblings: list[dict[str, Any]] = []
        for f in sorted(commit.files.values(), key=lambda f: f.path):
            sibling: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                sibling.update(size=f.size, blobId=f.git_oid)
                if f.lfs:
                    sibling["lfs"] = {
                        "sha256": f.sha256,
                        "size": f.size,
                        "pointerSize": f.pointer_size,
                    }
            siblings.append(sibling)
        body = {
            "_id": hashlib.sha1(repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": commit.sha,
            "lastModified": commit.created,
            "private": repo.private,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "createdAt": commit.created,
        }
        return _json(request, body)

    def _tree(self, request: web.Request, match: re.Match[str]) -> web.StreamResponse:
        repo_id, revision = _unquote(match["repo"]), _unquote(match["rev"])
        base = _unquote(match["path"] or "").strip("/")
        if failed := self._failure(request, [base or "*"], "api"):
            return failed
        opened = self._open(request, repo_id, revision)
        if isinstance(opened, web.StreamResponse):
            return opened
        _, commit = opened
        recursive = request.query.get("recursive", "").lower() in ("1", "true")
        entries = _tree_entries(commit, base, recursive=recursive)
        if entries is None:
            return _error(request, 404, "EntryNotFound", f"{base} does not exist")
        try:
            offset = int(base64.urlsafe_b64decode(request.query.get("cursor", "") + "==") or 0)
        except ValueError:
            return _error(request, 400, None, "bad cursor")
        page = entries[offset : offset + max(1, self.tree_page_size)]
        headers: dict[str, str] = {}
        if offset + len(page) < len(entries):
            cursor = base64.urlsafe_b64encode(str(offset + len(page)).encode()).decode()
            next_url = request.url.update_query(cursor=cursor.rstrip("="))
            headers["Link"] = f'<{next_url}>; rel="next"'
        return _json(request, page, headers)

    async def _resolve_file(self, request: web.Request, match: re.Match[str]) -> web.StreamResponse:
        repo_id, revision = _unquote(match["repo"]), _unquote(match["rev"])
        path = _unquote(match["path"])
        record = request[faults_mod.RECORD]
        record.file = path
        opened = self._open(request, repo_id, revision)
        if isinstance(opened, web.StreamResponse):
            return opened
        _, commit = opened
        hub_file = commit.files.get(path)
        if hub_file is None:
            return _error(request, 404, "EntryNotFound", f"{path} does not exist")
        names = [path, f"{repo_id}/{path}"]
        headers = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
        if hub_file.lfs:
            record.kind = "meta"
            if failed := self._failure(request, names, "meta"):
                return failed
            location = self._cdn_url(repo_id, commit.sha, path)
            headers.update(
                {
                    "X-Linked-Etag": f'"{hub_file.sha256}"',
                    "X-Linked-Size": str(hub_file.size),
                    "ETag": f'"{hub_file.git_oid}"',
                    "Location": location,
                    "Content-Type": "text/plain; charset=utf-8",
                }
            )
            body = f"Found. Redirecting to {location}".encode()
            return web.Response(status=302, headers=headers, body=body)
        headers["ETag"] = f'"{hub_file.git_oid}"'
        return await self._serve(request, hub_file, names, headers)

    def _cdn_url(self, repo_id: str, sha: str, path: str) -> str:
        target = f"/repos/{_quote(repo_id)}/{sha}/{_quote(path)}"
        sig = hmac.new(self._secret, target.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.cdn_endpoint}{target}?X-Sig={sig}&Expires=4102444800"

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _error(request, 405, None, "Method not allowed")
        raw = request.rel_url.raw_path
        match = _CDN_RE.match(raw)
        sig = hmac.new(self._secret, raw.encode(), hashlib.sha256).hexdigest()[:32]
        if match is None or not hmac.compare_digest(request.query.get("X-Sig", ""), sig):
            return _error(request, 403, None, "Access denied: bad signature")
        repo_id, path = _unquote(match["repo"]), _unquote(match["path"])
        request[faults_mod.RECORD].file = path
        repo = self._repos.get(repo_id)
        commit = repo.commits.get(match["sha"]) if repo is not None else None
        hub_file = commit.files.get(path) if commit is not None else None
        if hub_file is None:
            return _error(request, 404, None, "NoSuchKey")
        headers = {"ETag": f'"{hub_file.sha256}"', "Accept-Ranges": "bytes"}
        return await self._serve(request, hub_file, [path, f"{repo_id}/{path}"], headers)

    async def _serve(
        self, request: web.Request, hub_file: HubFile, names: list[str], headers: dict[str, str]
    ) -> web.StreamResponse:
        """Answer a data request (200/206/416) for ``hub_file`` with the planned faults."""
        record = request[faults_mod.RECORD]
        record.kind = "data" if request.method == "GET" else "meta"
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range != headers.get("ETag"):
            range_header = None
        plan = self.faults.plan(names, record.kind, has_range=range_header is not None)
        if plan.fail_status is not None:
            return _error(
                request,
                plan.fail_status,
                None,
                "injected failure",
                faults_mod.error_headers(plan),
            )
        headers = {**headers, "Content-Type": "application/octet-stream"}
        size = hub_file.size
        span = None if plan.ignore_range else faults_mod.parse_range(range_header, size)
        if span == "invalid":
            return _error(
                request, 416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{size}"}
            )
        return await faults_mod.serve_span(
            request,
            span=span,
            size=size,
            headers=headers,
            source=hub_file.source,
            plan=plan,
            faults=self.faults,
            record=record,
        )


def _tree_entries(commit: _Commit, base: str, *, recursive: bool) -> list[dict[str, Any]] | None:
    prefix = f"{base}/" if base else ""
    files = [f for p, f in commit.files.items() if p.startswith(prefix)]
    if base and not files:
        return None if base not in commit.files else []
    directories: set[str] = set()
    entries: dict[str, dict[str, Any]] = {}
    for f in files:
        rest = f.path[len(prefix) :]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            directories.add(prefix + "/".join(parts[:depth]))
        if not recursive and len(parts) > 1:
            continue
        entry: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        entries[f.path] = entry
    for d in directories:
        if recursive or "/" not in d[len(prefix) :]:
            oid = hashlib.sha1(f"tree {d}".encode(), usedforsecurity=False).hexdigest()
            entries[d] = {"type": "directory", "oid": oid, "size": 0, "path": d}
    return [entries[p] for p in sorted(entries)]


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad repository path {path!r}")
    return path


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="/")


def _unquote(value: str) -> str:
    return urllib.parse.unquote(value)


def _json(
    request: web.Request, body: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=200,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


def _error(
    request: web.Request,
    status: int,
    code: str | None,
    message: str,
    extra: Mapping[str, str] | None = None,
) -> web.Response:
    headers = {"X-Error-Message": message, **(extra or {})}
    if code is not None:
        headers["X-Error-Code"] = code
    body = b"" if request.method == "HEAD" else json.dumps({"error": message}).encode()
    request[faults_mod.RECORD].status = status
    return web.Response(
        status=status,
        body=body,
        headers=headers,
        content_type=None if request.method == "HEAD" else "application/json",
    )


def env_for_subprocess(hub: LocalHub) -> dict[str, str]:
    """Environment that points a child process's huggingface_hub at ``hub``."""
    return {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
