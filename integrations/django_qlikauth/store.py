"""A :class:`~qlikauth.store.StateStore` on a Django cache alias (``STATE_STORE =
"django-cache:ALIAS"``).

Useful when a project already runs a shared cache (memcached, Redis, the database cache) and
wants no second connection setting. ``add`` is the backend's ``cache.add`` (atomic on
memcached, Redis, the database and local-memory caches); ``take`` reads, then deletes, and
returns the value only to the caller whose ``delete`` removed it (Django >= 3.1 reports that),
so two processes racing for one value get it once. That holds for one-time keys, which are
random and never written twice.

Not a replay cache: every Django backend culls or evicts when full (``MAX_ENTRIES``,
memcached's LRU), and a forgotten consumed id could be replayed. Asking for
``when_full="refuse"`` raises :class:`~qlikauth.exceptions.ConfigurationError`; use
``RedisStore(..., when_full="refuse")`` for that. The dummy cache (which stores nothing, so
every ``add`` would pass) is refused too.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from typing import Any

from qlikauth.exceptions import ConfigurationError, QlikAuthError, StoreUnavailable
from qlikauth.store.locks import StoreLock

__all__ = ["DjangoCacheStore", "django_cache_store_from_setting"]

# memcached takes no blanks or control characters and at most 250 bytes: other keys (some come
# from a request) are stored under a digest of themselves.
_KEY = re.compile(r"[\x21-\x7e]{1,200}\Z")


class DjangoCacheStore:
    """One Django cache alias as a :class:`~qlikauth.store.StateStore`.

    :param alias: a key of ``settings.CACHES``; looked up at each call (Django's cache
        connections are per thread), so the store can be built before apps are ready.
    :param namespace: prefix of every key (``<namespace>:<key>``, inside the cache's own
        ``KEY_PREFIX``).
    """

    def __init__(
        self,
        alias: str = "default",
        *,
        namespace: str = "qlikauth",
        max_items: int | None = None,
        when_full: str = "evict",
    ) -> None:
        if when_full == "refuse":
            raise ConfigurationError(
                f"the Django cache {alias!r} cannot be a replay cache: Django's cache backends "
                "cull "
                "or evict entries when full (MAX_ENTRIES, memcached LRU), and a forgotten consumed "
                "id could be replayed. Use a Redis STATE_STORE ('redis://...') for replay caches."
            )
        if max_items is not None:
            raise ConfigurationError(
                "a Django cache is bounded by its own OPTIONS (MAX_ENTRIES / the server's memory), "
                "not by max_items."
            )
        self.alias = alias
        self.namespace = namespace
        self.description = f"Django cache {alias!r} (namespace {namespace!r})"

    def __repr__(self) -> str:
        return f"DjangoCacheStore({self.alias!r}, namespace={self.namespace!r})"

    def _cache(self) -> Any:
        from django.core.cache import caches
        from django.core.cache.backends.dummy import DummyCache

        try:
            cache = caches[self.alias]
        except Exception as exc:  # InvalidCacheBackendError, ImproperlyConfigured
            raise ConfigurationError(
                f"STATE_STORE names the {self.description}, which settings.CACHES does not define "
                f"usably ({exc}). Add it to CACHES or name another alias."
            ) from exc
        if isinstance(cache, DummyCache):
            raise ConfigurationError(
                f"the {self.description} is a DummyCache, which stores nothing: every one-time "
                "value would be lost and every replay check would pass. Configure a real backend."
            )
        return cache

    def _key(self, key: str) -> str:
        if not isinstance(key, str):
            raise TypeError(f"store keys are strings, got {type(key).__name__}")
        if _KEY.match(key):
            return f"{self.namespace}:{key}"
        return (
            f"{self.namespace}:#sha256:"
            + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        )

    @staticmethod
    def _timeout(ttl: float) -> int:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        return max(1, math.ceil(ttl))  # memcached takes whole seconds; never round down to "now"

    def _call(self, name: str, *args: Any) -> Any:
        cache = self._cache()
        try:
            return getattr(cache, name)(*args)
        except QlikAuthError:
            raise
        except Exception as exc:  # backends raise their client's errors (pymemcache, redis, DB)
            raise StoreUnavailable(
                f"the {self.description} failed ({type(exc).__name__}: {str(exc)[:160]}). One-time "
                "sign-in state cannot be checked, so the request is refused: check the cache "
                "server and settings.CACHES.",
                store=self.description,
            ) from exc

    def put(self, key: str, value: bytes, ttl: float) -> None:
        self._call("set", self._key(key), bytes(value), self._timeout(ttl))

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(self._call("add", self._key(key), bytes(value), self._timeout(ttl)))

    def get(self, key: str) -> bytes | None:
        value = self._call("get", self._key(key))
        return bytes(value) if value is not None else None

    def take(self, key: str) -> bytes | None:
        k = self._key(key)
        value = self._call("get", k)
        if value is None:
            return None
        # Only the caller whose delete removed the entry gets the value.
        return bytes(value) if self._call("delete", k) else None

    def delete(self, key: str) -> None:
        self._call("delete", self._key(key))

    def lock(self, name: str, ttl: float, wait: float = 0.0) -> StoreLock:
        """An owner-checked lock under ``name`` (see :class:`~qlikauth.store.locks.StoreLock`).

        Django's cache API has no compare-and-delete, so giving the lock back checks two things:
        the key still holds this holder's token, and at least a tenth of the ttl (0.5 s or more)
        is left. A lock that old is left to expire on its own: whoever holds it now stays its
        only holder, since ``add`` cannot take a key that is still there.
        """
        k = self._key(name)
        token = secrets.token_bytes(16)
        timeout = self._timeout(ttl)
        margin = max(0.5, 0.1 * ttl)
        taken_at = [0.0]

        def try_acquire() -> bool:
            now = time.monotonic()
            if self._call("add", k, token, timeout):
                taken_at[0] = now
                return True
            return False

        def release_owned() -> bool:
            if time.monotonic() >= taken_at[0] + ttl - margin:
                return False  # too close to expiry to tell whose it is: let it expire
            if self._call("get", k) != token:
                return False
            return bool(self._call("delete", k))

        return StoreLock(
            name, ttl, wait, poll=0.02, try_acquire=try_acquire, release_owned=release_owned
        )


def django_cache_store_from_setting(
    setting: str,
    *,
    namespace: str = "qlikauth",
    max_items: int | None = None,
    when_full: str = "evict",
) -> DjangoCacheStore:
    """``"django-cache"`` or ``"django-cache:ALIAS"`` -> a :class:`DjangoCacheStore`."""
    _scheme, _, alias = setting.partition(":")
    alias = alias.strip() or "default"
    return DjangoCacheStore(alias, namespace=namespace, max_items=max_items, when_full=when_full)
