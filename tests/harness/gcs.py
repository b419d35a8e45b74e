"""GCS for tests: ``gcp-storage-emulator`` (PyPI) behind the fault proxy, and a token endpoint.

``GCSEmulator`` runs the emulator in memory on 127.0.0.1 (an ephemeral port) and uploads
objects through its JSON API (``upload``, ``compose``). ``GCSFaultProxy`` is the
``faultproxy.FaultProxy`` for the JSON API, and closes three gaps between the emulator and GCS:
it paginates listings (``maxResults``/``pageToken``; the emulator returns everything at once);
it reports composed objects (those composed through it, or named in ``composite``) as GCS
does (``componentCount``, no ``md5Hash``; the emulator computes one); with ``private = True``
it answers 401 to requests without a bearer token (the emulator has no IAM). ``TokenServer``
is an OAuth token endpoint for service-account key files whose ``token_uri`` points at it; it
records the grant types it was sent.
"""

from __future__ import annotations

import base64
import json
import pathlib
import socket
import urllib.parse
from typing import Any

import requests
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gcp_storage_emulator.server import create_server

from tests.harness import faultproxy, faults

__all__ = ["GCSEmulator", "GCSFaultProxy", "TokenServer", "write_key_file"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GCSEmulator:
    """gcp-storage-emulator in this process (its own thread), in memory."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._server = create_server("127.0.0.1", self.port, in_memory=True)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def create_bucket(self, name: str) -> None:
        answer = requests.post(
            f"{self.endpoint}/storage/v1/b", params={"project": "test"}, json={"name": name},
            timeout=10,
        )  # fmt: skip
        answer.raise_for_status()

    def upload(self, bucket: str, name: str, data: bytes) -> dict[str, Any]:
        answer = requests.post(
            f"{self.endpoint}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            timeout=60,
        )
        answer.raise_for_status()
        return dict(answer.json())

    def compose(self, bucket: str, name: str, sources: list[str]) -> dict[str, Any]:
        """Compose ``sources`` into ``name`` (tell the proxy: ``proxy.composite.add(name)``)."""
        answer = requests.post(
            f"{self.endpoint}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}/compose",
            json={"sourceObjects": [{"name": s} for s in sources], "destination": {}},
            timeout=60,
        )
        answer.raise_for_status()
        return dict(answer.json())


class GCSFaultProxy(faultproxy.FaultProxy):
    """The fault proxy for the GCS JSON API (see the module docstring)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.private = False
        self.composite: set[str] = set()

    def classify(self, request: web.Request) -> tuple[str | None, str]:
        path = request.path
        if path.startswith("/download/storage/v1/b/"):
            return path.split("/o/", 1)[1], "data"
        if "/o/" in path and path.startswith("/storage/v1/b/"):
            return path.split("/o/", 1)[1], "meta"
        return None, "api"

    def error_body(self, status: int) -> tuple[str, str]:
        body = {"error": {"code": status, "message": "injected by the test"}}
        return "application/json", json.dumps(body)

    async def intercept(self, request: Any, session: Any, headers: dict[str, str]) -> Any:
        if self.private and not request.headers.get("Authorization", "").startswith("Bearer "):
            body = {"error": {"code": 401, "message": "Anonymous caller does not have access"}}
            return web.json_response(body, status=401)
        if request.method == "POST" and request.path.endswith("/compose"):
            name = urllib.parse.unquote(request.path.split("/o/", 1)[1].removesuffix("/compose"))
            self.composite.add(name)
            return None
        if request.method != "GET" or not request.path.endswith("/o"):
            return None
        query = dict(request.query)
        size = int(query.pop("maxResults", "1000"))
        token = query.pop("pageToken", "")
        async with session.get(self.upstream + request.path, params=query) as upstream:
            if upstream.status != 200:
                return web.Response(status=upstream.status, body=await upstream.read())
            listing = await upstream.json()
        items = sorted(listing.get("items") or [], key=lambda i: i["name"])
        after = base64.urlsafe_b64decode(token).decode() if token else ""
        items = [i for i in items if i["name"] > after]
        page, rest = items[:size], items[size:]
        for item in page:
            if item["name"] in self.composite:
                item.pop("md5Hash", None)
                item["componentCount"] = 2
        answer: dict[str, Any] = {"kind": "storage#objects", "items": page}
        if rest:
            answer["nextPageToken"] = base64.urlsafe_b64encode(page[-1]["name"].encode()).decode()
        return web.json_response(answer)


class TokenServer(faults.ServerBase):
    """An OAuth 2.0 token endpoint (``/token``) that hands out ``TOKEN``."""

    TOKEN = "ya29.test-only-access-token"

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.grants: list[str] = []

    def _apps(self) -> list[tuple[web.Application, str]]:
        app = web.Application(middlewares=[faults.log_middleware(self.log)])
        app.router.add_post("/token", self._token)
        return [(app, "127.0.0.1")]

    def _bound(self, ports: list[tuple[str, int]]) -> None:
        host, port = ports[0]
        self.url = f"http://{host}:{port}/token"

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.grants.append(str(form.get("grant_type")))
        body = {"access_token": self.TOKEN, "expires_in": 3600, "token_type": "Bearer"}
        return web.json_response(body)


def write_key_file(path: pathlib.Path, token_uri: str) -> pathlib.Path:
    """A service-account key file (a throw-away RSA key) whose ``token_uri`` is local."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    fields = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "model-agent@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(fields))
    return path
