"""The TLS contexts of peering: the peer server's (its certificate and key) and a fetching
agent's (the peers' CA). Built at start; blocking (they read PEM files).
"""

from __future__ import annotations

import ssl

__all__ = ["client_context", "server_context"]


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The TLS context of the peer server (blocking: reads the PEM files)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def client_context(ca: str) -> ssl.SSLContext:
    """How a fetching agent checks a peer's certificate: the peers' CA, no hostname (peers
    are addressed by pod IP; holding a certificate of that CA is what makes a peer)."""
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False
    return context
