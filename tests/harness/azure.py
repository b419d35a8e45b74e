"""Azure Blob Storage for tests: Azurite (npm) in a subprocess, behind the fault proxy.

``Azurite`` starts ``azurite-blob`` (installed from ``tests/harness/azurite/package.json`` by
``.ci/run``, or here on first use with ``npm install``) on 127.0.0.1, in memory, path-style
(``http://127.0.0.1:{port}/devstoreaccount1/...``), with the emulator's well-known account and
key. Blobs are written through the REST API signed with Shared Key (Azurite checks every
signature): ``put_blob`` (the service stores Content-MD5), ``put_blocks`` (a block-list upload,
with or without ``x-ms-blob-content-md5``), containers private or public. ``AzureFaultProxy``
is the ``faultproxy.FaultProxy`` for path-style Blob URLs (Azure's XML error body,
``x-ms-error-code``); its log names each blob (``kind`` "data" for blob GETs, "api" for the
rest). ``TokenEndpoint`` is an Entra ID token endpoint for workload identity exchanges.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.parse
from typing import Any

import requests
from aiohttp import web

from model_agent.storage.azure import sharedkey
from tests.harness import faultproxy, faults

__all__ = ["ACCOUNT", "KEY", "AzureFaultProxy", "Azurite", "TokenEndpoint"]

ACCOUNT = "devstoreaccount1"
#: Azurite's documented, public development key (not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_PACKAGE = pathlib.Path(__file__).parent / "azurite"
_BINARY = _PACKAGE / "node_modules" / ".bin" / "azurite-blob"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_installed() -> pathlib.Path:
    """The azurite-blob binary, installed from the project's package.json when missing."""
    if not _BINARY.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install Azurite (node 18+)")
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(_PACKAGE)],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return _BINARY


class Azurite:
    """azurite-blob in a subprocess on an ephemeral loopback port."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.endpoint = f"http://127.0.0.1:{self.port}/{ACCOUNT}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = ensure_installed()
        self._process = subprocess.Popen(
            [
                str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--inMemoryPersistence", "--silent", "--skipApiVersionCheck",
                "--disableTelemetry", "--disableProductStyleUrl",
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Azurite did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    def connection_string(self, endpoint: str | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={endpoint or self.endpoint};"
        )

    def _send(self, method: str, url: str, body: bytes = b"", **headers: str) -> requests.Response:
        sent = {
            "x-ms-version": "2021-08-06",
            "x-ms-date": email.utils.formatdate(usegmt=True),
            "Content-Length": str(len(body)),
            **headers,
        }
        sent["Authorization"] = sharedkey.authorization(method, url, sent, account=ACCOUNT, key=KEY)
        answer = requests.request(method, url, data=body, headers=sent, timeout=60)
        if answer.status_code >= 300:
            raise RuntimeError(f"{method} {url}: {answer.status_code} {answer.text[:300]}")
        return answer

    def create_container(self, name: str, *, public: bool = False) -> None:
        extra = {"x-ms-blob-public-access": "container"} if public else {}
        self._send("PUT", f"{self.endpoint}/{name}?restype=container", **extra)

    def _blob(self, container: str, name: str) -> str:
        return f"{self.endpoint}/{container}/{urllib.parse.quote(name, safe='/~')}"

    def put_blob(self, container: str, name: str, data: bytes) -> None:
        """Put Blob: the service computes and stores Content-MD5."""
        self._send(
            "PUT", self._blob(container, name), data,
            **{"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"},
        )  # fmt: skip

    def put_blocks(self, container: str, name: str, data: bytes, *, block: int, md5: bool) -> None:
        """A block-list upload (Put Block x N, Put Block List); Content-MD5 only with ``md5``."""
        ids = []
        url = self._blob(container, name)
        for index, offset in enumerate(range(0, len(data), block)):
            block_id = base64.b64encode(f"block-{index:06d}".encode()).decode()
            ids.append(block_id)
            quoted = urllib.parse.quote(block_id, safe="")
            self._send("PUT", f"{url}?comp=block&blockid={quoted}", data[offset : offset + block])
        listing = "".join(f"<Latest>{i}</Latest>" for i in ids)
        body = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{listing}</BlockList>'.encode()
        extra: dict[str, Any] = {"Content-Type": "application/xml"}
        if md5:
            extra["x-ms-blob-content-md5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
        self._send("PUT", f"{url}?comp=blocklist", body, **extra)


class AzureFaultProxy(faultproxy.FaultProxy):
    """The fault proxy for path-style Blob URLs (``/{account}/{container}/{blob}``)."""

    def classify(self, request: web.Request) -> tuple[str | None, str]:
        parts = request.path.lstrip("/").split("/", 2)
        if len(parts) == 3 and parts[2] and "comp" not in request.query:
            kind = {"GET": "data", "HEAD": "meta"}.get(request.method, "api")
            return urllib.parse.unquote(parts[2]), kind
        return None, "api"

    def error_body(self, status: int) -> tuple[str, str]:
        code = {503: "ServerBusy", 500: "InternalError"}.get(status, "InternalError")
        return "application/xml", (
            f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            "<Message>injected by the test</Message></Error>"
        )


class TokenEndpoint(faults.ServerBase):
    """An Entra ID token endpoint (``/{tenant}/oauth2/v2.0/token``) for workload identity."""

    TOKEN = "eyJ0eXAiOiJKV1QifQ.test-only-storage-token.c2ln"

    def __init__(self) -> None:
        super().__init__()
        self.authority = ""
        self.forms: list[dict[str, str]] = []

    def _apps(self) -> list[tuple[web.Application, str]]:
        app = web.Application(middlewares=[faults.log_middleware(self.log)])
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        return [(app, "127.0.0.1")]

    def _bound(self, ports: list[tuple[str, int]]) -> None:
        host, port = ports[0]
        self.authority = f"http://{host}:{port}"

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append({**form, "tenant": request.match_info["tenant"]})
        return web.json_response({"access_token": self.TOKEN, "expires_in": 3600})
