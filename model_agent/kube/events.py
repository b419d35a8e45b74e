"""Kubernetes Events about models on this node: one per state change, deduplicated and
rate-limited, never an error for the caller.

``EventRecorder.model_state(body, state)`` posts a core/v1 Event whose involvedObject is the
BaseModel or ClusterBaseModel, reason ``Downloading``, ``Ready``, ``Failed`` or ``Deleted``,
a message naming the node, ``source.component`` ``model-agent`` and ``reportingInstance`` the
node. Events of a BaseModel live in its namespace; those of a ClusterBaseModel (cluster-scoped)
in ``default``: the API server accepts an event about a cluster-scoped object only there (as
for Node events), so ``kubectl describe clusterbasemodel`` finds them.

N agents report on one object, so every agent limits itself (``EventFilter``, pure):
- dedupe: the same reason and message for the same object within ``dedupe_window`` is
  dropped (a restart that finds a model still Ready says nothing new);
- a token bucket for the whole agent (``rate`` per second, ``burst``) and a smaller one per
  object (a flapping model cannot spend the agent's budget).
Dropped and failed events are counted (``Metrics.event_recorded``) and logged at debug or
warning; ``record`` never raises (except cancellation).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes_asyncio import client

from model_agent import logs, metrics

__all__ = ["STATES", "EventFilter", "EventRecorder", "ModelRef", "TokenBucket"]

logger = logging.getLogger("model_agent.events")

COMPONENT = "model-agent"
#: Where events about cluster-scoped objects must live (API server validation).
CLUSTER_EVENTS_NAMESPACE = "default"
MAX_MESSAGE = 1024

#: state → (event type, message template); ``{name}``, ``{node}``, ``{detail}`` filled in.
STATES: Mapping[str, tuple[str, str]] = {
    "Downloading": ("Normal", "Downloading model {name} on node {node}"),
    "Ready": ("Normal", "Model {name} is ready on node {node}"),
    "Failed": ("Warning", "Model {name} failed on node {node}: {detail}"),
    "Deleted": ("Normal", "Model {name} deleted from node {node}"),
    "AnalysisFailed": (
        "Warning",
        "Model {name} is ready on node {node} but could not be analysed: {detail}",
    ),
}


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; ``take`` spends one if there is one."""

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclasses.dataclass
class _Seen:
    bucket: TokenBucket
    last: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)


