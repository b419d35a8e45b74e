"""Fault injection of the fake Kubernetes API: rules that fail (any status, optional
Retry-After) or delay the next N matching requests, checked before a request is read or
applied, so a failed write has changed nothing."""

from __future__ import annotations

import dataclasses
import threading

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclasses.dataclass
class Rule:
    remaining: int
    method: str | None  # an HTTP method or a Kubernetes verb (WATCH, LIST, CREATE, ...)
    path_contains: str | None
    status: int  # 0: answer normally (after ``delay``)
    retry_after: float | None = None
    delay: float = 0.0

    @property
    def reason(self) -> str:
        return _REASONS.get(self.status, "InternalError")

    def matches(self, method: str, verb: str | None, path: str) -> bool:
        if self.method is not None and self.method.upper() not in (method, (verb or "").upper()):
            return False
        return self.path_contains is None or self.path_contains in path


class Faults:
    """A queue of rules; the first matching rule is used and counts down."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()

    def fail(
        self,
        count: int,
        method: str | None,
        path_contains: str | None,
        status: int,
        retry_after: float | None,
    ) -> None:
        if not 100 <= status <= 599:
            raise ValueError(f"{status} is not an HTTP status")
        with self._lock:
            self._rules.append(Rule(count, method, path_contains, status, retry_after))

    def slow(
        self, count: int, seconds: float, method: str | None, path_contains: str | None
    ) -> None:
        with self._lock:
            self._rules.append(Rule(count, method, path_contains, 0, delay=seconds))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, method: str, verb: str | None, path: str) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, verb, path):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return rule
        return None
