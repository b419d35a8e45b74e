"""The per-node ConfigMap: created with OME's labels when missing, one key written at a time.

Each model's entry is written with a JSON merge patch of its own key only, so another writer's
keys in the same ConfigMap are never overwritten with a stale copy. Writes for one key are
serialized and coalesced (the latest value wins, an older one never lands after a newer one);
409s, 429s, 5xx and network errors are retried with backoff; a deleted ConfigMap is recreated
with its labels, annotations and every entry this agent owns. Values that could not be written
stay pending and are written again by ``flush``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from model_agent import errors, metrics, report
from model_agent.kube import client as kube_client
from model_agent.kube import keyed

__all__ = ["ConfigMapWriter"]

logger = logging.getLogger("model_agent.configmap")
_MERGE = "application/merge-patch+json"


class ConfigMapWriter:
    """Writes this node's model entries; ``owned`` is what it last wrote successfully."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        node_name: str,
        recorder: metrics.Metrics | None = None,
        attempts: int = 8,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
    ) -> None:
        self._core: Any = client.CoreV1Api(api)  # the generated stubs lack _content_type
        self.namespace = namespace
        self.name = node_name
        self._metrics = recorder
        self._attempts = max(1, attempts)
        self._base_delay = base_delay
        self._max_delay = max_delay
        self.owned: dict[str, str] = {}
        self.keys = keyed.KeyedWrites()
        #: Annotations this agent adds to OME's (the peer address): kept on a recreate.
        self.annotations: dict[str, str] = {}

    # --- reading -------------------------------------------------------------------------

    async def read(self) -> dict[str, str] | None:
        """The ConfigMap's data, or None when it does not exist."""
        try:
            found = await self._core.read_namespaced_config_map(self.name, self.namespace)
        except client.ApiException as exc:
            if kube_client.is_not_found(exc):
                return None
            what = f"read configmap {self.namespace}/{self.name}"
            raise kube_client.api_error(exc, what) from exc
        return dict(found.data or {})

    async def ensure(self) -> dict[str, str]:
        """Create the ConfigMap (with OME's labels and annotations) when missing; its data."""
        for attempt in range(self._attempts):
            try:
                data = await self.read()
                if data is not None:
                    return data
                if await self._create({}):
                    return {}
                continue  # someone else created it: read it
            except errors.AgentError as exc:
                if not exc.retryable or attempt + 1 >= self._attempts:
                    raise
            await self._backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def seed(self, data: Mapping[str, str]) -> None:
        """Take the model entries already in the ConfigMap as written by this agent (after a
        restart): writing the same value again then costs no request."""
        for key, value in data.items():
            if report.is_model_configmap_key(key):
                self.keys.written[key] = value
                self.owned[key] = value

    # --- writing -------------------------------------------------------------------------

    @property
    def pending(self) -> dict[str, str | None]:
        """Values accepted by ``write`` that have not reached the API server yet."""
        return self.keys.pending

    def knows(self, key: str) -> bool:
        """Whether this agent wrote (or is writing) a value for ``key``."""
        return self.keys.knows(key)

    async def write(self, key: str, value: str | None) -> bool:
        """Set (or with None remove) one entry; False when it already had that value.
        Raises a RetryableError when every attempt failed; the value then stays pending
        for ``flush``."""
        self.keys.desired[key] = value
        return await self._sync(key)

    async def _sync(self, key: str) -> bool:
        """Bring one entry to its newest wanted value (never an older one)."""
        async with self.keys.turn(key):
            latest = self.keys.desired[key]
            if self.keys.up_to_date(key):
                return False
            await self._write_with_retries(key, latest)
            self.keys.written[key] = latest
            if latest is None:
                self.owned.pop(key, None)
            else:
                self.owned[key] = latest
            return True

    async def flush(self) -> int:
        """Write every pending value again; the number still pending afterwards."""
        for key in list(self.pending):
            try:
                await self._sync(key)
            except errors.AgentError as exc:
                logger.warning("configmap update of %s still failing: %s", key, exc)
        return len(self.pending)

    async def reconcile(self) -> int:
        """Put back every owned entry that is missing or was changed by someone else (and the
        whole ConfigMap if it was deleted); the number of entries rewritten."""
        data = await self.read()
        if data is None:
            if not self.owned:
                return 0
            await self._create(dict(self.owned))
            logger.info(
                "configmap update: recreated %s with %d entries", self.name, len(self.owned)
            )
            return len(self.owned)
        repaired = 0
        for key, value in list(self.owned.items()):
            if data.get(key) != value and self.keys.desired.get(key, value) == value:
                self.keys.desired[key] = value
                self.keys.forget(key)
                await self._sync(key)
                repaired += 1
        return repaired

    async def _write_with_retries(self, key: str, value: str | None) -> None:
        operation = "delete" if value is None else "update"
        for attempt in range(self._attempts):
            try:
                await self._patch(key, value)
                self._record(operation, "success")
                logger.info(
                    "configmap update %s %s", operation, key, extra={"configmap": self.name}
                )
                return
            except client.ApiException as exc:
                if kube_client.is_not_found(exc):
                    if value is None:
                        self._record(operation, "success")
                        return  # no ConfigMap, no key: already as wanted
                    try:
                        if await self._recreate(key, value):
                            return
                        failure: errors.AgentError = errors.ServerError("configmap raced")
                    except errors.AgentError as created:
                        failure = created
                else:
                    failure = kube_client.api_error(exc, f"configmap update of {key}")
            except Exception as exc:  # network errors, timeouts
                failure = kube_client.api_error(exc, f"configmap update of {key}")
            self._record(operation, "failure")
            if not failure.retryable or attempt + 1 >= self._attempts:
                logger.error("configmap update of %s Failed: %s", key, failure)
                raise failure
            await self._backoff(attempt)

    async def _patch(self, key: str, value: str | None) -> None:
        await self._core.patch_namespaced_config_map(
            self.name,
            self.namespace,
            report.configmap_patch(key, value),
            _content_type=_MERGE,
        )

    async def _recreate(self, key: str, value: str) -> bool:
        """Create the missing ConfigMap with every owned entry plus this one. False when
        someone else created it first (the caller patches again)."""
        data = {**self.owned, key: value}
        if not await self._create(data):
            return False
        logger.info("configmap update: recreated %s with %d entries", self.name, len(data))
        return True

    async def _create(self, data: Mapping[str, str]) -> bool:
        """Create the ConfigMap; False when it already exists (409)."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": report.configmap_labels(self.name),
                "annotations": {**report.configmap_annotations(self.name), **self.annotations},
            },
            "data": dict(data),
        }
        try:
            await self._core.create_namespaced_config_map(self.namespace, body)
        except client.ApiException as exc:
            self._record("create", "failure")
            if kube_client.is_conflict(exc):
                return False
            raise kube_client.api_error(exc, f"configmap {self.name} create") from exc
        self._record("create", "success")
        return True

    async def annotate(self, annotations: Mapping[str, str]) -> None:
        """Set annotations on the ConfigMap (merge patch; created first when missing), and
        keep them on every later recreate."""
        self.annotations.update(annotations)
        await self.ensure()
        body = {"metadata": {"annotations": dict(annotations)}}
        for attempt in range(self._attempts):
            try:
                await self._core.patch_namespaced_config_map(
                    self.name, self.namespace, body, _content_type=_MERGE
                )
                self._record("patch", "success")
                return
            except Exception as exc:  # API, network and timeout errors alike
                self._record("patch", "failure")
                error = kube_client.api_error(exc, f"annotate configmap {self.name}")
                if not error.retryable or attempt + 1 >= self._attempts:
                    raise error from exc
            await self._backoff(attempt)

    async def _backoff(self, attempt: int) -> None:
        delay = min(self._max_delay, self._base_delay * 2**attempt)
        await asyncio.sleep(delay * (0.5 + random.random() / 2))

    def _record(self, operation: str, result: str) -> None:
        if self._metrics is not None:
            self._metrics.configmap_operation(operation, result)