class EventFilter:
    """Decides whether an event is posted: ``"post"``, ``"deduplicated"`` or
    ``"rate_limited"``. Pure and synchronous; call ``posted`` after a successful post so the
    dedupe memory only holds events the API server really has."""

    def __init__(
        self,
        *,
        rate: float = 0.2,
        burst: int = 10,
        per_object_rate: float = 1 / 60,
        per_object_burst: int = 3,
        dedupe_window: float = 3600.0,
        max_objects: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._global = TokenBucket(rate=rate, burst=burst, clock=clock)
        self._per_object_rate = per_object_rate
        self._per_object_burst = per_object_burst
        self._dedupe_window = dedupe_window
        self._max_objects = max_objects
        self._objects: collections.OrderedDict[str, _Seen] = collections.OrderedDict()

    def _seen(self, key: str) -> _Seen:
        seen = self._objects.get(key)
        if seen is None:
            seen = _Seen(
                TokenBucket(
                    rate=self._per_object_rate, burst=self._per_object_burst, clock=self._clock
                )
            )
            self._objects[key] = seen
            while len(self._objects) > self._max_objects:
                self._objects.popitem(last=False)
        else:
            self._objects.move_to_end(key)
        return seen

    def decide(self, key: str, reason: str, message: str) -> str:
        seen = self._seen(key)
        stamp = seen.last.get((reason, message))
        if stamp is not None and self._clock() - stamp < self._dedupe_window:
            return "deduplicated"
        if not seen.bucket.take():
            return "rate_limited"
        if not self._global.take():
            return "rate_limited"
        return "post"

    def posted(self, key: str, reason: str, message: str) -> None:
        seen = self._seen(key)
        seen.last.clear()  # only the latest state counts as "the same again"
        seen.last[(reason, message)] = self._clock()


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """The involvedObject of an event: a BaseModel or ClusterBaseModel."""

    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None
    api_version: str = "ome.io/v1beta1"

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ModelRef:
        meta = body.get("metadata") or {}
        return cls(
            kind=str(
                body.get("kind") or ("BaseModel" if meta.get("namespace") else "ClusterBaseModel")
            ),
            name=str(meta.get("name", "")),
            namespace=meta.get("namespace") or None,
            uid=meta.get("uid") or None,
            api_version=str(body.get("apiVersion") or "ome.io/v1beta1"),
        )

    @property
    def key(self) -> str:
        return self.uid or f"{self.kind}/{self.namespace or ''}/{self.name}"


def _clip(message: str) -> str:
    message = logs.redact(message)
    if len(message) <= MAX_MESSAGE:
        return message
    half = (MAX_MESSAGE - 3) // 2
    return f"{message[:half]}...{message[-half:]}"


class EventRecorder:
    """Posts model events for one node."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        node_name: str,
        metrics: metrics.Metrics | None = None,
        event_filter: EventFilter | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._api = client.CoreV1Api(api_client)
        self.node_name = node_name
        self._metrics = metrics
        self._filter = event_filter or EventFilter()
        self._timeout = timeout
        self._pending: set[asyncio.Task[bool]] = set()
        self.results: collections.Counter[str] = collections.Counter()

    def _count(self, reason: str, result: str) -> None:
        self.results[result] += 1
        if self._metrics is not None:
            self._metrics.event_recorded(reason, result)

    async def model_state(
        self, body: Mapping[str, Any], state: str, detail: str | None = None
    ) -> bool:
        """Post the event for ``state`` (a key of ``STATES``) of the model ``body``."""
        event_type, template = STATES[state]
        ref = ModelRef.from_body(body)
        message = template.format(
            name=ref.name, node=self.node_name, detail=detail or "unknown error"
        )
        return await self.record(body, reason=state, message=message, event_type=event_type)

    async def record(
        self,
        body: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        event_type: str = "Normal",
    ) -> bool:
        """Post one event about ``body`` unless deduplicated or rate-limited. True when
        posted; never raises (except cancellation)."""
        try:
            ref = ModelRef.from_body(body)
            message = _clip(message)
            decision = self._filter.decide(ref.key, reason, message)
            if decision != "post":
                self._count(reason, decision)
                logger.debug("event %s", decision, extra={"model": ref.key, "event_reason": reason})
                return False
            namespace = ref.namespace or CLUSTER_EVENTS_NAMESPACE
            stamp = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
            event = client.CoreV1Event(
                api_version="v1",
                kind="Event",
                metadata=client.V1ObjectMeta(generate_name=f"{ref.name}.", namespace=namespace),
                involved_object=client.V1ObjectReference(
                    api_version=ref.api_version,
                    kind=ref.kind,
                    name=ref.name,
                    namespace=ref.namespace,
                    uid=ref.uid,
                ),
                reason=reason,
                message=message,
                type=event_type,
                source=client.V1EventSource(component=COMPONENT, host=self.node_name),
                reporting_component=COMPONENT,
                reporting_instance=self.node_name,
                first_timestamp=stamp,
                last_timestamp=stamp,
                count=1,
            )
            await self._api.create_namespaced_event(
                namespace, event, _request_timeout=self._timeout
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._count(reason, "failed")
            logger.warning(
                "event post failed",
                extra={"event_reason": reason, "error_class": type(exc).__name__},
            )
            return False
        self._filter.posted(ref.key, reason, message)
        self._count(reason, "posted")
        return True

    def model_state_soon(
        self, body: Mapping[str, Any], state: str, detail: str | None = None
    ) -> None:
        """Like ``model_state`` without waiting: the post runs as a task (see ``aclose``)."""
        task = asyncio.get_running_loop().create_task(self.model_state(body, state, detail))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def aclose(self) -> None:
        """Wait for posts started with ``model_state_soon``."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
