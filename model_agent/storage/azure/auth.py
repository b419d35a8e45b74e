"""Azure workload identity: a federated service-account token exchanged for a Storage token.

With ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID`` and ``AZURE_FEDERATED_TOKEN_FILE`` (what the AKS
workload identity webhook injects), the agent posts the token file's JWT as a client assertion
to ``{AZURE_AUTHORITY_HOST}/{tenant}/oauth2/v2.0/token`` (default
``https://login.microsoftonline.com``) for scope ``https://storage.azure.com/.default``, and
caches the access token until five minutes before it expires (the token file is re-read on
every exchange: kubelet rotates it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from model_agent import errors

__all__ = ["WorkloadIdentity", "from_environ"]

_SCOPE = "https://storage.azure.com/.default"
_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_MARGIN = 300.0


@dataclasses.dataclass
class WorkloadIdentity:
    client_id: str
    tenant_id: str
    token_file: str
    authority: str = "https://login.microsoftonline.com"
    _token: str = dataclasses.field(default="", repr=False)
    _expires: float = 0.0

    async def token(
        self,
        session: aiohttp.ClientSession,
        *,
        route: Callable[[str], dict[str, Any]] | None = None,
    ) -> str:
        """A valid Storage access token (exchanged when missing or near expiry)."""
        if self._token and time.monotonic() < self._expires:
            return self._token
        try:
            assertion = (await asyncio.to_thread(pathlib.Path(self.token_file).read_text)).strip()
        except OSError as exc:
            raise errors.AuthError(
                f"Azure workload identity: cannot read AZURE_FEDERATED_TOKEN_FILE "
                f"{self.token_file} ({type(exc).__name__})"
            ) from None
        url = f"{self.authority.rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"
        form = {
            "client_id": self.client_id,
            "scope": _SCOPE,
            "grant_type": "client_credentials",
            "client_assertion_type": _ASSERTION,
            "client_assertion": assertion,
        }
        try:
            extra = route(url) if route is not None else {}
            async with session.post(url, data=form, **extra) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise errors.NetworkError(
                f"Azure workload identity: the token endpoint cannot be reached "
                f"({type(exc).__name__})"
            ) from None
        if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            code = body.get("error") if isinstance(body, dict) else None
            raise errors.AuthError(
                f"Azure workload identity: the token exchange failed ({status} {code or ''})"
            )
        self._token = str(body["access_token"])
        self._expires = time.monotonic() + max(0.0, float(body.get("expires_in", 3600)) - _MARGIN)
        return self._token


def from_environ(environ: Mapping[str, str]) -> WorkloadIdentity | None:
    """The workload identity the environment configures, or None."""
    client, tenant = environ.get("AZURE_CLIENT_ID"), environ.get("AZURE_TENANT_ID")
    token_file = environ.get("AZURE_FEDERATED_TOKEN_FILE")
    if not (client and tenant and token_file):
        return None
    authority = environ.get("AZURE_AUTHORITY_HOST") or "https://login.microsoftonline.com"
    return WorkloadIdentity(client, tenant, token_file, authority)
