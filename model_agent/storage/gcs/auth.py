"""Google credentials for the GCS backend: Application Default Credentials behind a factory.

``parameters.auth``:

- ``default`` (when unset): google-auth's ADC, in its order: ``GOOGLE_APPLICATION_CREDENTIALS``
  (a service-account key file, or an external-account / workload identity federation config),
  the gcloud user credentials, then the metadata server (GKE Workload Identity, GCE service
  accounts). Scope: ``devstorage.read_only``.
- ``anonymous``: no token (public buckets).

``default_factory`` builds ADC; ``token`` refreshes when needed. Both block (files, token
endpoints, the metadata server): callers run them in a thread. Tests pass their own factory or
a key file whose ``token_uri`` is a local server, and never reach the metadata server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests

from model_agent import errors

__all__ = ["AUTH_MODES", "SCOPES", "AuthRequest", "CredentialFactory", "auth_request", "token"]

AUTH_MODES = ("default", "anonymous")
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_only",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthRequest:
    mode: str


#: Returns the credentials for a request, or None for anonymous access.
CredentialFactory = Callable[[AuthRequest], "google.auth.credentials.Credentials | None"]


def auth_request(parameters: Mapping[str, str]) -> AuthRequest:
    raw = (parameters.get("auth") or "").strip().lower() or "default"
    if raw not in AUTH_MODES:
        raise errors.InvalidSpecError(
            f"parameters.auth {parameters.get('auth')!r} is not a GCS auth mode; use one of "
            f"{', '.join(AUTH_MODES)} (default: Application Default Credentials)"
        )
    return AuthRequest(mode=raw)


def default_factory(request: AuthRequest) -> google.auth.credentials.Credentials | None:
    """ADC for ``request`` (blocking); None for anonymous."""
    if request.mode == "anonymous":
        return None
    try:
        credentials, _ = google.auth.default(scopes=list(SCOPES))
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise errors.AuthError(
            f"GCS auth: no Application Default Credentials ({str(exc)[:200]}); set "
            "GOOGLE_APPLICATION_CREDENTIALS, use Workload Identity, or parameters.auth: anonymous"
        ) from None
    return credentials


def token(credentials: google.auth.credentials.Credentials) -> str:
    """A valid access token, refreshed when expired (blocking)."""
    if not credentials.valid:
        try:
            credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
        except google.auth.exceptions.TransportError as exc:
            raise errors.NetworkError(
                f"GCS auth: the token endpoint cannot be reached ({type(exc).__name__})"
            ) from None
        except google.auth.exceptions.GoogleAuthError as exc:
            raise errors.AuthError(
                f"GCS auth: cannot obtain an access token ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
    return str(credentials.token)
