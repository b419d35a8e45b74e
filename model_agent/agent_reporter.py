"""What the agent tells the cluster about one model, and what it remembers about it.

``Reporter`` writes a model's ConfigMap entry and then its Node label (the label is what
schedules inference pods), logs one line per state change, posts a Kubernetes Event when the
entry changed, throttles nothing itself (the agent throttles progress), and keeps the
ownership records (``agent_disk``) in memory and on disk. ``holds`` says whether anything of
a model may be on this node, so a model that was never here costs no API write.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from model_agent import agent_disk as disk
from model_agent import report, spec
from model_agent.kube import configmap, events, nodes

__all__ = ["Reporter"]

logger = logging.getLogger("model_agent.agent")

_EVENT_REASONS = {report.READY: "Ready", report.UPDATING: "Downloading", report.FAILED: "Failed"}


class Reporter:
    """Entries, labels, events and ownership records of this node's models."""

    def __init__(
        self,
        *,
        cm: configmap.ConfigMapWriter,
        node: nodes.NodeClient,
        state_dir: pathlib.Path,
        recorder_events: events.EventRecorder | None = None,
        node_labels: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self.cm, self.node, self.state_dir = cm, node, state_dir
        self.events = recorder_events
        #: The latest snapshot of the own Node's labels.
        self.node_labels = node_labels
        #: Ownership records by ConfigMap key (mirrors ``<state_dir>/agent``).
        self.records: dict[str, disk.Record] = {}
        #: Last status reported per ConfigMap key (Ready / Updating / Failed).
        self.status: dict[str, str] = {}

    # --- records -------------------------------------------------------------------------

    async def load_records(self) -> None:
        found = await asyncio.to_thread(disk.load_records, self.state_dir)
        self.records = {r.config_key: r for r in found}

    async def _keep_record(self, record: disk.Record) -> None:
        if self.records.get(record.config_key) != record:
            await asyncio.to_thread(disk.save_record, self.state_dir, record)
            self.records[record.config_key] = record

    async def _drop_record(self, config_key: str) -> None:
        if self.records.pop(config_key, None) is not None:
            await asyncio.to_thread(disk.delete_record, self.state_dir, config_key)

    def holds(self, ref: spec.ModelRef, node_labels: Mapping[str, str]) -> bool:
        """Whether anything of the model may be on this node (entry, label, record)."""
        return (
            ref.configmap_key in self.status
            or ref.configmap_key in self.records
            or self.cm.knows(ref.configmap_key)
            or self.node.knows(ref.label_key)
            or ref.label_key in node_labels
        )

    # --- reporting -----------------------------------------------------------------------

    async def publish(
        self,
        ref: spec.ModelRef,
        status: str,
        *,
        config: Mapping[str, Any] | None = None,
        progress: report.Progress | None = None,
        reason: str | None = None,
        message: str | None = None,
        label: bool = True,
    ) -> None:
        """Write the entry, then the label (the label is what schedules inference pods)."""
        value = report.entry(
            ref.name, status, config=config, progress=progress, reason=reason, message=message
        )
        if self.status.get(ref.configmap_key) != status:
            log = logger.error if status == report.FAILED else logger.info
            log(
                "model %s %s%s",
                ref.configmap_key,
                status,
                f": {reason}: {message}" if reason else "",
                extra={"model": ref.configmap_key},
            )
        self.status[ref.configmap_key] = status
        changed = await self.cm.write(ref.configmap_key, value)
        if label:
            await self.node.set_label(ref.label_key, status)
        if changed:
            self._event(ref, _EVENT_REASONS[status], message)

    def _event(self, ref: spec.ModelRef, state: str, detail: str | None = None) -> None:
        """A Kubernetes Event about the model (deduplicated, rate-limited, never raises)."""
        if self.events is None:
            return
        body = {
            "apiVersion": "ome.io/v1beta1",
            "kind": ref.kind,
            "metadata": {"name": ref.name, "namespace": ref.namespace or None, "uid": ref.uid},
        }
        self.events.model_state_soon(body, state, detail)

    async def progress(self, ref: spec.ModelRef, progress: report.Progress) -> None:
        if self.status.get(ref.configmap_key) == report.UPDATING:
            value = report.entry(ref.name, report.UPDATING, progress=progress)
            await self.cm.write(ref.configmap_key, value)
