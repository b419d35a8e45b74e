"""A local GitHub for tests: repositories with releases and assets, shaped like the REST API.

Owns the part of GitHub's REST API (``X-GitHub-Api-Version: 2022-11-28``) that pulling a
release uses: ``GET /repos/{owner}/{repo}/releases/latest`` and ``/releases/tags/{tag}``
(the release object: ``id``, ``tag_name``, ``assets``), ``/releases/{id}/assets`` paginated
with ``per_page``/``page`` and a ``Link: <...>; rel="next"`` header, and
``/releases/assets/{id}``: the asset object, or with ``Accept: application/octet-stream`` a
302 to a CDN on another host (127.0.0.2, a signed-looking URL) that serves the bytes with
Range (200/206). Assets carry ``digest: "sha256:<hex>"`` unless added with ``digest=False``.
A private repository answers 404 ``{"message": "Not Found"}`` without the right bearer token
(as GitHub does); a wrong token is 401 ``Bad credentials``. Faults and the request log come
from ``faults`` (``kind``: "api" for the API, "meta" for the redirect, "data" for CDN bytes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json

from aiohttp import web

from tests.harness import faults

__all__ = ["LocalGitHub"]

CDN_HOST = "127.0.0.2"


@dataclasses.dataclass
class _Asset:
    id: int
    name: str
    data: bytes
    digest: bool


@dataclasses.dataclass
class _Release:
    id: int
    tag: str
    assets: list[_Asset]


class LocalGitHub(faults.ServerBase):
    """The API (``endpoint``, 127.0.0.1) and the asset CDN (``cdn_endpoint``, 127.0.0.2)."""

    def __init__(self) -> None:
        super().__init__()
        self.endpoint = self.cdn_endpoint = ""
        self._ids = itertools.count(1000)
        self._repos: dict[str, list[_Release]] = {}
        self._private: dict[str, str] = {}  # repo -> the token that may read it
        self._assets: dict[int, _Asset] = {}

    # -- content -------------------------------------------------------------------------------
    def add_release(
        self, repo: str, tag: str, files: dict[str, bytes], *, digest: bool = True
    ) -> int:
        """Add a release (the latest so far) of ``repo`` (``owner/name``); returns its id."""
        assets = [_Asset(next(self._ids), n, d, digest) for n, d in files.items()]
        self._assets.update({a.id: a for a in assets})
        release = _Release(next(self._ids), tag, assets)
        self._repos.setdefault(repo, []).append(release)
        return release.id

    def make_private(self, repo: str, token: str) -> None:
        self._private[repo] = token

    # -- serving -------------------------------------------------------------------------------
    def _apps(self) -> list[tuple[web.Application, str]]:
        api = web.Application(middlewares=[faults.log_middleware(self.log)])
        api.router.add_get("/repos/{owner}/{repo}/releases/latest", self._latest)
        api.router.add_get("/repos/{owner}/{repo}/releases/tags/{tag}", self._by_tag)
        api.router.add_get("/repos/{owner}/{repo}/releases/assets/{asset}", self._asset)
        api.router.add_get("/repos/{owner}/{repo}/releases/{release}/assets", self._list)
        cdn = web.Application(middlewares=[faults.log_middleware(self.log)])
        cdn.router.add_get("/assets/{asset}", self._cdn)
        return [(api, "127.0.0.1"), (cdn, CDN_HOST)]

    def _bound(self, ports: list[tuple[str, int]]) -> None:
        (host, port), (cdn_host, cdn_port) = ports
        self.endpoint = f"http://{host}:{port}"
        self.cdn_endpoint = f"http://{cdn_host}:{cdn_port}"

    def _asset_json(self, repo: str, asset: _Asset) -> dict[str, object]:
        body: dict[str, object] = {
            "id": asset.id,
            "name": asset.name,
            "size": len(asset.data),
            "content_type": "application/octet-stream",
            "state": "uploaded",
            "url": f"{self.endpoint}/repos/{repo}/releases/assets/{asset.id}",
            "browser_download_url": f"{self.cdn_endpoint}/assets/{asset.id}",
        }
        if asset.digest:
            body["digest"] = f"sha256:{hashlib.sha256(asset.data).hexdigest()}"
        return body

    def _gate(self, request: web.Request, kind: str) -> tuple[str, web.Response | None]:
        """The repository of ``request``, or an error answer (fault, auth, unknown repo)."""
        record = request[faults.RECORD]
        record.kind = kind
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        plan = self.faults.plan([repo], kind)
        if plan.fail_status is not None:
            body = json.dumps({"message": "injected by the test"})
            headers = faults.error_headers(plan)
            return repo, web.Response(
                status=plan.fail_status, text=body, headers=headers, content_type="application/json"
            )
        auth = request.headers.get("Authorization", "")
        wanted = self._private.get(repo)
        if auth and wanted is not None and auth != f"Bearer {wanted}":
            return repo, web.json_response({"message": "Bad credentials"}, status=401)
        if repo not in self._repos or (wanted is not None and auth != f"Bearer {wanted}"):
            return repo, web.json_response({"message": "Not Found"}, status=404)
        return repo, None

    def _release_json(self, repo: str, release: _Release) -> dict[str, object]:
        return {
            "id": release.id,
            "tag_name": release.tag,
            "assets": [self._asset_json(repo, a) for a in release.assets],
        }

    async def _latest(self, request: web.Request) -> web.Response:
        repo, error = self._gate(request, "api")
        if error is not None:
            return error
        return web.json_response(self._release_json(repo, self._repos[repo][-1]))

    async def _by_tag(self, request: web.Request) -> web.Response:
        repo, error = self._gate(request, "api")
        if error is not None:
            return error
        for release in self._repos[repo]:
            if release.tag == request.match_info["tag"]:
                return web.json_response(self._release_json(repo, release))
        return web.json_response({"message": "Not Found"}, status=404)

    async def _list(self, request: web.Request) -> web.Response:
        repo, error = self._gate(request, "api")
        if error is not None:
            return error
        found = [r for r in self._repos[repo] if str(r.id) == request.match_info["release"]]
        if not found:
            return web.json_response({"message": "Not Found"}, status=404)
        per_page = min(100, int(request.query.get("per_page", "30")))
        page = int(request.query.get("page", "1"))
        assets = found[0].assets[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(found[0].assets):
            following = request.url.update_query(page=str(page + 1))
            headers["Link"] = f'<{following}>; rel="next"'
        return web.json_response([self._asset_json(repo, a) for a in assets], headers=headers)

    async def _asset(self, request: web.Request) -> web.Response:
        repo, error = self._gate(request, "meta")
        if error is not None:
            return error
        asset = self._assets.get(int(request.match_info["asset"]))
        if asset is None:
            return web.json_response({"message": "Not Found"}, status=404)
        request[faults.RECORD].file = asset.name
        if request.headers.get("Accept") != "application/octet-stream":
            return web.json_response(self._asset_json(repo, asset))
        location = f"{self.cdn_endpoint}/assets/{asset.id}?X-Amz-Signature=test&expires=9999"
        return web.Response(status=302, headers={"Location": location})

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        record = request[faults.RECORD]
        record.kind = "data"
        asset = self._assets.get(int(request.match_info["asset"]))
        if asset is None:
            return web.Response(status=404)
        record.file = asset.name
        plan = self.faults.plan([asset.name], "data", has_range="Range" in request.headers)
        if plan.fail_status is not None:
            return web.Response(status=plan.fail_status, headers=faults.error_headers(plan))
        span = (
            None
            if plan.ignore_range
            else faults.parse_range(request.headers.get("Range"), len(asset.data))
        )
        if span == "invalid":
            return web.Response(status=416)
        return await faults.serve_span(
            request,
            span=span,
            size=len(asset.data),
            headers={"Content-Type": "application/octet-stream"},
            source=asset.data,
            plan=plan,
            faults=self.faults,
            record=record,
        )
