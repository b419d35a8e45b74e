"""Which storage backend serves a URI: one factory for every scheme ``pull`` downloads.

Backends are imported on first use, so a node that only pulls from the Hub never imports the
OCI, AWS, Google or Azure clients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from model_agent import errors, settings, uris
from model_agent.storage import base

__all__ = ["for_uri"]


def for_uri(
    uri: str,
    config: settings.Settings,
    *,
    parameters: Mapping[str, str],
    token: str | None = None,
) -> base.Backend:
    """The backend of ``uri``'s scheme, built from the admin's settings and the model's
    parameters (the backend checks every endpoint a model names against the allow-list);
    ``UnsupportedStorageError`` for a scheme ``pull`` does not download."""
    parsed = uris.parse(uri)
    if parsed.scheme == "hf":
        from model_agent.storage import huggingface

        token = parameters.get("token") or token or config.hf_token
        endpoint = parameters.get("endpoint") or config.hf_endpoint
        return huggingface.HuggingFaceBackend(
            uri, endpoint=endpoint, token=token, egress=config.egress
        )
    if parsed.scheme == "oci":
        from model_agent.storage import oci

        return oci.OCIBackend(
            uri,
            parameters=parameters,
            config_file=config.oci_config_file,
            egress=config.egress,
        )
    if parsed.scheme == "github":
        from model_agent.storage.github import backend as github

        return github.GitHubBackend(
            uri,
            parameters=parameters,
            token=token,
            credential_hosts=config.credential_hosts,
            egress=config.egress,
        )
    store = _object_store(parsed.scheme)
    if store is not None:
        return store(
            uri,
            parameters=parameters,
            credential_hosts=config.credential_hosts,
            egress=config.egress,
        )
    raise errors.UnsupportedStorageError(
        f"model-agent pull does not download {parsed.scheme}:// sources yet ({uri})"
    )


def _object_store(scheme: str) -> Callable[..., base.Backend] | None:
    """The class of an object store whose backend takes only the URI, the model's parameters,
    the credential hosts and the egress policy (imported on first use)."""
    if scheme == "s3":
        from model_agent.storage.s3 import backend as s3

        return s3.S3Backend
    if scheme == "gs":
        from model_agent.storage.gcs import backend as gcs

        return gcs.GCSBackend
    if scheme == "az":
        from model_agent.storage.azure import backend as azure

        return azure.AzureBackend
    return None
