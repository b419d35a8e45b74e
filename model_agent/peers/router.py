"""One pull's view of its peers, and the per-chunk choice of where bytes come from.

A ``Router`` lives as long as the transfer phase of one pull. It lists the candidates
(``discovery``) at once, then again after 1, 2, 4 ... up to 60 s; it asks a sample of the
candidates (``MAX_PEERS``), and the owners of chunks it waits for (up to ``MAX_OWNERS``
more), what they hold every ``POLL`` seconds while a piece waits for a holder, else every
``IDLE_POLL`` seconds; and for each piece of a file the engine asks ``decide``
(``plan.decide`` over the peers that hold the same revision and file identity, and the
participants: every node the listing shows ``Updating``, less those polled that stopped
progressing). A polled candidate whose held bytes do not grow for ``STALL`` seconds stops
being a participant, so its chunks move to the others. When the
first listing finds nobody, the router waits ``SETTLE`` seconds and lists again before any
byte moves: nodes that start together then see each other.

A peer is dropped for this pull (``model_agent_peer_rejections_total``) when it refuses the
token, after failed transfers in ``DROP_AFTER`` poll rounds in a row (however many pieces
failed at once; ``unreachable`` or ``error``), or when a
file it contributed to fails verification (``corrupt``: every contributor of that file).
Nothing here is trusted to be right: the engine verifies every file against the origin's
digest, whoever sent the bytes.

Owns the peer view and the choice; the engine moves the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp

from model_agent import errors, metrics, report
from model_agent.peers import discovery, plan, protocol
from model_agent.storage import base

__all__ = ["Router"]

log = logging.getLogger("model_agent.peers")

POLL = 0.5
#: How often peers are asked while no piece waits for them.
IDLE_POLL = 2.0
STALL = 15.0
SETTLE = 2.0
MAX_PEERS = 32
#: Files smaller than this come from the origin: waiting a poll round for a peer would cost
#: more than the bytes (a model of a thousand small files must not wait a thousand rounds).
SMALL_FILE = 1024**2
#: Owners of chunks this node waits for, polled beyond ``MAX_PEERS``.
MAX_OWNERS = 32
DROP_AFTER = 3
_DISCOVERY_MAX = 60.0
_SUSPEND = 1.0
#: The largest holdings answer read from a peer (a 50,000-file model fits).
_MAX_HOLDING_BYTES = 16 * 1024**2

Candidates = Callable[[], Awaitable[list[discovery.Candidate]]]


@dataclasses.dataclass
class _View:
    candidate: discovery.Candidate
    holding: protocol.Holding | None = None
    received: int = -1
    progressed_at: float = 0.0
    polled: bool = False  # a first answer (or failure) arrived
    failures: int = 0
    failed_round: int = -1
    suspended_until: float = 0.0
    dropped: bool = False


class Router:
    """The peers of one pull (``async with``); ``decide`` per piece, ``blame`` per bad file."""

    def __init__(
        self,
        *,
        me: str,
        key: str,
        revision: str,
        candidates: Candidates,
        token: str,
        ssl_context: ssl.SSLContext | None = None,
        recorder: metrics.Metrics | None = None,
    ) -> None:
        self.me, self.key, self.revision = me, key, revision
        self._candidates = candidates
        self._token = token
        self.ssl_context = ssl_context
        self._metrics = recorder
        self.views: dict[str, _View] = {}
        #: Every candidate of the latest listing (polled or not), by node.
        self.listed: dict[str, discovery.Candidate] = {}
        self._contributors: dict[str, set[str]] = {}
        self._changed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._listing_failed = False
        self._waiting = 0  # pieces waiting for a holder right now
        self._round = 0  # poll rounds so far: failures count once per round

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        self._session = aiohttp.ClientSession(
            # Without the peers' CA, the system's: an https peer is never taken unchecked.
            connector=aiohttp.TCPConnector(
                ssl=self.ssl_context if self.ssl_context is not None else True, limit=16
            ),
            timeout=aiohttp.ClientTimeout(total=5),
            headers={"User-Agent": "model-agent"},
        )
        try:
            await self._discover()
            if not self.views:
                await asyncio.sleep(SETTLE)
                await self._discover()
            await self._poll_all()
        except BaseException:
            await self._session.close()
            raise
        self._task = asyncio.create_task(self._watch(), name=f"peers {self.key}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        if self._session is not None:
            await self._session.close()

    async def _watch(self) -> None:
        interval = 1.0
        next_listing = time.monotonic() + interval
        polled = time.monotonic()
        while True:
            await asyncio.sleep(POLL)
            if not self._waiting and time.monotonic() - polled < IDLE_POLL:
                continue
            polled = time.monotonic()
            try:
                if time.monotonic() >= next_listing:
                    await self._discover()
                    interval = min(_DISCOVERY_MAX, interval * 2)
                    next_listing = time.monotonic() + interval
                await self._poll_all()
            except Exception:  # a bug here must not stop the view: pieces wait on it
                log.exception("peer view of %s: a round failed", self.key)

    async def _discover(self) -> None:
        try:
            found = await self._candidates()
        except errors.AgentError as exc:
            if not self._listing_failed:
                log.warning(
                    "cannot list peers for %s (origin only until it works): %s", self.key, exc
                )
            self._listing_failed = True
            return
        self._listing_failed = False
        self.listed = {c.node: c for c in found}
        fresh = [c for c in found if c.node not in self.views]
        room = MAX_PEERS - len(self.views)
        for candidate in random.sample(fresh, min(len(fresh), max(0, room))):
            self.views[candidate.node] = _View(candidate)
        for candidate in found:
            if (view := self.views.get(candidate.node)) is not None:
                view.candidate = candidate

    async def _poll_all(self) -> None:
        views = [v for v in self.views.values() if not v.dropped]
        if views:
            await asyncio.gather(*(self._poll(v) for v in views))
        self._round += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def _poll(self, view: _View) -> None:
        assert self._session is not None
        url = protocol.model_url(view.candidate.url, self.key)
        now = time.monotonic()
        try:
            await self._ask(view, url, now)
        finally:
            view.polled = True

    async def _ask(self, view: _View, url: str, now: float) -> None:
        assert self._session is not None
        try:
            async with self._session.get(url, headers=self._auth()) as response:
                if response.status == 401:
                    self._drop(view, "error", "it refused this agent's peer token")
                    return
                if response.status != 200:
                    view.holding = None
                    return
                body = await response.content.read(_MAX_HOLDING_BYTES + 1)
                if len(body) > _MAX_HOLDING_BYTES:
                    raise ValueError("holdings answer too large")
                holding = protocol.parse_holding(json.loads(body))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            view.holding = None
            return
        if (
            view.holding is None
            or holding.received > view.received
            or (holding.state != view.holding.state)
        ):
            view.progressed_at = now
        view.received = max(view.received, holding.received)
        view.holding = holding

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    # --- the choice ----------------------------------------------------------------------

    @staticmethod
    def identity(file: base.RemoteFile) -> str | None:
        checksum = file.checksum
        return protocol.file_identity(file.size, str(checksum) if checksum else None)

    def shares(self, file: base.RemoteFile) -> bool:
        """Whether ``file`` may come from peers: the origin gave a digest (so a peer's bytes
        can be proven right) and it is not small."""
        return self.identity(file) is not None and file.size >= SMALL_FILE

    def decide(self, file: base.RemoteFile, position: int, end: int) -> plan.Decision:
        """Where bytes ``[position, end)`` of ``file`` (within one grid chunk) come from."""
        identity = self.identity(file)
        if identity is None or not self.shares(file):
            return plan.Decision("origin", end)
        holders = self._holders(file.path, identity)
        known, unpolled = self._participants()
        chunk = f"{file.path}\0{identity}\0{position // plan.CHUNK}"
        decision = plan.decide(
            me=self.me,
            chunk_key=chunk,
            position=position,
            end=end,
            holders=holders,
            participants=known | unpolled,
        )
        if decision.kind == "wait":
            owner = plan.owner(chunk, {self.me, *known, *unpolled})
            if owner in unpolled and not self._poll_owner(owner):
                # An owner this node cannot watch could stall unseen: leave it out.
                decision = plan.decide(
                    me=self.me,
                    chunk_key=chunk,
                    position=position,
                    end=end,
                    holders=holders,
                    participants=known,
                )
        return decision

    def _holders(self, path: str, identity: str) -> dict[str, tuple[tuple[int, int], ...]]:
        now = time.monotonic()
        holders = {}
        for name, view in self.views.items():
            holding = view.holding
            if view.dropped or holding is None or now < view.suspended_until:
                continue
            held = holding.files.get(path) if holding.revision == self.revision else None
            if held is not None and held.identity == identity:
                holders[name] = held.ranges
        return holders

    def _participants(self) -> tuple[set[str], set[str]]:
        """The other nodes downloading this revision: those polled that still progress (or
        not answered yet), and those listed ``Updating`` but not polled. Every node computes
        chunk owners over the whole listing, so owners agree however the polled sets differ."""
        now = time.monotonic()
        known: set[str] = set()
        for name, view in self.views.items():
            holding = view.holding
            if view.dropped:
                continue
            if not view.polled:
                if view.candidate.status == report.UPDATING:
                    known.add(name)
            elif (
                holding is not None
                and holding.state != "ready"
                and holding.revision in ("", self.revision)
                and now - view.progressed_at < STALL
            ):
                known.add(name)
        unpolled = {
            name
            for name, candidate in self.listed.items()
            if name not in self.views and candidate.status == report.UPDATING
        }
        return known, unpolled

    def _poll_owner(self, node: str) -> bool:
        """Watch ``node`` (the owner of a chunk this node waits for) from the next round;
        False when ``MAX_OWNERS`` owners beyond the sampled peers are watched already."""
        if len(self.views) >= MAX_PEERS + MAX_OWNERS:
            return False
        self.views[node] = _View(self.listed[node])
        return True

    async def changed(self) -> None:
        """Return after the next poll round (or ``2 * POLL`` seconds)."""
        self._waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=2 * POLL)
        finally:
            self._waiting -= 1

    def request(self, file: base.RemoteFile, source: str, start: int, end: int) -> base.HTTPRequest:
        """The GET of bytes ``[start, end)`` of ``file`` from peer ``source``."""
        url = protocol.file_url(self.views[source].candidate.url, self.key, file.path)
        headers = {
            **self._auth(),
            "Range": base.range_header(start, end),
            protocol.REVISION_HEADER: self.revision,
            protocol.IDENTITY_HEADER: self.identity(file) or "",
        }
        return base.HTTPRequest(
            url=url, headers=headers, auth_hosts=frozenset({urlsplit(url).netloc.lower()})
        )

    def check(self, file: base.RemoteFile) -> Callable[[object], None]:
        """The header check of a peer's answer: the file identity it serves must be ours."""
        identity = self.identity(file)

        def check(headers: object) -> None:
            served = getattr(headers, "get", lambda _key: None)(protocol.IDENTITY_HEADER)
            if served != identity:
                raise errors.ServerError(f"peer served another identity of {file.path}")

        return check

    # --- outcomes ------------------------------------------------------------------------

    def succeeded(self, source: str) -> None:
        if (view := self.views.get(source)) is not None:
            view.failures = 0

    def contributed(self, path: str, source: str) -> None:
        self._contributors.setdefault(path, set()).add(source)

    def failed(self, source: str, exc: errors.AgentError) -> None:
        """A transfer from ``source`` failed: skip it for a second; drop it after failures in
        ``DROP_AFTER`` poll rounds in a row, or at once when it refuses the token."""
        view = self.views.get(source)
        if view is None or view.dropped:
            return
        view.suspended_until = time.monotonic() + _SUSPEND
        if view.failed_round != self._round or isinstance(exc, errors.AuthError):
            # Parallel pieces that fail on the same answer of the peer count once.
            view.failed_round = self._round
            view.failures += 1
        log.info("peer %s failed for %s: %s", source, self.key, exc)
        if isinstance(exc, errors.AuthError):
            self._drop(view, "error", "it refused this agent's peer token")
        elif view.failures >= DROP_AFTER:
            unreachable = isinstance(exc, errors.NetworkError | errors.StalledError)
            self._drop(view, "unreachable" if unreachable else "error", str(exc))

    def blame(self, path: str) -> bool:
        """``path`` failed verification: drop every peer that sent bytes of it (the retry then
        comes from the other peers or the origin). False when no peer sent any."""
        sources = self._contributors.pop(path, set())
        for source in sources:
            if (view := self.views.get(source)) is not None and not view.dropped:
                self._drop(view, "corrupt", f"{path} failed verification with its bytes")
        return bool(sources)

    def _drop(self, view: _View, reason: str, detail: str) -> None:
        view.dropped = True
        log.warning(
            "stopped fetching %s from peer %s (%s): %s",
            self.key,
            view.candidate.node,
            reason,
            detail,
            extra={"model": self.key},
        )
        if self._metrics is not None:
            self._metrics.peer_rejected(reason)
