"""Peering in the running agent: load the token, serve this node's models, advertise.

``start`` (called once the node ConfigMap exists) returns the ``Peering`` the agent's pulls
use, or None when ``--peer-port`` is 0; the peer server runs inside ``stack`` until the agent
stops. A placed model is served from the destination its ownership record names, through its
completion manifest (so from the moment the manifest is written, before Ready is reported;
never a file the manifest does not list).
"""

from __future__ import annotations

import contextlib
import logging
import pathlib

from model_agent import agent_work, errors, metrics, settings
from model_agent.kube import configmap
from model_agent.peers import discovery, holdings
from model_agent.peers import service as peer_service

__all__ = ["start"]

logger = logging.getLogger("model_agent.agent")


def _placed(work: agent_work.Work) -> holdings.Placed:
    def lookup(key: str) -> pathlib.Path | None:
        record = work.records.get(key)
        return pathlib.Path(record.path) if record is not None else None

    return lookup


async def start(
    *,
    config: settings.Settings,
    work: agent_work.Work,
    cm: configmap.ConfigMapWriter,
    state_dir: pathlib.Path,
    recorder: metrics.Metrics | None,
    stack: contextlib.AsyncExitStack,
) -> peer_service.Peering | None:
    if not config.peer_port:
        return None
    registry = holdings.Registry(state_dir=state_dir, placed=_placed(work))
    lister = discovery.Lister(work.api, namespace=config.namespace, node_name=cm.name)
    peering = await peer_service.Peering.load(
        config, registry=registry, lister=lister, recorder=recorder
    )
    try:
        await stack.enter_async_context(peering.serve(cm))
    except OSError as exc:
        raise errors.ConfigError(
            f"cannot serve peers on --peer-address {config.peer_address} "
            f"--peer-port {config.peer_port}: {exc}"
        ) from None
    return peering
