"""S3 for tests: moto's standalone server (the emulator) behind a fault-injecting proxy.

``MotoS3`` runs ``moto.server.ThreadedMotoServer`` on 127.0.0.1 (an ephemeral port) and hands
out boto3 clients with throw-away keys (moto accepts any key and does not check signatures,
but refuses unsigned requests to private buckets, as S3 does). ``S3FaultProxy`` is the
``faultproxy.FaultProxy`` for path-style S3: injected failures carry S3's XML error body
(``503 SlowDown`` + ``Retry-After``); its request log names the object key of each request
(``kind`` "data" for object GETs, "meta" for HEADs, "api" for the rest).
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import boto3
from aiohttp import web
from moto.server import ThreadedMotoServer

from tests.harness import faultproxy

logging.getLogger("werkzeug").setLevel(logging.WARNING)

__all__ = ["ACCESS_KEY", "SECRET_KEY", "MotoS3", "S3FaultProxy"]

ACCESS_KEY = "AKIATESTONLY00000000"
SECRET_KEY = "test-only-secret-key-never-a-real-one0000"
_CODES = {503: "SlowDown", 500: "InternalError", 429: "SlowDown", 403: "AccessDenied"}


class MotoS3:
    """moto's S3 server in this process, on its own threads."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> None:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def client(self, **kwargs: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            **kwargs,
        )


class S3FaultProxy(faultproxy.FaultProxy):
    """The fault proxy for path-style S3 (``/{bucket}/{key}``)."""

    def classify(self, request: web.Request) -> tuple[str | None, str]:
        _, _, key = request.path.lstrip("/").partition("/")
        if not key:
            return None, "api"
        return urllib.parse.unquote(key), {"GET": "data", "HEAD": "meta"}.get(request.method, "api")

    def error_body(self, status: int) -> tuple[str, str]:
        code = _CODES.get(status, "InternalError")
        return "application/xml", (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            "<Message>injected by the test</Message></Error>"
        )
