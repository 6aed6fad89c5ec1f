"""The Redis :class:`~qlikauth.store.StateStore`: one-time state shared by every portal process.

``take`` is ``GETDEL`` (Redis >= 6.2; a Lua script on older servers), ``add`` is ``SET NX``,
every key carries its TTL (``PX``) and the namespace prefix. With ``max_items`` the namespace is
bounded by an index (a sorted set by expiry) kept in step by Lua scripts, so the check and the
write are one atomic step on the server: ``when_full="refuse"`` raises
:class:`~qlikauth.exceptions.StoreFull` (a replay cache), ``"evict"`` drops the entries closest
to expiry. A replay cache also checks that Redis itself cannot evict its keys
(``maxmemory-policy``), since an evicted consumed id could be replayed.

Every failure to reach Redis is a :class:`~qlikauth.exceptions.StoreUnavailable` naming the
store (without its password) and what to do; nothing is waved through when Redis is down.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ..exceptions import ConfigurationError, StoreFull, StoreUnavailable
from .locks import StoreLock

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import LockNotOwnedError
    from redis.retry import Retry
except ImportError as _exc:  # pragma: no cover - exercised by an import test without the extra
    raise ImportError(
        "the Redis state store needs redis-py: pip install 'qlikauth[redis]'"
    ) from _exc

if TYPE_CHECKING:
    from . import WhenFull

__all__ = ["RedisStore"]

log = logging.getLogger("qlikauth.store")

# Keys are what callers choose, some from a request (an assertion id, InResponseTo): printable
# ASCII without blanks, up to 200 characters, is used as it is; anything else is stored under a
# digest of it. Neither form has a blank, so the index key below can never be a caller's key.
_KEY = re.compile(r"[\x21-\x7e]{1,200}\Z")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")

# KEYS[1] data key, KEYS[2] index; ARGV: value, ttl ms, max items, "refuse"|"evict", "nx"|"put".
# Returns 1 stored, 0 present (nx), -1 full (refuse).
_BOUNDED_SET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if ARGV[5] == 'nx' and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if not redis.call('ZSCORE', KEYS[2], KEYS[1]) then
  local n = redis.call('ZCARD', KEYS[2])
  if n >= max then
    if ARGV[4] == 'refuse' then
      return -1
    end
    local drop = redis.call('ZRANGE', KEYS[2], 0, n - max)
    for _, k in ipairs(drop) do
      redis.call('DEL', k)
      redis.call('ZREM', KEYS[2], k)
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
"""
# KEYS[1] data key, KEYS[2] index (may be absent): read and delete in one step.
_TAKE = """
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('DEL', KEYS[1])
end
if KEYS[2] then
  redis.call('ZREM', KEYS[2], KEYS[1])
end
return v
"""
_DELETE = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
return 1
"""

# URL options that would switch off verification of a rediss:// server.
_UNSAFE_TLS = {
    ("ssl_cert_reqs", "none"),
    ("ssl_cert_reqs", "optional"),
    ("ssl_check_hostname", "false"),
    ("ssl_check_hostname", "0"),
    ("ssl_check_hostname", "no"),
}


def _describe_url(url: str) -> str:
    """The URL without its user info: what error messages and logs may show."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"


