"""Peering for one agent: its token, its registry of what it serves, and a router per pull.

``Peering.load`` reads the token (and the TLS files) the settings name; ``serve`` runs the
peer server and advertises its URL on the node ConfigMap; ``router`` gives a pull its view of
the other agents. ``pipeline.pull`` takes a ``Peering`` (None: peering off, the origin only)
and gives each pull a ``Share``: what the pull serves while it runs, and its router.

Owns the wiring of peers/; the pieces live in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pathlib
import ssl
from collections.abc import AsyncIterator

from model_agent import errors, metrics, settings
from model_agent.download import files
from model_agent.kube import configmap
from model_agent.peers import discovery, holdings, protocol, router, server, tls
from model_agent.storage import base

__all__ = ["Peering", "Share", "load_token"]

log = logging.getLogger("model_agent.peers")


def load_token(path: str) -> str:
    """The peer token in ``path`` (blocking), or ``ConfigError`` naming the file."""
    try:
        token = pathlib.Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(
            f"--peer-token-file {path}: cannot read the peer token: {exc}"
        ) from None
    if len(token) < 16:
        raise errors.ConfigError(
            f"--peer-token-file {path}: the peer token must be at least 16 characters"
        )
    return token


@dataclasses.dataclass
class Peering:
    """What one agent needs to serve its peers and fetch from them."""

    me: str
    token: str
    registry: holdings.Registry
    lister: discovery.Lister
    address: str
    port: int
    server_tls: ssl.SSLContext | None = None
    client_tls: ssl.SSLContext | None = None
    recorder: metrics.Metrics | None = None

    @classmethod
    async def load(
        cls,
        config: settings.Settings,
        *,
        registry: holdings.Registry,
        lister: discovery.Lister,
        recorder: metrics.Metrics | None,
    ) -> Peering:
        assert config.peer_token_file is not None and config.peer_address is not None
        token = await asyncio.to_thread(load_token, config.peer_token_file)
        server_tls = client_tls = None
        if config.peer_tls_cert and config.peer_tls_key and config.peer_tls_ca:
            try:
                server_tls = await asyncio.to_thread(
                    tls.server_context, config.peer_tls_cert, config.peer_tls_key
                )
                client_tls = await asyncio.to_thread(tls.client_context, config.peer_tls_ca)
            except (OSError, ssl.SSLError) as exc:
                raise errors.ConfigError(f"peer TLS files: {exc}") from None
        return cls(
            me=config.require_node_name(),
            token=token,
            registry=registry,
            lister=lister,
            address=config.peer_address,
            port=config.peer_port,
            server_tls=server_tls,
            client_tls=client_tls,
            recorder=recorder,
        )

    @contextlib.asynccontextmanager
    async def serve(self, writer: configmap.ConfigMapWriter) -> AsyncIterator[server.PeerServer]:
        """Run the peer server and advertise its URL on the node ConfigMap."""
        async with server.PeerServer(
            self.registry,
            host=self.address,
            port=self.port,
            token=self.token,
            recorder=self.recorder,
            tls=self.server_tls,
        ) as running:
            url = protocol.address_url(self.address, running.port, tls=self.server_tls is not None)
            await discovery.advertise(writer, url)
            log.info("peering on: serving at %s", url)
            yield running

    def router(self, key: str, revision: str) -> router.Router:
        return router.Router(
            me=self.me,
            key=key,
            revision=revision,
            candidates=lambda: self.lister.candidates(key),
            token=self.token,
            ssl_context=self.client_tls,
            recorder=self.recorder,
        )


class Share:
    """A pull's part in peering: what it serves while it runs, and its router."""

    def __init__(self, peering: Peering, live: holdings.Live, revision: str, key: str) -> None:
        self.peering, self.live, self.revision, self.key = peering, live, revision, key

    def share(self, chosen: list[base.RemoteFile], tracker: files.Tracker) -> None:
        """Serve the planned files with an origin digest as their bytes arrive."""
        identities = {}
        for file in chosen:
            checksum = file.checksum
            identity = protocol.file_identity(file.size, str(checksum) if checksum else None)
            if identity is not None:
                identities[file.path] = (identity, file.size)
        self.live.identities = identities
        self.live.received = lambda: tracker.completed_bytes
        self.live.revision = self.revision

    def follow(self, worker: files.Worker) -> None:
        """Serve what ``worker`` writes: each staged file from its first byte until it is
        placed, then the placed file (no gap between the two)."""
        self.live.active = worker.serving
        self.live.placed = lambda: worker.placed

    def router(self) -> router.Router:
        return self.peering.router(self.key, self.revision)
