"""The one place that builds a kubernetes-asyncio ``ApiClient``: in-cluster service-account
credentials when running in a pod, else the kubeconfig named by ``$KUBECONFIG`` (or
``~/.kube/config``). Also maps API exceptions onto the agent's error hierarchy."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import aiohttp
from kubernetes_asyncio import client, config

from model_agent import errors
from model_agent.egress import policy

__all__ = [
    "api_client_for",
    "api_error",
    "is_conflict",
    "is_not_found",
    "make_api_client",
    "status_of",
]

#: Statuses worth retrying: conflicts, throttling, server-side trouble.
RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})


async def make_api_client(environ: Mapping[str, str] | None = None) -> client.ApiClient:
    """An ApiClient for the cluster the agent runs in (or the one KUBECONFIG points at)."""
    env = os.environ if environ is None else environ
    configuration = client.Configuration()
    if env.get("KUBERNETES_SERVICE_HOST") and not env.get("KUBECONFIG"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        try:
            await config.load_kube_config(
                config_file=env.get("KUBECONFIG"), client_configuration=configuration
            )
        except (config.ConfigException, OSError) as exc:
            raise errors.ConfigError(
                f"no Kubernetes credentials: not in a pod and no usable kubeconfig ({exc})"
            ) from None
    return api_client_for(configuration, env)


def api_client_for(
    configuration: client.Configuration, environ: Mapping[str, str]
) -> client.ApiClient:
    """An ApiClient for a loaded configuration, with the agent's proxy rules."""
    # HTTPS_PROXY/NO_PROXY as the rest of the agent reads them (curl's and Go's rules, CIDR and
    # host:port entries included), not aiohttp's own reading of them (suffixes only, no ports).
    configuration.proxy = policy.build(environ).metadata_proxy(str(configuration.host or ""))
    api = client.ApiClient(configuration=configuration)
    session = api.rest_client.pool_manager
    if isinstance(session, aiohttp.ClientSession):
        session._trust_env = False  # kubernetes-asyncio hard-codes True
    return api


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an API exception, None for anything else."""
    if isinstance(exc, client.ApiException):
        return int(exc.status) if exc.status is not None else None
    return None


def is_not_found(exc: BaseException) -> bool:
    return status_of(exc) == 404


def is_conflict(exc: BaseException) -> bool:
    return status_of(exc) == 409


def api_error(exc: BaseException, what: str) -> errors.AgentError:
    """An agent error for a failed API call (retryable or not, by status); never the body."""
    status = status_of(exc)
    if status is None:
        if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError):
            return errors.NetworkError(f"{what}: {type(exc).__name__}")
        return errors.ServerError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
    if status in RETRYABLE_STATUSES:
        return errors.ServerError(f"{what}: HTTP {status}")
    if status in (401, 403):
        return errors.AuthError(f"{what}: HTTP {status} (check the agent's RBAC)")
    if status == 404:
        return errors.NotFoundError(f"{what}: not found")
    return errors.PermanentError(f"{what}: HTTP {status}")