class RedisStore:
    """A :class:`~qlikauth.store.StateStore` on Redis.

    :param url: ``redis://[[user]:password@]host:port/db``, ``rediss://...`` (TLS, the server's
        certificate verified; options that turn that off are refused) or
        ``unix:///path/redis.sock?db=0``; or a ready ``redis.Redis`` client.
    :param namespace: prefix of every key (``<namespace>:<key>``), so several portals or
        purposes share one Redis without meeting.
    :param max_items: bound the namespace to this many live entries (kept by an index).
        ``None``: bounded only by Redis's memory.
    :param when_full: with ``max_items``: ``"evict"`` the entries closest to expiry, or
        ``"refuse"`` (a replay cache) with :class:`~qlikauth.exceptions.StoreFull`. In
        ``"refuse"`` mode the server's eviction policy is checked on first use.
    :param timeout: seconds for connecting and for each command (then ``StoreUnavailable``).
    """

    def __init__(
        self,
        url: str | Any,
        *,
        namespace: str = "qlikauth",
        max_items: int | None = None,
        when_full: WhenFull = "evict",
        timeout: float = 2.0,
    ) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
            raise ConfigurationError(
                f"namespace {namespace!r} must be 1-64 letters, digits and '_.:-'."
            )
        if max_items is not None and (
            isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1
        ):
            raise ConfigurationError(
                f"max_items must be a positive integer or None, got {max_items!r}."
            )
        if when_full not in ("evict", "refuse"):
            raise ConfigurationError(f"when_full must be 'evict' or 'refuse', got {when_full!r}.")
        if isinstance(url, str):
            self._client = self._connect(url, timeout)
            self.description = f"Redis state store {_describe_url(url)} (namespace {namespace!r})"
        else:
            self._client = url
            kw = getattr(getattr(url, "connection_pool", None), "connection_kwargs", {})
            where = (
                kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
            )
            self.description = f"Redis state store {where} (namespace {namespace!r})"
        self.namespace = namespace
        self._prefix = f"{namespace}:"
        self._index = f"{namespace}:index of live keys"  # has a blank: no caller key can be it
        self._max = max_items
        self._when_full = when_full
        self._getdel = True
        self._eviction_checked = when_full != "refuse"
        self._bounded_set = self._client.register_script(_BOUNDED_SET)
        self._take = self._client.register_script(_TAKE)
        self._delete = self._client.register_script(_DELETE)

    def __repr__(self) -> str:
        return f"RedisStore({self.description})"

    @staticmethod
    def _connect(url: str, timeout: float) -> Any:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                f"Redis URL {_describe_url(url)!r} must start with redis://, rediss:// or unix://."
            )
        for name, value in parse_qsl(parts.query):
            if (name.lower(), value.lower()) in _UNSAFE_TLS:
                raise ConfigurationError(
                    f"Redis URL option {name}={value} turns off verification of the Redis server's "
                    "certificate; remove it (give ssl_ca_certs=/path/ca.pem for a private CA)."
                )
        # rediss://: the server's certificate and name are checked whatever redis-py's defaults
        # (before 6.0 it did not check the name); the URL cannot turn that off (refused above).
        tls: dict[str, Any] = (
            {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
            if parts.scheme.lower() == "rediss"
            else {}
        )
        try:
            return redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # One quick retry reconnects after a dropped idle connection (Redis restarted);
                # redis-py's default (10 with backoff) would hold a browser for many seconds.
                retry=Retry(NoBackoff(), 1),
                **tls,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"Redis URL {_describe_url(url)!r} cannot be used: {exc}"
            ) from None

    # -- errors -------------------------------------------------------------------------
    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        if isinstance(exc, redis.TimeoutError):
            what = "did not answer in time"
        elif isinstance(exc, redis.AuthenticationError):
            what = "refused the credentials"
        elif isinstance(exc, redis.ConnectionError):
            what = "cannot be reached"
        else:
            what = "answered with an error"
        # redis-py's messages name host and port, never values or passwords.
        return StoreUnavailable(
            f"the {self.description} {what} ({type(exc).__name__}: {str(exc)[:160]}). One-time "
            "sign-in state cannot be checked, so the request is refused: check that redis-server "
            "is running and reachable, and that STATE_STORE (URL, password, TLS) points at it.",
            store=self.description,
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.OutOfMemoryError as exc:
            raise StoreFull(
                f"the {self.description} is out of memory (maxmemory reached with "
                "maxmemory-policy noeviction) and refuses writes: give Redis more memory or "
                "shorten lifetimes. Nothing was evicted.",
                store=self.description,
            ) from exc
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc

    def _key(self, key: str) -> str:
        if not isinstance(key, str):
            raise TypeError(f"store keys are strings, got {type(key).__name__}")
        if _KEY.match(key):
            return self._prefix + key
        return (
            self._prefix
            + "#sha256:"
            + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        )

    @staticmethod
    def _ms(ttl: float) -> int:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        return max(1, int(ttl * 1000))

    def _check_eviction(self) -> None:
        """A replay cache must not sit on a Redis that evicts keys when its memory is full."""
        if self._eviction_checked:
            return
        try:
            limit = self._client.config_get("maxmemory")
            policy = self._client.config_get("maxmemory-policy")
        except redis.ResponseError as exc:  # CONFIG disabled (managed Redis) or not permitted
            log.warning(
                "%s: cannot read maxmemory-policy (%s); make sure it is 'noeviction', or a "
                "full Redis may forget consumed one-time ids",
                self.description,
                exc,
            )
            self._eviction_checked = True
            return
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc
        maxmemory = int(limit.get("maxmemory", 0) or 0)
        pol = str(policy.get("maxmemory-policy", "noeviction"))
        if maxmemory and pol != "noeviction":
            raise StoreFull(
                f"the {self.description} is a replay cache, but Redis evicts keys when full "
                f"(maxmemory {maxmemory}, maxmemory-policy {pol}): an evicted consumed id could be "
                "replayed. Set maxmemory-policy noeviction (or maxmemory 0), or give qlikauth a "
                "Redis of its own.",
                store=self.description,
            )
        self._eviction_checked = True

    def _bounded(self, key: str, value: bytes, ttl: float, mode: str) -> int:
        self._check_eviction()
        result = self._call(
            self._bounded_set,
            keys=[key, self._index],
            args=[value, self._ms(ttl), self._max, self._when_full, mode],
        )
        if int(result) == -1:
            raise StoreFull(
                f"the {self.description} is full ({self._max} live entries) and is a replay "
                "cache, so it refuses rather than forgets a consumed id: raise max_items or "
                "shorten the entries' lifetime.",
                store=self.description,
            )
        return int(result)

    # -- the protocol -----------------------------------------------------------------------
    def put(self, key: str, value: bytes, ttl: float) -> None:
        k = self._key(key)
        if self._max is not None:
            self._bounded(k, value, ttl, "put")
            return
        self._check_eviction()
        self._call(self._client.set, k, value, px=self._ms(ttl))

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        k = self._key(key)
        if self._max is not None:
            return self._bounded(k, value, ttl, "nx") == 1
        self._check_eviction()
        return bool(self._call(self._client.set, k, value, px=self._ms(ttl), nx=True))

    def get(self, key: str) -> bytes | None:
        value = self._call(self._client.get, self._key(key))
        return bytes(value) if value is not None else None

    def take(self, key: str) -> bytes | None:
        k = self._key(key)
        if self._max is not None:
            value = self._call(self._take, keys=[k, self._index])
        elif self._getdel:
            try:
                value = self._client.getdel(k)
            except redis.ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise self._unavailable(exc) from exc
                # Redis < 6.2 has no GETDEL: the same read-and-delete as one Lua script.
                self._getdel = False
                value = self._call(self._take, keys=[k])
            except redis.RedisError as exc:
                raise self._unavailable(exc) from exc
        else:
            value = self._call(self._take, keys=[k])
        return bytes(value) if value is not None else None

    def delete(self, key: str) -> None:
        k = self._key(key)
        if self._max is not None:
            self._call(self._delete, keys=[k, self._index])
        else:
            self._call(self._client.delete, k)

    def lock(self, name: str, ttl: float, wait: float = 0.0) -> StoreLock:
        """An owner-checked lock under ``name``: redis-py's ``Lock`` (``SET NX PX`` to take it, a
        Lua compare-and-delete to give it back), so a holder whose lock expired cannot release
        the next holder's. Outside the ``max_items`` bound: a lock lives ``ttl`` at most.
        """
        # thread_local=False: the token belongs to this StoreLock, whichever thread releases it.
        held = self._client.lock(
            self._key(name), timeout=self._ms(ttl) / 1000, blocking=False, thread_local=False
        )

        def release_owned() -> bool:
            try:
                held.release()
            except LockNotOwnedError:
                return False  # expired, and perhaps another holder's now: left alone
            except redis.RedisError as exc:
                raise self._unavailable(exc) from exc
            return True

        return StoreLock(
            name,
            ttl,
            wait,
            poll=0.02,
            try_acquire=lambda: bool(self._call(held.acquire, blocking=False)),
            release_owned=release_owned,
        )

    def __len__(self) -> int:
        """Live entries in a bounded namespace (what the bound counts)."""
        if self._max is None:
            raise TypeError("len() needs max_items: an unbounded namespace is not counted")
        return int(self._call(self._bounded_len))

    def _bounded_len(self) -> int:
        t = self._client.time()
        now_ms = int(t[0]) * 1000 + int(t[1]) // 1000
        return int(self._client.zcount(self._index, now_ms + 1, "+inf"))

    def ping(self) -> None:
        """Check the store answers now (a startup or health check); raises ``StoreUnavailable``."""
        self._call(self._client.ping)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()
