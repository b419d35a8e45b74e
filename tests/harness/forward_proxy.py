"""A real forward proxy for egress tests: ``proxy.py`` (PyPI, in the test extra) run as a child
process on an ephemeral loopback port, its access log kept for the assertions.

``ForwardProxy(directory)`` plain (CONNECT tunnels for https, absolute-form GETs for http);
``basic_auth="user:pass"`` makes it demand ``Proxy-Authorization``; ``intercept=`` a
``tls.CertificateAuthority`` makes it a TLS-intercepting proxy (its own CA signs a certificate
per host; ``upstream_ca`` is the bundle it verifies origins with), the shape of a Dragonfly
dfdaemon in front of an origin. The proxy alone resolves ``proxy_names.NAMES`` (an origin
named so is reachable only through it). ``requests()`` lists the access-log entries
(``CONNECT 127.0.0.1:443`` or ``GET localhost:8443/path``).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import time
from types import TracebackType

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness import tls

_ROOT = pathlib.Path(__file__).resolve().parents[2]
_ACCESS = re.compile(r"server\.access_log:\d+ - \S+ - (?P<entry>(?:CONNECT|[A-Z]+) \S+)")


class ForwardProxy:
    def __init__(
        self,
        directory: pathlib.Path,
        *,
        basic_auth: str | None = None,
        intercept: tls.CertificateAuthority | None = None,
        upstream_ca: pathlib.Path | None = None,
    ) -> None:
        self.directory = directory
        self.basic_auth = basic_auth
        self.intercept = intercept
        self.upstream_ca = upstream_ca
        self.port = 0
        self.log_path = directory / "proxy.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with_credentials(self) -> str:
        assert self.basic_auth
        return f"http://{self.basic_auth}@127.0.0.1:{self.port}"

    def _command(self, port_file: pathlib.Path) -> list[str]:
        command = [
            sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
            "--port-file", str(port_file), "--log-file", str(self.log_path),
            "--num-workers", "1", "--num-acceptors", "1",
            "--plugins", "tests.harness.proxy_names.ResolveTestNames",
        ]  # fmt: skip
        if self.basic_auth:
            command += ["--basic-auth", self.basic_auth]
        if self.intercept is not None:
            signing = self.directory / "signing.key"
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            signing.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                    serialization.NoEncryption(),
                )
            )
            certs = self.directory / "generated"
            certs.mkdir(exist_ok=True)
            command += [
                "--ca-key-file", str(self.intercept.key_path),
                "--ca-cert-file", str(self.intercept.cert_path),
                "--ca-signing-key-file", str(signing),
                "--ca-cert-dir", str(certs),
            ]  # fmt: skip
            if self.upstream_ca is not None:
                command += ["--ca-file", str(self.upstream_ca)]
        return command

    def __enter__(self) -> ForwardProxy:
        self.directory.mkdir(parents=True, exist_ok=True)
        port_file = self.directory / "proxy.port"
        with (self.directory / "proxy.stderr").open("wb") as stderr:
            self._process = subprocess.Popen(
                self._command(port_file),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "PYTHONPATH": str(_ROOT)},
            )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy.py did not start: {self.stderr()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text().strip())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)

    def stderr(self) -> str:
        path = self.directory / "proxy.stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self) -> list[str]:
        """The access-log entries, e.g. ``CONNECT 127.0.0.1:40000``, ``GET localhost:1/x``."""
        return [m.group("entry") for m in _ACCESS.finditer(self.log())]

    def wait_logged(self, count: int, timeout: float = 10.0) -> list[str]:
        """The entries once at least ``count`` are logged (the log is written per connection
        close, so a test waits a moment after the client finished)."""
        deadline = time.monotonic() + timeout
        while len(self.requests()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.requests()
