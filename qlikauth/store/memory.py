"""The in-process :class:`~qlikauth.store.StateStore`: one portal process only."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError, StoreFull
from .locks import StoreLock

if TYPE_CHECKING:
    from . import WhenFull

__all__ = ["MemoryStore"]


class MemoryStore:
    """A thread-safe in-process :class:`~qlikauth.store.StateStore` with expiry and a bound.

    :param max_items: at most this many live entries.
    :param when_full: ``"evict"`` (default) drops the tenth of the entries closest to expiry
        when full; ``"refuse"`` raises :class:`~qlikauth.exceptions.StoreFull` for a new key
        instead (a replay cache: an evicted consumed id could be replayed).
    :param clock: seconds, monotonic (injectable so expiry is tested without sleeping).
    """

    def __init__(
        self,
        max_items: int = 100_000,
        *,
        when_full: WhenFull = "evict",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ConfigurationError(f"max_items must be a positive integer, got {max_items!r}.")
        if when_full not in ("evict", "refuse"):
            raise ConfigurationError(f"when_full must be 'evict' or 'refuse', got {when_full!r}.")
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self._max = max_items
        self._when_full = when_full
        self._clock = clock
        self._next_purge = 0.0

    def __repr__(self) -> str:
        return f"MemoryStore(max_items={self._max}, when_full={self._when_full!r})"

    def _purge(self, now: float) -> None:
        full = len(self._data) >= self._max
        if now < self._next_purge and not (full and self._when_full == "evict"):
            return
        self._next_purge = now + 5.0
        for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
            del self._data[k]
        if len(self._data) >= self._max and self._when_full == "refuse":
            # Still full: look for expired entries again in a second, not on every write (a
            # flood of writes against a full cache must not cost a full scan each).
            self._next_purge = now + 1.0
        elif len(self._data) >= self._max:
            # Full of live entries: drop the tenth closest to expiry rather than grow without
            # bound. A batch, so a flood of writes pays for one sort per tenth, not per write.
            keep = self._max - max(1, self._max // 10)
            for k, _ in sorted(self._data.items(), key=lambda kv: kv[1][0])[
                : len(self._data) - keep
            ]:
                del self._data[k]

    def _room_for(self, key: str, now: float) -> None:
        """Called with the lock held before ``key`` is written."""
        self._purge(now)
        if key not in self._data and len(self._data) >= self._max:
            # Only reached in "refuse" mode (evict mode made room above).
            raise StoreFull(
                f"the in-process replay cache is full ({self._max} live entries): refusing rather "
                "than forgetting a consumed id. Raise max_items or shorten the entries' lifetime.",
                store=repr(self),
            )

    def put(self, key: str, value: bytes, ttl: float) -> None:
        now = self._clock()
        with self._lock:
            self._room_for(key, now)
            self._data[key] = (now + ttl, value)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        now = self._clock()
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and hit[0] > now:
                return False
            self._data.pop(key, None)
            self._room_for(key, now)
            self._data[key] = (now + ttl, value)
            return True

    def get(self, key: str) -> bytes | None:
        now = self._clock()
        with self._lock:
            hit = self._data.get(key)
            return hit[1] if hit is not None and hit[0] > now else None

    def take(self, key: str) -> bytes | None:
        now = self._clock()
        with self._lock:
            hit = self._data.pop(key, None)
            return hit[1] if hit is not None and hit[0] > now else None

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def lock(self, name: str, ttl: float, wait: float = 0.0) -> StoreLock:
        """An owner-checked lock under ``name`` (see :class:`~qlikauth.store.locks.StoreLock`)."""
        token = secrets.token_bytes(16)

        def release_owned() -> bool:
            now = self._clock()
            with self._lock:
                hit = self._data.get(name)
                if hit is None or hit[0] <= now or hit[1] != token:
                    return False  # expired, or another holder's by now: leave it alone
                del self._data[name]
                return True

        return StoreLock(
            name,
            ttl,
            wait,
            try_acquire=lambda: self.add(name, token, ttl),
            release_owned=release_owned,
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
