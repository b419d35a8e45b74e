"""When the agent may ask the API server again: jittered delays, so a thousand agents that
lose their watches in the same second do not come back in the same second.

Pure (stdlib only). Every delay is drawn afresh from a ``random.Random`` (injectable, so a
test can drive the spread deterministically):

- ``spread(window)``: a reconnect or relist after a lost watch waits uniformly in
  ``[0, window)``; N agents then arrive about ``window / N`` apart instead of together.
- ``resync(period)``: the next periodic resync (the sweep for missed deletes) comes after
  ``period`` times a factor in ``[0.8, 1.2)``, so agents started together drift apart.
- ``Backoffs``: an iterable of exponential retry delays with jitter (each in
  ``[delay / 2, delay)``), a fresh draw every time it is iterated; Kopf's
  ``networking.error_backoffs`` takes it as is.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["Backoffs", "jittered", "resync", "spread"]

_RNG = random.Random()


def spread(window: float, rng: random.Random | None = None) -> float:
    """A delay in ``[0, window)`` (0 for a window of 0)."""
    return (rng or _RNG).uniform(0.0, window) if window > 0 else 0.0


def resync(period: float, rng: random.Random | None = None) -> float:
    """The wait before the next periodic resync: ``period`` times ``[0.8, 1.2)``."""
    return period * (rng or _RNG).uniform(0.8, 1.2)


def jittered(delay: float, rng: random.Random | None = None) -> float:
    """``delay`` scaled into ``[delay / 2, delay)``: a retry backoff that does not align."""
    return delay * (0.5 + (rng or _RNG).random() / 2)


class Backoffs:
    """``count`` retry delays: ``base * 2**i`` capped at ``cap``, each jittered; a new draw
    on every iteration. Sized, so a caller knows how many retries there are."""

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 30.0,
        count: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        self.base, self.cap, self.count = base, cap, count
        self._rng = rng or _RNG

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[float]:
        for attempt in range(self.count):
            yield jittered(min(self.cap, self.base * 2**attempt), self._rng)
