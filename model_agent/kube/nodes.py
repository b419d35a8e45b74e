"""The agent's own Node: read it, merge-patch model labels on it, and watch it.

Labels are written with a JSON merge patch of the changed keys only, serialized and coalesced
per label (the newest value wins), retried up to ``--node-label-retry`` times on 409, 429,
5xx and network errors. The watch asks the server for this node only (field selector
``metadata.name=<node>``, also checked here) with ``timeoutSeconds``, so a dead stream is
noticed and the node re-read; every fresh snapshot is handed to the callback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubernetes_asyncio import client

from model_agent import errors, report
from model_agent.kube import client as kube_client

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
        self._desired: dict[str, str | None] = {}
        self._written: dict[str, str | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self) -> dict[str, Any]:
        """The Node as a plain dict. Raises NotFoundError or a retryable error."""
        try:
            node = await _json(await self._core.read_node(self.name, _preload_content=False))
        except Exception as exc:
            raise kube_client.api_error(exc, f"read node {self.name}") from exc
        return node

    @property
    def pending(self) -> dict[str, str | None]:
        return {k: v for k, v in self._desired.items() if self._written.get(k, "") != v}

    def knows(self, key: str) -> bool:
        """Whether this agent set (or is setting) ``key``."""
        return self._written.get(key) is not None or self._desired.get(key) is not None

    async def set_label(self, key: str, value: str | None) -> None:
        """Set (None: remove) one label. Raises the last error when every attempt failed."""
        self._desired[key] = value
        await self._sync(key)

    async def _sync(self, key: str) -> None:
        """Bring one label to its newest wanted value (never an older one)."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            latest = self._desired[key]
            if key in self._written and self._written[key] == latest:
                return
            await self._patch_with_retries(key, latest)
            self._written[key] = latest

    def seed(self, labels: Mapping[str, str]) -> None:
        """Take the model labels the Node already has as written (after a restart)."""
        for key, value in labels.items():
            if report.is_model_label(key):
                self._written[key] = value

    async def reconcile(self, labels: Mapping[str, str]) -> int:
        """Put back every label this agent set that ``labels`` (a fresh snapshot) lacks or
        has with another value; the number rewritten."""
        repaired = 0
        for key, value in list(self._written.items()):
            if value is not None and labels.get(key) != value and self._desired.get(key) == value:
                self._written.pop(key, None)
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
        self, on_node: NodeCallback, *, timeout_seconds: int, stop: asyncio.Event
    ) -> None:
        """Call ``on_node`` with every fresh snapshot of the own Node until ``stop`` is set.
        Each round lists the node (a fresh snapshot even when events were missed), then
        watches from that resourceVersion until the server closes the stream."""
        selector = f"metadata.name={self.name}"
        failures = 0
        while not stop.is_set():
            try:
                listing = await _json(
                    await self._core.list_node(field_selector=selector, _preload_content=False)
                )
                version = (listing.get("metadata") or {}).get("resourceVersion")
                for item in listing.get("items") or []:
                    if (
                        isinstance(item, dict)
                        and (item.get("metadata") or {}).get("name") == self.name
                    ):
                        await on_node(item)
                await self._stream(on_node, selector, version, timeout_seconds, stop)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                error = kube_client.api_error(exc, f"watch node {self.name}")
                logger.warning("node watch restarts after: %s", error)
                delay = min(self._max_delay * 2, self._base_delay * 2 ** min(failures, 8))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass

    async def _stream(
        self,
        on_node: NodeCallback,
        selector: str,
        version: str | None,
        timeout_seconds: float,
        stop: asyncio.Event,
    ) -> None:
        """One watch request, read line by line until the server ends it."""
        response = await self._core.list_node(
            field_selector=selector,
            resource_version=version,
            watch=True,
            timeout_seconds=max(1, int(timeout_seconds)),
            _preload_content=False,
            _request_timeout=max(1, int(timeout_seconds)) + 30,
        )
        _check(response)
        try:
            while not stop.is_set():
                line = await response.content.readline()
                if not line:
                    return
                if len(line) > _MAX_EVENT:
                    raise errors.ServerError("node watch event too large")
                event = json.loads(line)
                kind, raw = event.get("type"), event.get("object")
                if kind == "ERROR":
                    code = raw.get("code") if isinstance(raw, dict) else None
                    raise errors.ServerError(f"node watch error event (code {code})")
                if kind in ("ADDED", "MODIFIED") and isinstance(raw, dict):
                    if (raw.get("metadata") or {}).get("name") == self.name:
                        await on_node(raw)
        finally:
            response.release()


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
