"""Reads a token from a Secret (the HF token named by ``spec.storage.key``).

The value is returned to the caller only: never logged, never put in an error message (errors
name the Secret and the key, not the content)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from kubernetes_asyncio import client

from model_agent import errors
from model_agent.kube import client as kube_client

__all__ = ["read_token"]

_MAX_TOKEN = 16 * 1024


async def read_token(api: client.ApiClient, *, namespace: str, name: str, key: str) -> str:
    """The text under ``key`` of Secret ``namespace/name``, surrounding whitespace removed.
    Raises AuthError when the Secret or key is missing or unreadable."""
    core: Any = client.CoreV1Api(api)
    where = f"secret {namespace}/{name}"
    try:
        secret = await core.read_namespaced_secret(name, namespace)
    except Exception as exc:
        error = kube_client.api_error(exc, f"read {where}")
        if error.retryable:
            raise error from None
        raise errors.AuthError(f"cannot read {where}: {error}") from None
    data = secret.data or {}
    encoded = data.get(key)
    if encoded is None:
        plain = (secret.string_data or {}).get(key)
        if plain is None:
            raise errors.AuthError(f"{where} has no key {key!r}")
        return str(plain).strip()
    if len(encoded) > _MAX_TOKEN:
        raise errors.AuthError(f"{where} key {key!r} is too large for a token")
    try:
        token = base64.b64decode(encoded, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        raise errors.AuthError(f"{where} key {key!r} is not base64 text") from None
    if not token:
        raise errors.AuthError(f"{where} key {key!r} is empty")
    return token
