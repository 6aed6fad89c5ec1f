"""Password sign-in for the example portals: the same work for every name, and throttled.

Copy this with the portal. Two things a password form must not give away:

* **who exists**: a name with no account is checked against a dummy hash made the same way as
  the real ones, so an unknown user costs the same hashing time as a wrong password (measured
  without it: 120 ms against 4 ms, which tells an attacker which names are real);
* **unlimited guesses**: failures are counted per user name and per client address over a
  sliding window; past the limit the form answers 429 with ``Retry-After`` without checking
  the password. The tables are bounded (the least recently used entries go first), so a flood
  of made-up names cannot grow the portal's memory.

The counts live in this process: a portal on several processes or hosts multiplies the limits
by their number (keep the counts in Redis, or throttle at the proxy, for a hard limit). Behind
a reverse proxy, give the client's address as the proxy reports it (``werkzeug``'s
``ProxyFix``), or every client shares the proxy's address.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping

from werkzeug.security import check_password_hash, generate_password_hash

__all__ = ["PasswordLogin", "TooManyAttempts"]


class TooManyAttempts(Exception):
    """Too many failed sign-ins for this name or from this address; ``retry_after`` in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after} s")
        self.retry_after = retry_after


class _Failures:
    """Failure times per key over a window, for at most ``max_keys`` keys (least recent dropped)."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _live(self, key: str, now: float) -> deque[float] | None:
        times = self._seen.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[key]
            return None
        return times

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        times = self._live(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return times[0] + self.window - now

    def add(self, key: str, now: float) -> None:
        times = self._live(key, now)
        if times is None:
            times = self._seen[key] = deque(maxlen=self.limit)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
        self._seen.move_to_end(key)
        times.append(now)

    def clear(self, key: str) -> None:
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)


class PasswordLogin:
    """Check a name and password against ``hashes`` (name -> werkzeug password hash).

    :param per_user: failed attempts per user name within ``window`` seconds.
    :param per_address: failed attempts per client address within ``window``; higher, since
        people behind one NAT share an address.
    :param max_keys: names and addresses remembered, each table.
    """

    def __init__(
        self,
        hashes: Mapping[str, str],
        *,
        per_user: int = 5,
        per_address: int = 20,
        window: float = 300.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hashes = dict(hashes)
        # The dummy is made like the real hashes (same method and cost), of a password nobody has.
        method = next(iter(self._hashes.values()), "").split("$", 1)[0] or "scrypt"
        self._dummy = generate_password_hash(secrets.token_urlsafe(24), method=method)
        self._users = _Failures(per_user, window, max_keys)
        self._addresses = _Failures(per_address, window, max_keys)
        self._lock = threading.Lock()
        self._clock = clock

    def verify(self, name: str, password: str, address: str) -> bool:
        """True for a right name and password; raises :class:`TooManyAttempts` when throttled."""
        user_key = "user:" + name
        addr_key = "addr:" + address
        with self._lock:
            now = self._clock()
            wait = max(self._users.wait(user_key, now), self._addresses.wait(addr_key, now))
        if wait > 0:
            raise TooManyAttempts(max(1, math.ceil(wait)))
        # Hash first, look the name up after: the same work whether or not the name exists.
        ok = check_password_hash(self._hashes.get(name, self._dummy), password)
        ok = ok and name in self._hashes
        with self._lock:
            now = self._clock()
            if ok:
                self._users.clear(user_key)
            else:
                self._users.add(user_key, now)
                self._addresses.add(addr_key, now)
        return ok

    def tracked(self) -> tuple[int, int]:
        """How many user names and addresses are remembered (for tests and health pages)."""
        with self._lock:
            return len(self._users), len(self._addresses)
