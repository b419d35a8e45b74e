"""Named loggers and the text/JSON log formats. Tokens never reach a log line.

- ``configure(level=, fmt="text"|"json", stream=, node=)``: one handler on the root logger.
  JSON lines carry ``ts``, ``level``, ``logger``, ``msg``, every ``extra`` field (model key,
  file, bytes, duration, ...), ``node`` when given, and ``error_class`` whenever an exception
  is attached (``exc_info``) or passed as the ``error`` extra.
- ``redact(text)``: masks bearer tokens, Hugging Face tokens (``hf_...``), OCI request
  signatures, ``Authorization`` headers and ``token=``/``signature=``-style query parameters.
  Both formatters pass the whole line through it; extras whose key names a secret
  (``token``, ``password``, ``authorization``, ...) are masked whatever their value.
- ``Throttle``: at most one line per key per interval (progress lines per model).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["JSONFormatter", "TextFormatter", "Throttle", "configure", "logger", "redact"]

logger = logging.getLogger("model_agent")

_MASK = "***"

_SECRET_RE = re.compile(
    # Authorization: Bearer x / Signature keyId=... (header text, dict reprs, JSON)
    r"(?i)(?P<keep1>authorization[\"']?\s*[:=]\s*[\"']?(?:bearer\s+|basic\s+|signature\s+)?)"
    r"(?:[^\s,\"']+)"
    # a bare "Bearer <token>"
    r"|(?i:(?P<keep2>\bbearer\s+))[A-Za-z0-9._~+/=-]{8,}"
    # Hugging Face user/org tokens
    r"|\bhf_[A-Za-z0-9]{8,}\b"
    # OCI signature header parts and URL/query parameters that carry secrets
    r"|(?i:(?P<keep3>\b(?:signature|x-amz-signature|sig|token|access_token|api_key|apikey"
    r"|password|secret|key_content|pass_phrase)\s*[=:]\s*\"?))[^\s\"&,']+",
)

#: ``extra`` keys whose values are always masked.
_SECRET_KEYS = re.compile(
    r"(?i)(?:^|_)(?:token|password|passwd|secret|authorization|signature|key_content"
    r"|pass_phrase|cookie)(?:$|_)"
)

#: LogRecord attributes that are not user-supplied ``extra`` fields, plus Kopf's internals.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "k8s_skip",
    "k8s_ref",
    "settings",
}


def redact(text: str) -> str:
    """Mask bearer tokens, HF tokens, signatures and secret parameters in ``text``."""

    def keep(match: re.Match[str]) -> str:
        prefix = match.group("keep1") or match.group("keep2") or match.group("keep3") or ""
        return prefix + _MASK

    return _SECRET_RE.sub(keep, text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD or key.startswith("_"):
            continue
        if _SECRET_KEYS.search(key) and value is not None:
            fields[key] = _MASK
        elif key == "error" and isinstance(value, BaseException):
            fields["error_class"] = type(value).__name__
            fields["error"] = redact(str(value))
        elif isinstance(value, bool | int | float) or value is None:
            fields[key] = value
        else:
            fields[key] = redact(str(value))
    ref = getattr(record, "k8s_ref", None)
    if isinstance(ref, dict) and ref.get("name"):
        ns = ref.get("namespace")
        fields.setdefault("object", f"{ns}/{ref['name']}" if ns else str(ref["name"]))
    return fields


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every ``extra`` field."""

    def __init__(self, *, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if self.node:
            entry["node"] = self.node
        entry.update(_extras(record))
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_class"] = record.exc_info[0].__name__
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...`` with secrets masked."""

    def __init__(self, *, node: str | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = _extras(record)
        if record.exc_info and record.exc_info[0] is not None:
            fields.setdefault("error_class", record.exc_info[0].__name__)
        extras = " ".join(f"{k}={v}" for k, v in fields.items())
        return redact(f"{base} {extras}" if extras else base)


def configure(
    *, level: str = "info", fmt: str = "text", stream: Any = None, node: str | None = None
) -> None:
    """Send every log record to ``stream`` (stderr by default) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter(node=node) if fmt == "json" else TextFormatter(node=node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # At DEBUG this logger prints every API response body whole, Secrets' base64 data
    # included, which no pattern-based redaction can recognise: keep it at INFO.
    logging.getLogger("kubernetes_asyncio.client.rest").setLevel(logging.INFO)


class Throttle:
    """At most one ``True`` per key per ``interval`` seconds (e.g. progress lines per model).
    ``forget(key)`` when the key's work ends, so the next start logs at once."""

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def ready(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                return False
            self._last[key] = now
            return True

    def forget(self, key: str) -> None:
        with self._lock:
            self._last.pop(key, None)
