"""OCI credentials: ``parameters.auth`` turned into an oci SDK signer, behind one factory.

Modes (CONTRACT.md), each built with the SDK's own signer:

- ``InstancePrincipal`` (default): ``InstancePrincipalsSecurityTokenSigner`` (the instance
  metadata service; the region comes from the instance unless ``parameters.region`` says);
- ``UserPrincipal``: an API-key config file (``OCI_CONFIG_FILE``, default ``~/.oci/config``),
  profile ``parameters.profile`` or ``OCI_CONFIG_PROFILE`` (default ``DEFAULT``); a profile
  with ``security_token_file`` (``oci session authenticate``) signs with that session token;
- ``ResourcePrincipal``: ``get_resource_principals_signer()`` (the ``OCI_RESOURCE_PRINCIPAL_*``
  environment);
- ``OkeWorkloadIdentity``: ``get_oke_workload_identity_resource_principal_signer()`` (the
  pod's service-account token).

``build_credentials`` is the default ``SignerFactory``. Building a signer may block (the
metadata service, token files): callers run the factory in a thread. Tests pass their own
factory, and never build the instance-principal or workload-identity signers (they contact a
link-local address). Failures are permanent errors naming the file, profile or mode at fault,
never a key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import oci

from model_agent import errors

__all__ = [
    "AUTH_MODES",
    "DEFAULT_AUTH",
    "AuthRequest",
    "Credentials",
    "SignerFactory",
    "auth_request",
    "build_credentials",
]

DEFAULT_AUTH = "InstancePrincipal"
AUTH_MODES = ("InstancePrincipal", "UserPrincipal", "ResourcePrincipal", "OkeWorkloadIdentity")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthRequest:
    """What the factory needs: the mode and, for ``UserPrincipal``, the config file and
    profile; ``region`` overrides the region the credentials would give."""

    mode: str
    config_file: str | None = None
    profile: str | None = None
    region: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Credentials:
    """A signer (an oci ``AbstractBaseSigner``, a requests auth) and the ``config`` dict for
    ``ObjectStorageClient`` (a full API-key config, or just the region for token signers)."""

    signer: Any = dataclasses.field(repr=False)
    config: Mapping[str, Any] = dataclasses.field(repr=False)
    region: str | None = None


SignerFactory = Callable[[AuthRequest], Credentials]


def auth_request(
    parameters: Mapping[str, str], *, config_file: str | None, environ: Mapping[str, str]
) -> AuthRequest:
    """Read ``parameters.auth`` (case-insensitive), ``.profile`` and ``.region``. An unknown
    mode is an ``InvalidSpecError`` naming ``parameters.auth`` and the allowed values."""
    raw = (parameters.get("auth") or "").strip()
    mode = DEFAULT_AUTH
    if raw:
        chosen = [m for m in AUTH_MODES if m.lower() == raw.lower()]
        if not chosen:
            raise errors.InvalidSpecError(
                f"parameters.auth {raw!r} is not an OCI auth mode; use one of "
                f"{', '.join(AUTH_MODES)} (default {DEFAULT_AUTH})"
            )
        mode = chosen[0]
    profile = parameters.get("profile") or environ.get("OCI_CONFIG_PROFILE") or None
    return AuthRequest(
        mode=mode,
        config_file=config_file or environ.get("OCI_CONFIG_FILE") or None,
        profile=profile,
        region=parameters.get("region") or None,
    )


def _user_principal(request: AuthRequest) -> Credentials:
    location = request.config_file or oci.config.DEFAULT_LOCATION
    profile = request.profile or oci.config.DEFAULT_PROFILE
    where = f"profile {profile!r} of the OCI config file {location}"
    try:
        config = dict(oci.config.from_file(file_location=location, profile_name=profile))
        if request.region:
            config["region"] = request.region
        token_file = config.get("security_token_file")
        if token_file:
            with open(os.path.expanduser(token_file), encoding="utf-8") as handle:
                token = handle.read().strip()
            key = oci.signer.load_private_key_from_file(
                config.get("key_file"), config.get("pass_phrase")
            )
            signer: Any = oci.auth.signers.SecurityTokenSigner(token, key)
        else:
            oci.config.validate_config(config)
            signer = oci.signer.Signer.from_config(config)
    except oci.exceptions.ConfigFileNotFound:
        raise errors.ConfigError(
            f"UserPrincipal auth: no OCI config file at {location} (set OCI_CONFIG_FILE)"
        ) from None
    except oci.exceptions.ProfileNotFound:
        raise errors.ConfigError(
            f"UserPrincipal auth: profile {profile!r} not found in {location} "
            "(set parameters.profile or OCI_CONFIG_PROFILE)"
        ) from None
    except oci.exceptions.InvalidConfig as exc:
        fields = ", ".join(sorted(getattr(exc, "errors", {}) or {})) or "unknown fields"
        raise errors.ConfigError(f"UserPrincipal auth: {where} is invalid ({fields})") from None
    except (oci.exceptions.InvalidPrivateKey, oci.exceptions.InvalidKeyFilePath) as exc:
        raise errors.ConfigError(
            f"UserPrincipal auth: the private key of {where} cannot be used ({type(exc).__name__})"
        ) from None
    except (OSError, ValueError) as exc:
        raise errors.ConfigError(
            f"UserPrincipal auth: cannot read {where}: {type(exc).__name__}"
        ) from None
    return Credentials(signer=signer, config=config, region=config.get("region"))


def _token_signer(request: AuthRequest) -> Credentials:
    signers = oci.auth.signers
    builders: dict[str, Callable[[], Any]] = {
        "InstancePrincipal": signers.InstancePrincipalsSecurityTokenSigner,
        "ResourcePrincipal": signers.get_resource_principals_signer,
        "OkeWorkloadIdentity": signers.get_oke_workload_identity_resource_principal_signer,
    }
    try:
        signer = builders[request.mode]()
    except Exception as exc:  # the SDK raises many types here; none carries a secret
        raise errors.AuthError(
            f"{request.mode} auth failed: cannot obtain credentials ({type(exc).__name__}: "
            f"{str(exc)[:200]})"
        ) from None
    region = request.region or getattr(signer, "region", None) or None
    return Credentials(signer=signer, config={"region": region} if region else {}, region=region)


def build_credentials(request: AuthRequest) -> Credentials:
    """The default ``SignerFactory``: the SDK's own signer for ``request.mode`` (blocking)."""
    if request.mode == "UserPrincipal":
        return _user_principal(request)
    if request.mode in AUTH_MODES:
        return _token_signer(request)
    raise errors.InvalidSpecError(
        f"parameters.auth {request.mode!r} is not an OCI auth mode; use one of "
        f"{', '.join(AUTH_MODES)}"
    )
