"""Per-key write state shared by the ConfigMap writer and the Node labeller: the newest value
wanted per key, the value last written, and one lock per key that serializes its writes.

A key's state exists only while it matters: once its removal (``None``) has been written and
no write of it is waiting, everything about the key is dropped, so a node that saw ten
thousand models come and go keeps state only for the ones still here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["KeyedWrites"]


class KeyedWrites:
    """``desired`` / ``written`` values per key (``None``: remove) and a lock per key."""

    def __init__(self) -> None:
        self.desired: dict[str, str | None] = {}
        self.written: dict[str, str | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @property
    def pending(self) -> dict[str, str | None]:
        """Wanted values that have not reached the API server yet."""
        return {k: v for k, v in self.desired.items() if self.written.get(k, "") != v}

    def knows(self, key: str) -> bool:
        """Whether a value was written (or is being written) for ``key``."""
        return self.written.get(key) is not None or self.desired.get(key) is not None

    def up_to_date(self, key: str) -> bool:
        return key in self.written and self.written[key] == self.desired.get(key)

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock; on the way out, forget the key when its removal is written
        and nobody else waits for it."""
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with self._locks.setdefault(key, asyncio.Lock()):
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                self._forget_if_removed(key)

    def forget(self, key: str) -> None:
        """Drop what is known about what was written (the next write goes to the server)."""
        self.written.pop(key, None)

    def __len__(self) -> int:
        """How many keys have state (for tests and memory checks)."""
        return len(self.desired.keys() | self.written.keys() | self._locks.keys())

    def _forget_if_removed(self, key: str) -> None:
        if key in self.written and self.written[key] is None and self.desired.get(key) is None:
            self.written.pop(key, None)
            self.desired.pop(key, None)
            self._locks.pop(key, None)
