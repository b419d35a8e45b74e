"""Human-readable numbers exactly as OME writes them (``7.62B``, ``685B``, ``22.71M``).

OME's ``FormatParamCount`` divides by 10^3/10^6/10^9/10^12, prints a whole number without
decimals, one decimal when two are enough and the second is zero, else two decimals. The
float arithmetic is the same IEEE double arithmetic, so the strings match OME's byte for byte.
"""

from __future__ import annotations

__all__ = ["format_parameter_count"]

_UNITS = ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K"))
_INT64_MAX = 2**63 - 1


def _trunc_int64(value: float) -> int:
    """Go's float64 -> int64 conversion for the finite, in-range values that reach it."""
    return int(value)


def format_parameter_count(count: int) -> str:
    """``count`` as OME's parameter size string: ``"7.62B"``, ``"685B"``, ``"22.71M"``."""
    if count < 0:
        raise ValueError(f"parameter count cannot be negative: {count}")
    count = min(count, _INT64_MAX)
    unit, suffix = next(((u, s) for u, s in _UNITS if count >= u), (1, ""))
    if not suffix:
        return str(count)
    value = float(count) / float(unit)
    if value == float(_trunc_int64(value)):
        return f"{_trunc_int64(value)}{suffix}"
    if value * 100 == float(_trunc_int64(value * 100)):
        return f"{value:.1f}{suffix}"
    return f"{value:.2f}{suffix}"
