"""The agent's own Node: read it, merge-patch model labels on it, and watch it.

Labels are written with a JSON merge patch of the changed keys only, serialized and coalesced
per label (the newest value wins), retried up to ``--node-label-retry`` times on 409, 429,
5xx and network errors, with jittered backoff. Per-label state is dropped once a label's
removal is written. The watch asks the server for this node only (field selector
``metadata.name=<node>``, also checked here) with ``timeoutSeconds`` and bookmarks, resumes
from the last resourceVersion it saw, and relists only on 410 Gone (see ``watch``); every
fresh snapshot is handed to the callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubernetes_asyncio import client

from model_agent import errors, pacing, report
from model_agent.kube import client as kube_client
from model_agent.kube import keyed

__all__ = ["NodeClient"]

logger = logging.getLogger("model_agent.nodes")
_MERGE = "application/merge-patch+json"
_MAX_EVENT = 4 * 1024 * 1024

NodeCallback = Callable[[dict[str, Any]], Awaitable[None]]


class NodeClient:
    """Reads, labels and watches one Node."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        node_name: str,
        retries: int = 5,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
    ) -> None:
        self._api = api
        self._core: Any = client.CoreV1Api(api)
        self.name = node_name
        self._attempts = retries + 1
        self._base_delay = base_delay
        self._max_delay = max_delay
        self.keys = keyed.KeyedWrites()
        self._open, self._open_changed = False, time.monotonic()
        self._last_version: str | None = None
        #: How many times the node was listed by the watch (tests and the simulation).
        self.relists = 0

    async def get(self) -> dict[str, Any]:
        """The Node as a plain dict. Raises NotFoundError or a retryable error."""
        try:
            node = await _json(await self._core.read_node(self.name, _preload_content=False))
        except Exception as exc:
            raise kube_client.api_error(exc, f"read node {self.name}") from exc
        seen = (node.get("metadata") or {}).get("resourceVersion")
        self._last_version = str(seen) if seen else self._last_version
        return node

    @property
    def pending(self) -> dict[str, str | None]:
        return self.keys.pending

    def knows(self, key: str) -> bool:
        """Whether this agent set (or is setting) ``key``."""
        return self.keys.knows(key)

    async def set_label(self, key: str, value: str | None) -> None:
        """Set (None: remove) one label. Raises the last error when every attempt failed."""
        self.keys.desired[key] = value
        await self._sync(key)

    async def _sync(self, key: str) -> None:
        """Bring one label to its newest wanted value (never an older one)."""
        async with self.keys.turn(key):
            latest = self.keys.desired[key]
            if self.keys.up_to_date(key):
                return
            await self._patch_with_retries(key, latest)
            self.keys.written[key] = latest

    def seed(self, labels: Mapping[str, str]) -> None:
        """Take the model labels the Node already has as written (after a restart)."""
        for key, value in labels.items():
            if report.is_model_label(key):
                self.keys.written[key] = value

    async def reconcile(self, labels: Mapping[str, str]) -> int:
        """Put back every label this agent set that ``labels`` (a fresh snapshot) lacks or
        has with another value; the number rewritten."""
        repaired = 0
        for key, value in list(self.keys.written.items()):
            if (
                value is not None
                and labels.get(key) != value
                and self.keys.desired.get(key) == value
            ):
                self.keys.forget(key)
                await self._sync(key)
                repaired += 1
        return repaired

    async def flush(self) -> int:
        for key in list(self.pending):
            try:
                await self._sync(key)
            except errors.AgentError as exc:
                logger.warning("node label %s still failing: %s", key, exc)
        return len(self.pending)

    async def _patch_with_retries(self, key: str, value: str | None) -> None:
        for attempt in range(self._attempts):
            try:
                response = await self._core.patch_node(
                    self.name,
                    report.node_label_patch({key: value}),
                    _content_type=_MERGE,
                    _preload_content=False,
                )
                _check(response)
                response.release()
                logger.info("node label %s=%s on %s", key, value, self.name)
                return
            except Exception as exc:
                failure = kube_client.api_error(exc, f"node label {key} on {self.name}")
            if not failure.retryable or attempt + 1 >= self._attempts:
                logger.error("node label %s Failed: %s", key, failure)
                raise failure
            delay = min(self._max_delay, self._base_delay * 2**attempt)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    async def watch(
        self,
        on_node: NodeCallback,
        *,
        timeout_seconds: int,
        stop: asyncio.Event,
        window: float = 30.0,
        since: str | None = None,
    ) -> None:
        """Call ``on_node`` with every fresh snapshot of the own Node until ``stop`` is set.

        Watches from ``since`` (the resourceVersion of a snapshot the caller already has),
        else lists first. A stream the server ends after ``timeout_seconds`` is resumed at
        once from the last resourceVersion seen (events and bookmarks): no relist. A stream
        lost early (a dropped connection, an API server restart) is resumed after a random
        delay within ``window``; only a 410 Gone (the history is gone) relists, also after
        such a delay, asking for a state not older than the last one seen, which the API
        server answers from its watch cache."""
        selector = f"metadata.name={self.name}"
        version, failures, delay = since, 0, 0.0
        while not stop.is_set():
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    return
            try:
                if version is None:
                    version = await self._relist(on_node, selector)
                began = time.monotonic()
                version = await self._stream(on_node, selector, version, timeout_seconds, stop)
                failures = 0
                lasted = time.monotonic() - began
                delay = 0.0 if lasted >= 0.9 * timeout_seconds else pacing.spread(window)
            except asyncio.CancelledError:
                raise
            except _Expired:
                logger.info("node watch history expired (410): relisting the node")
                # a resume that already waited its random turn relists at once
                version, failures = None, 0
                delay = 0.0 if delay > 0 else pacing.spread(window)
            except Exception as exc:
                failures += 1
                error = kube_client.api_error(exc, f"watch node {self.name}")
                logger.warning("node watch restarts after: %s", error)
                retry = min(max(window, self._max_delay), self._base_delay * 2**failures)
                delay = pacing.spread(window) if failures == 1 else pacing.jittered(retry)
            finally:
                self._set_open(False)

    @property
    def watch_state(self) -> tuple[bool, float]:
        """(whether the node watch stream is open now, monotonic time it last changed)."""
        return self._open, self._open_changed

    def _set_open(self, value: bool) -> None:
        if value != self._open:
            self._open, self._open_changed = value, time.monotonic()

    async def _relist(self, on_node: NodeCallback, selector: str) -> str | None:
        """List the own Node (not older than the last version seen: cache-served)."""
        self.relists += 1
        since = self._last_version
        listing = await _json(
            await self._core.list_node(
                field_selector=selector,
                resource_version=since or "0",
                resource_version_match="NotOlderThan" if since else None,
                _preload_content=False,
            )
        )
        version = (listing.get("metadata") or {}).get("resourceVersion")
        for item in listing.get("items") or []:
            if isinstance(item, dict) and (item.get("metadata") or {}).get("name") == self.name:
                await on_node(item)
        return str(version) if version else None

    async def _stream(
        self,
        on_node: NodeCallback,
        selector: str,
        version: str | None,
        timeout_seconds: float,
        stop: asyncio.Event,
    ) -> str | None:
        """One watch request, read line by line until the server ends it; the last
        resourceVersion seen. Raises ``_Expired`` on 410 Gone."""
        try:
            response = await self._core.list_node(
                field_selector=selector,
                resource_version=version,
                allow_watch_bookmarks=True,
                watch=True,
                timeout_seconds=max(1, int(timeout_seconds)),
                _preload_content=False,
                _request_timeout=max(1, int(timeout_seconds)) + 30,
            )
            _check(response)
        except client.ApiException as exc:
            if exc.status == 410:
                raise _Expired() from exc
            raise
        self._set_open(True)
        try:
            while not stop.is_set():
                line = await response.content.readline()
                if not line:
                    return version
                if len(line) > _MAX_EVENT:
                    raise errors.ServerError("node watch event too large")
                event = json.loads(line)
                kind, raw = event.get("type"), event.get("object")
                if kind == "ERROR":
                    code = raw.get("code") if isinstance(raw, dict) else None
                    if code == 410:
                        raise _Expired()
                    raise errors.ServerError(f"node watch error event (code {code})")
                if not isinstance(raw, dict):
                    continue
                seen = (raw.get("metadata") or {}).get("resourceVersion")
                if seen:
                    version = self._last_version = str(seen)
                if kind in ("ADDED", "MODIFIED") and raw["metadata"].get("name") == self.name:
                    await on_node(raw)
            return version
        finally:
            response.release()


class _Expired(Exception):
    """The watch cannot resume: its resourceVersion is older than the kept history."""


async def _json(response: Any) -> dict[str, Any]:
    """The JSON object of a raw (``_preload_content=False``) response, released after."""
    _check(response)
    try:
        value = json.loads(await response.read())
    finally:
        response.release()
    if not isinstance(value, dict):
        raise errors.ServerError("the API server answered with something that is not an object")
    return value


def _check(response: Any) -> None:
    """Raw responses do not raise on error statuses: raise ApiException as preloaded ones do."""
    status = int(getattr(response, "status", 200))
    if status >= 300:
        response.release()
        raise client.ApiException(status=status, reason=str(getattr(response, "reason", "")))
