"""AWS credentials for the S3 backend: botocore's standard chain behind one injectable factory.

``parameters.auth`` picks the mode:

- ``default`` (when unset): botocore's provider chain, in its order: the environment
  (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``), assume-role profiles,
  web identity (``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``: IRSA), the shared
  credentials and config files (``AWS_SHARED_CREDENTIALS_FILE``, ``AWS_CONFIG_FILE``, profile
  ``parameters.profile`` or ``AWS_PROFILE``), the container provider
  (``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``: EKS Pod
  Identity), then the instance metadata service. Temporary credentials refresh themselves.
- ``anonymous``: no credentials; requests go unsigned (public buckets).

``default_factory`` builds the chain; tests pass their own factory and set
``AWS_EC2_METADATA_DISABLED=true`` so that nothing ever calls the metadata address. Resolving
may block (token files, STS, metadata): callers run it in a thread. Failures are
``AuthError``/``ConfigError`` naming the mode or profile, never a key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import botocore.credentials
import botocore.exceptions
import botocore.session

from model_agent import errors

__all__ = [
    "AUTH_MODES",
    "AuthRequest",
    "CredentialFactory",
    "auth_request",
    "default_factory",
]

AUTH_MODES = ("default", "anonymous")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthRequest:
    """The mode and the profile (None: ``AWS_PROFILE`` or ``default``)."""

    mode: str
    profile: str | None = None


#: Returns the credentials for a request, or None when the chain found none.
CredentialFactory = Callable[[AuthRequest], "botocore.credentials.Credentials | None"]


def auth_request(parameters: Mapping[str, str]) -> AuthRequest:
    """Read ``parameters.auth`` (case-insensitive) and ``parameters.profile``."""
    raw = (parameters.get("auth") or "").strip().lower() or "default"
    if raw not in AUTH_MODES:
        raise errors.InvalidSpecError(
            f"parameters.auth {parameters.get('auth')!r} is not an S3 auth mode; use one of "
            f"{', '.join(AUTH_MODES)} (default: the AWS credential chain)"
        )
    return AuthRequest(mode=raw, profile=parameters.get("profile") or None)


def session(request: AuthRequest) -> botocore.session.Session:
    """A botocore session for ``request``'s profile (the region and endpoint come from it too)."""
    try:
        return botocore.session.Session(profile=request.profile)
    except botocore.exceptions.ProfileNotFound:
        raise errors.ConfigError(
            f"S3 auth: AWS profile {request.profile!r} not found in the shared config files"
        ) from None


def default_factory(request: AuthRequest) -> botocore.credentials.Credentials | None:
    """The default ``CredentialFactory``: botocore's chain for the profile (blocking)."""
    if request.mode == "anonymous":
        return None
    try:
        return session(request).get_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise errors.ConfigError(
            f"S3 auth: AWS profile {request.profile!r} not found in the shared config files"
        ) from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise errors.AuthError(
            f"S3 auth: the AWS credential chain failed ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
