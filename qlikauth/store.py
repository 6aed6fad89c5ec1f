"""A pluggable store for state that must be shared by every instance of a portal.

One-time values (OIDC ``state``/``nonce``, SAML request ids, consumed assertion ids, a
sign-in in progress) must be seen by whichever instance handles the browser's next
request, and used at most once. :class:`MemoryStore` serves a single process; a Redis
store and a Django-cache store implement the same :class:`StateStore` protocol.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["StateStore", "MemoryStore"]


@runtime_checkable
class StateStore(Protocol):
    """What qlikauth needs from shared state. Values are bytes; keys are short strings."""

    def put(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (replacing any old value)."""

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Store only if ``key`` is absent; True if stored (a replay cache's check-and-set)."""

    def get(self, key: str) -> bytes | None:
        """The live value under ``key``, or None."""

    def take(self, key: str) -> bytes | None:
        """Atomically read and delete: a one-time value is used at most once."""

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""


class MemoryStore:
    """A thread-safe in-process :class:`StateStore` with expiry (one portal instance only)."""

    def __init__(self, max_items: int = 100_000) -> None:
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self._max = max_items
        self._next_purge = 0.0

    def _purge(self, now: float) -> None:
        if now < self._next_purge and len(self._data) < self._max:
            return
        self._next_purge = now + 5.0
        for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
            del self._data[k]
        if len(self._data) >= self._max:
            # Full of live entries: drop the tenth closest to expiry rather than grow without
            # bound. A batch, so a flood of writes pays for one sort per tenth, not per write.
            keep = self._max - max(1, self._max // 10)
            for k, _ in sorted(self._data.items(), key=lambda kv: kv[1][0])[: len(self._data) - keep]:
                del self._data[k]

    def put(self, key: str, value: bytes, ttl: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._purge(now)
            self._data[key] = (now + ttl, value)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            self._purge(now)
            hit = self._data.get(key)
            if hit is not None and hit[0] > now:
                return False
            self._data[key] = (now + ttl, value)
            return True

    def get(self, key: str) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
            return hit[1] if hit is not None and hit[0] > now else None

    def take(self, key: str) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            hit = self._data.pop(key, None)
            return hit[1] if hit is not None and hit[0] > now else None

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
