"""TLS for the fake Kubernetes API: a throw-away CA (``tls.CertificateAuthority``) and a
server certificate for 127.0.0.1 and localhost, made once per test process and shared by
every ``FakeKube`` in it (an RSA key takes a moment to make; the servers only need a CA
that nothing else trusts).

The kubeconfig carries the CA as ``certificate-authority-data`` (as a cluster's kubeconfig
does), so kubectl sends the bearer token (it sends one only over TLS) and kubernetes-asyncio
and Kopf verify the server through the same path they take against a cluster. Nothing here
disables verification.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import pathlib
import shutil
import ssl
import tempfile
import threading

from tests.harness import tls

__all__ = ["ServerCertificate", "server_certificate"]


@dataclasses.dataclass(frozen=True)
class ServerCertificate:
    """The CA (PEM) clients trust and the server's TLS context."""

    ca_pem: bytes
    context: ssl.SSLContext

    @property
    def ca_data(self) -> str:
        """The CA as a kubeconfig's ``certificate-authority-data`` (base64 of the PEM)."""
        return base64.b64encode(self.ca_pem).decode()

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA (for test-side HTTPS calls)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())


_lock = threading.Lock()
_shared: list[ServerCertificate] = []


def server_certificate() -> ServerCertificate:
    """The process's fake-API-server certificate, made on first use."""
    with _lock:
        if not _shared:
            directory = pathlib.Path(tempfile.mkdtemp(prefix="fake-kube-ca-"))
            atexit.register(shutil.rmtree, directory, True)
            authority = tls.CertificateAuthority.create(directory, "fake-kube")
            context = authority.server_context(("127.0.0.1", "localhost"))
            _shared.append(ServerCertificate(authority.cert_path.read_bytes(), context))
        return _shared[0]
