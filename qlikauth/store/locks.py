"""The owner-checked lock every :class:`~qlikauth.store.StateStore` hands out (``store.lock``).

A lock is a key holding a random owner token for ``ttl`` seconds. Taking it is the store's
atomic add; giving it back removes the key only while it still holds *this* holder's token, so
a holder that was slower than ``ttl`` (its lock expired and another process took it) cannot
release the next holder's lock. Each store supplies the two steps: Redis through redis-py's
``Lock`` (a Lua compare-and-delete on the server), the memory store under its own mutex, the
Django cache store by checking the token and the time left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType

from ..exceptions import StoreUnavailable

__all__ = ["StoreLock"]

log = logging.getLogger("qlikauth.store")


class StoreLock:
    """One holder's claim on a named lock in a store; use it as a context manager.

    ``with store.lock("fetch:ann", ttl=15, wait=5) as held:`` -- ``held`` is True when this
    holder got the lock within ``wait`` seconds (``wait=0``: one try), False otherwise; the
    lock is given back on leaving the block, and only if it is still this holder's.

    :param try_acquire: one atomic attempt; True when taken.
    :param release_owned: remove the lock if it still holds this holder's token; True if it did.
    """

    def __init__(
        self,
        name: str,
        ttl: float,
        wait: float,
        *,
        try_acquire: Callable[[], bool],
        release_owned: Callable[[], bool],
        poll: float = 0.01,
    ) -> None:
        if not ttl > 0:
            raise ValueError("a lock's ttl must be positive")
        if wait < 0:
            raise ValueError("a lock's wait must be zero or positive")
        self.name = name
        self.ttl = float(ttl)
        self.wait = float(wait)
        self.poll = poll
        self.held = False
        self._try_acquire = try_acquire
        self._release_owned = release_owned

    def __repr__(self) -> str:
        return f"StoreLock(ttl={self.ttl}, wait={self.wait}, held={self.held})"

    def acquire(self, wait: float | None = None) -> bool:
        """Try for ``wait`` seconds (default: the lock's own); True when this holder has it."""
        deadline = time.monotonic() + (self.wait if wait is None else wait)
        delay = self.poll
        while True:
            if self._try_acquire():
                self.held = True
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.1)  # back off up to 100 ms: waiters do not hammer the store

    def release(self) -> bool:
        """Give the lock back; False when it had expired (and may be someone else's now)."""
        if not self.held:
            return False
        self.held = False
        return self._release_owned()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except StoreUnavailable as failed:
            # The work inside is done (or failed on its own); a lock that cannot be given back
            # expires with its ttl, so the block's own outcome is what the caller sees.
            log.warning("could not release a store lock (it expires by itself): %s", failed)
