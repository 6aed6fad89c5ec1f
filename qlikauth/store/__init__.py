"""Pluggable stores for state that every instance of a portal must share.

One-time values (OIDC ``state``/``nonce``, SAML request ids, consumed assertion ids, a
sign-in in progress, the user -> proxy sessions registry for logout) must be seen by whichever
portal process handles the browser's next request, and used at most once. Every store
implements the :class:`StateStore` protocol:

* :class:`MemoryStore` -- one process only (tests, a single-process portal);
* :class:`~qlikauth.store.redis_store.RedisStore` -- Redis, shared by every process and host
  (``pip install 'qlikauth[redis]'``);
* ``django_qlikauth.store.DjangoCacheStore`` -- a Django cache alias (memcached, Redis,
  database), registered as the ``django-cache:`` scheme when ``django_qlikauth`` is installed.

:class:`~qlikauth.store.sealed.SealedStore` wraps any of them and keeps only AES-256-GCM
ciphertexts in it (keys from the ``STORE_KEYS`` setting), for bearer values at rest.

:func:`open_store` turns the ``STATE_STORE`` setting (``"memory"``, ``"redis://..."``,
``"django-cache:default"``) into a store. Failures are typed:
:class:`~qlikauth.exceptions.StoreUnavailable`
when the store cannot be reached, :class:`~qlikauth.exceptions.StoreFull` when a replay cache is
full; a one-time value that cannot be checked is refused, never waved through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..exceptions import ConfigurationError
from .locks import StoreLock
from .memory import MemoryStore
from .sealed import SealedStore, StoreKeys, new_store_key

if TYPE_CHECKING:
    from .redis_store import RedisStore

__all__ = [
    "StateStore",
    "StoreLock",
    "MemoryStore",
    "RedisStore",
    "SealedStore",
    "StoreKeys",
    "new_store_key",
    "WhenFull",
    "open_store",
    "register_store_scheme",
    "known_store_schemes",
]

#: What a bounded store does when it is full of live entries: ``"evict"`` drops the entries
#: closest to expiry (a cache), ``"refuse"`` raises :class:`~qlikauth.exceptions.StoreFull`
#: (a replay cache: forgetting a consumed id would let it be replayed).
WhenFull = Literal["evict", "refuse"]


@runtime_checkable
class StateStore(Protocol):
    """What qlikauth needs from shared state. Values are bytes; keys are short strings.

    Every method may raise :class:`~qlikauth.exceptions.StoreUnavailable`; ``put`` and ``add``
    may raise :class:`~qlikauth.exceptions.StoreFull` in replay-cache mode. A store of your own
    implements all six methods (``lock`` can build on :class:`~qlikauth.store.locks.StoreLock`).
    """

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

    def lock(self, name: str, ttl: float, wait: float = 0.0) -> StoreLock:
        """An owner-checked lock, ``with store.lock(name, ttl, wait) as held:`` (see
        :class:`~qlikauth.store.locks.StoreLock`): released only while it is still this
        holder's, so a holder slower than ``ttl`` cannot release the next holder's lock."""


#: ``factory(setting, namespace=..., max_items=..., when_full=...)`` for a setting prefix.
StoreFactory = Callable[..., StateStore]
_SCHEMES: dict[str, StoreFactory] = {}


def register_store_scheme(scheme: str, factory: StoreFactory) -> None:
    """Teach :func:`open_store` a setting prefix: ``factory(setting, namespace=..., max_items=...,
    when_full=...)`` builds the store.

    ``django_qlikauth`` registers ``"django-cache"`` when its app is ready, so the core never
    imports Django.
    """
    _SCHEMES[scheme.lower()] = factory


def known_store_schemes() -> frozenset[str]:
    """The setting prefixes :func:`open_store` takes (``django-cache`` even before Django registers
    it)."""
    return frozenset({"memory", "redis", "rediss", "unix", "django-cache", *_SCHEMES})


def open_store(
    setting: str | StateStore | None,
    *,
    namespace: str = "qlikauth",
    max_items: int | None = None,
    when_full: WhenFull = "evict",
    keys: StoreKeys | str | None = None,
) -> StateStore:
    """The store a ``STATE_STORE`` setting names.

    * ``None`` or ``"memory"``: a :class:`MemoryStore` (this process only);
    * ``"redis://[:password@]host:port/db"``, ``"rediss://..."`` (TLS, certificate verified),
      ``"unix:///run/redis.sock?db=0"``: a :class:`~qlikauth.store.redis_store.RedisStore`;
    * ``"django-cache:ALIAS"`` (``"django-cache"`` alone means ``default``): a Django cache,
      available once ``django_qlikauth`` is in ``INSTALLED_APPS``;
    * a :class:`StateStore` object is returned as it is.

    ``namespace`` prefixes every key (several portals or purposes can share one Redis);
    ``max_items``/``when_full`` bound the store (see :data:`WhenFull`; memory stores hold
    100,000 entries unless told otherwise, Redis is bounded by its memory unless ``max_items``
    is given); a replay cache passes ``when_full="refuse"``. With ``keys`` (the ``STORE_KEYS``
    setting) the store is wrapped in a :class:`SealedStore`: values are kept encrypted.
    """
    if keys is not None:
        store = open_store(setting, namespace=namespace, max_items=max_items, when_full=when_full)
        return store if isinstance(store, SealedStore) else SealedStore(store, keys)
    if setting is None:
        return MemoryStore(max_items=max_items or 100_000, when_full=when_full)
    if not isinstance(setting, str):
        if isinstance(setting, StateStore):
            return setting
        raise ConfigurationError(
            f"STATE_STORE must be a string such as 'memory' or 'redis://host:6379/0', or a "
            f"StateStore object; got {type(setting).__name__}."
        )
    text = setting.strip()
    scheme = text.split(":", 1)[0].lower() if ":" in text else text.lower()
    if scheme == "memory":
        return MemoryStore(max_items=max_items or 100_000, when_full=when_full)
    if scheme in ("redis", "rediss", "unix"):
        from .redis_store import RedisStore

        return RedisStore(text, namespace=namespace, max_items=max_items, when_full=when_full)
    factory = _SCHEMES.get(scheme)
    if factory is not None:
        return factory(text, namespace=namespace, max_items=max_items, when_full=when_full)
    if scheme == "django-cache":
        raise ConfigurationError(
            "STATE_STORE 'django-cache:...' needs Django: add 'django_qlikauth' to INSTALLED_APPS "
            "(it registers the scheme when the app is ready)."
        )
    shown = text.split("@")[-1] if "@" in text else text
    raise ConfigurationError(
        f"STATE_STORE {shown[:80]!r} is not a store qlikauth knows: use 'memory', "
        "'redis://host:6379/0' (rediss:// for TLS, unix:///path.sock) or 'django-cache:ALIAS'."
    )


def __getattr__(name: str) -> Any:
    # RedisStore is imported on first use, so `import qlikauth.store` works without redis-py.
    if name == "RedisStore":
        from .redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
