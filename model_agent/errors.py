"""The agent's one error hierarchy.

Whether an error is worth retrying is decided here, where each class is defined, and nowhere
else: callers ask ``error.retryable``. Messages name the field, file or URI at fault and never
carry secrets.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AgentError",
    "AuthError",
    "ChecksumMismatchError",
    "ConfigError",
    "EndpointNotAllowedError",
    "InvalidSpecError",
    "InvalidURIError",
    "ModelInfoError",
    "NetworkError",
    "NoSpaceError",
    "NotFoundError",
    "PathConflictError",
    "PermanentError",
    "RateLimitedError",
    "RetryableError",
    "ServerError",
    "ShapeMismatchError",
    "StalledError",
    "UnsafePathError",
    "UnsupportedStorageError",
]


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""

    retryable: ClassVar[bool] = False
    #: A short machine-readable reason, used in the ConfigMap entry and metric labels.
    reason: ClassVar[str] = "Error"


class PermanentError(AgentError):
    """Retrying the same work cannot succeed until something outside the agent changes."""

    retryable = False
    reason = "Permanent"


class RetryableError(AgentError):
    """A transient condition: the same work may succeed if tried again after a backoff."""

    retryable = True
    reason = "Transient"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the remote side asked us to wait, when it said (Retry-After).
        self.retry_after = retry_after


# --- permanent -----------------------------------------------------------------------------


class ConfigError(PermanentError):
    """A flag or environment variable has an invalid value (the message names it)."""

    reason = "InvalidConfig"


class InvalidURIError(PermanentError):
    """A storage URI does not parse; the message quotes it and shows the expected form."""

    reason = "InvalidURI"


class InvalidSpecError(PermanentError):
    """A field of a BaseModel/ClusterBaseModel spec is invalid (the message names the field)."""

    reason = "InvalidSpec"


class UnsupportedStorageError(PermanentError):
    """A storage scheme no backend serves (``uris.UNSUPPORTED``; ``model-agent pull`` of a
    ``local://``, ``pvc://`` or ``vendor://`` URI, which have nothing to download)."""

    reason = "UnsupportedStorage"


class NotFoundError(PermanentError):
    """The repository, revision, bucket or object does not exist."""

    reason = "NotFound"


class AuthError(PermanentError):
    """Credentials are missing, wrong, or do not grant access (401/403, gated repos)."""

    reason = "Unauthorized"


class NoSpaceError(PermanentError):
    """The destination filesystem has no room for the model."""

    reason = "NoSpace"


class UnsafePathError(PermanentError):
    """A remote name would escape the destination directory (``..``, absolute, backslash)."""

    reason = "UnsafePath"


class EndpointNotAllowedError(PermanentError):
    """A model names an endpoint the admin did not allow credentials to go to."""

    reason = "EndpointNotAllowed"


class PathConflictError(PermanentError):
    """Another model on this node already holds the directory (or one inside or around it).
    Permanent for this spec; the agent retries the model when the holder lets go."""

    reason = "PathConflict"


class ModelInfoError(PermanentError):
    """config.json or a safetensors header is malformed or hostile (the message names the file)."""

    reason = "InvalidModelFiles"


class ShapeMismatchError(PermanentError):
    """A TensorRT-LLM model has no files for this node's GPU shape."""

    reason = "NoFilesForShape"


# --- retryable -----------------------------------------------------------------------------


class NetworkError(RetryableError):
    """A connection failed, was reset, or timed out."""

    reason = "NetworkError"


class ServerError(RetryableError):
    """The remote side answered 5xx, or answered in a way that breaks the protocol
    (200 to a Range request, a wrong Content-Range, a short body)."""

    reason = "ServerError"


class RateLimitedError(RetryableError):
    """The remote side answered 429; ``retry_after`` says how long it asked us to wait."""

    reason = "RateLimited"


class StalledError(RetryableError):
    """No bytes arrived for longer than the stall timeout."""

    reason = "Stalled"


class ChecksumMismatchError(RetryableError):
    """A downloaded file's size or digest differs from what the source promised.

    Retryable: the bytes may have been damaged in transit. The pipeline gives up after
    ``--download-retry`` attempts and reports the file, the expected and the actual digest.
    """

    reason = "ChecksumMismatch"
