"""DjangoCacheStore on real Django caches: local memory, and Django's Redis backend on a real
redis-server."""

from __future__ import annotations

import pytest
from _django_setup import configure_django
from _support import concurrent_takes

configure_django()

from django.test import override_settings  # noqa: E402
from django_qlikauth.store import DjangoCacheStore  # noqa: E402

from qlikauth.exceptions import ConfigurationError, StoreUnavailable  # noqa: E402
from qlikauth.store import StateStore, open_store  # noqa: E402

LOCMEM = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "qlikauth-tests",
    }
}


def _contract(s: StateStore) -> None:
    assert isinstance(s, StateStore)
    s.put("a", b"1", ttl=10)
    assert s.get("a") == b"1"
    assert s.add("a", b"2", ttl=10) is False and s.get("a") == b"1"
    assert s.take("a") == b"1" and s.take("a") is None
    assert s.add("b", b"x", ttl=0.2) is True  # rounded up to a whole second, never to "now"
    assert s.get("b") == b"x"
    s.delete("b")
    assert s.get("b") is None
    for odd in ("has space", "x" * 300, "caf\u00e9"):  # memcached would refuse these as they are
        assert s.add(odd, b"1", ttl=10) is True and s.add(odd, b"1", ttl=10) is False
        assert s.take(odd) == b"1"


@override_settings(CACHES=LOCMEM)
def test_locmem_contract_and_the_setting():
    _contract(DjangoCacheStore())
    s = open_store("django-cache:default", namespace="portal")
    assert isinstance(s, DjangoCacheStore) and s.alias == "default"
    _contract(s)
    assert open_store("django-cache").alias == "default"  # type: ignore[attr-defined]


@override_settings(CACHES=LOCMEM)
def test_take_once_under_threads():
    s = DjangoCacheStore()
    for round_ in range(20):
        s.put(f"state{round_}", b"v", ttl=10)
        assert concurrent_takes(s, f"state{round_}", 6) == 1


def test_django_redis_backend_is_shared(redis_url):
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    }
    with override_settings(CACHES=caches):
        s = DjangoCacheStore(namespace="dj")
        _contract(s)
        s.put("shared", b"seen", ttl=30)
    # what another process would see: the key is in the real Redis
    import redis

    raw = redis.Redis.from_url(redis_url)
    assert any(b"dj:shared" in k for k in raw.keys("*"))
    raw.close()


def test_django_redis_backend_down_is_store_unavailable(redis_factory):
    server = redis_factory()
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }
    server.stop()
    with override_settings(CACHES=caches):
        with pytest.raises(StoreUnavailable) as info:
            DjangoCacheStore().add("id", b"1", ttl=10)
    assert "Django cache 'default'" in str(info.value) and "CACHES" in str(info.value)


@override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}})
def test_dummy_cache_is_refused():
    with pytest.raises(ConfigurationError, match="DummyCache"):
        DjangoCacheStore().add("id", b"1", ttl=10)


@override_settings(CACHES=LOCMEM)
def test_unknown_alias_and_replay_mode_are_refused():
    with pytest.raises(ConfigurationError, match="CACHES"):
        DjangoCacheStore("nope").get("x")
    with pytest.raises(ConfigurationError, match="replay"):
        open_store("django-cache:default", when_full="refuse")


@override_settings(
    CACHES=LOCMEM,
    QLIKAUTH={
        "QPS_NODES": "https://localhost:1",
        "CERTS": "/nonexistent",
        "HUB_URL": "https://localhost/hub/",
        "STATE_STORE": "django-cache:default",
    },
)
def test_the_state_store_setting_names_a_django_cache():
    from django_qlikauth.conf import get_runtime

    runtime = get_runtime()
    assert isinstance(runtime.store, DjangoCacheStore) and runtime.store.alias == "default"
    runtime.store.put("state:x", b"1", ttl=10)
    assert DjangoCacheStore(namespace="qlikauth").take("state:x") == b"1"
    with pytest.raises(ConfigurationError, match="replay"):
        runtime.replay_cache  # noqa: B018 - a Django cache evicts: no replay cache on it


def test_the_state_store_setting_reaches_redis_through_django(redis_url):
    from django_qlikauth.conf import get_runtime

    from qlikauth.store.redis_store import RedisStore

    settings_ = {
        "QPS_NODES": "https://localhost:1",
        "CERTS": "/nonexistent",
        "HUB_URL": "https://localhost/hub/",
        "STATE_STORE": redis_url,
    }
    with override_settings(QLIKAUTH=settings_):
        runtime = get_runtime()
        assert isinstance(runtime.store, RedisStore) and isinstance(
            runtime.replay_cache, RedisStore
        )
        assert runtime.replay_cache.add("_id", b"1", ttl=10) and not runtime.replay_cache.add(
            "_id", b"1", ttl=10
        )


@override_settings(CACHES=LOCMEM)
def test_locmem_lock_a_slow_holder_does_not_release_the_next_holders_lock():
    import time

    one, two = DjangoCacheStore(namespace="locks"), DjangoCacheStore(namespace="locks")
    a = one.lock("fetch:ann", ttl=1)
    assert a.acquire() is True
    assert two.lock("fetch:ann", ttl=1).acquire() is False
    time.sleep(1.1)  # the slow holder overran its ttl: the cache expired the entry
    nxt = two.lock("fetch:ann", ttl=30)
    assert nxt.acquire() is True
    assert a.release() is False  # too late to be sure it is A's: left alone
    assert one.lock("fetch:ann", ttl=30).acquire() is False  # the next holder still has it
    with one.lock("fetch:bob", ttl=30) as held:  # a prompt holder releases its own lock
        assert held is True
    assert one.lock("fetch:bob", ttl=30).acquire() is True
    assert nxt.release() is True
    with one.lock("fetch:ann", ttl=30) as held:
        assert held is True


@override_settings(CACHES=LOCMEM)
def test_locmem_lock_is_not_released_by_a_holder_whose_token_was_replaced():
    s = DjangoCacheStore(namespace="locks")
    a = s.lock("fetch:cy", ttl=30)
    assert a.acquire() is True
    s.delete("fetch:cy")  # gone early (culled, evicted) and taken by someone else
    b = s.lock("fetch:cy", ttl=30)
    assert b.acquire() is True
    assert a.release() is False
    assert s.lock("fetch:cy", ttl=30).acquire() is False
    assert b.release() is True
