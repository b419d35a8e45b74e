"""What a flag is (``Flag``: its name, environment variables, default and parser) and the
parsers of its values: durations, sizes, free space, booleans, ports and choices.

Pure: no I/O. A parser raises ``ValueError``; ``settings.resolve`` turns it into a
``ConfigError`` naming the flag.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "TUNING",
    "Flag",
    "FreeSpace",
    "choice",
    "non_negative_int",
    "parse_bool",
    "parse_duration",
    "parse_free_space",
    "parse_optional_duration",
    "parse_size",
    "port",
    "positive_int",
    "text",
]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}
_SIZE_RE = re.compile(r"(\d+)\s*([kmgt]i?|b)?b?", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds from ``30s``, ``10m``, ``1h30m``, ``500ms`` or a bare number of seconds."""
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_RE.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or pos == 0:
            raise ValueError(f"{text!r} is not a duration (examples: 30s, 10m, 1h30m)") from None
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    return seconds


def parse_size(text: str) -> int:
    """Bytes from ``200Mi``, ``1GiB``, ``4M`` or a bare number of bytes."""
    match = _SIZE_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 4194304, 4Mi, 200MiB, 1G)")
    unit = (match.group(2) or "").lower()
    return int(match.group(1)) * _SIZE_UNITS[unit]


@dataclasses.dataclass(frozen=True)
class FreeSpace:
    """Free space kept on a filesystem: ``nbytes``, or ``percent`` of its capacity."""

    nbytes: int = 0
    percent: float = 0.0

    def of(self, capacity: int) -> int:
        """The reserve in bytes on a filesystem of ``capacity`` bytes."""
        return max(self.nbytes, int(capacity * self.percent / 100))


def parse_free_space(text: str) -> FreeSpace:
    """A size (``10Gi``, ``0``) or a percent of the filesystem (``5%``)."""
    value = text.strip()
    if value.endswith("%"):
        try:
            percent = float(value[:-1])
        except ValueError:
            raise ValueError(f"{text!r} is not a percent (example: 5%)") from None
        if not 0 <= percent < 100:
            raise ValueError(f"{text!r} must be at least 0% and below 100%")
        return FreeSpace(percent=percent)
    return FreeSpace(nbytes=parse_size(value))


_OFF = frozenset({"off", "false", "no", "never", "none", "disabled"})


def parse_optional_duration(text: str) -> float | None:
    """``off`` (None: the policy is disabled) or a duration."""
    if text.strip().lower() in _OFF:
        return None
    return parse_duration(text)


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{text!r} is not a boolean (true or false)")


def positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise ValueError(f"{text!r} must be at least 1")
    return number


def non_negative_int(text: str) -> int:
    number = int(text)
    if number < 0:
        raise ValueError(f"{text!r} must not be negative")
    return number


def port(text: str) -> int:
    number = int(text)
    if not 0 <= number <= 65535:
        raise ValueError(f"{text!r} is not a TCP port (0-65535)")
    return number


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return value

    return parse


def text(text: str) -> str:
    return text


@dataclasses.dataclass(frozen=True)
class Flag:
    """One setting: its flag, its environment variables (the first set one counts), its
    default (the text a user would type; None: unset) and its parser."""

    field: str
    flag: str
    default: str | None
    parse: Callable[[str], Any]
    help: str
    env: tuple[str, ...] = ()
    commands: tuple[str, ...] = ("run",)


#: The commands that take the download tuning flags.
TUNING = ("run", "pull")
