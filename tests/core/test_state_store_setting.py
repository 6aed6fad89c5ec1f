"""The STATE_STORE setting: checked with the other settings, made on first use by the web runtime,
and the same store for the Flask extension (Django: tests/django/test_store.py)."""

from __future__ import annotations

import pytest

from qlikauth.exceptions import ConfigurationError, StoreFull
from qlikauth.store import MemoryStore
from qlikauth.store.redis_store import RedisStore
from qlikauth.web.config import QlikAuthConfig
from qlikauth.web.runtime import build_runtime

BASE = {
    "QPS_NODES": "https://localhost:4243",
    "CERTS": "/nonexistent",
    "HUB_URL": "https://localhost/hub/",
}


def test_unset_or_memory_is_one_process():
    for value in (None, "memory", ""):
        runtime = build_runtime({**BASE, "STATE_STORE": value})
        assert isinstance(runtime.store, MemoryStore)
        assert (
            isinstance(runtime.replay_cache, MemoryStore)
            and runtime.replay_cache is not runtime.store
        )


def test_redis_setting_makes_a_shared_store_and_a_replay_cache(redis_url):
    runtime = build_runtime({**BASE, "STATE_STORE": redis_url})
    assert isinstance(runtime.store, RedisStore) and runtime.store.namespace == "qlikauth"
    runtime.store.put("state:x", b"1", ttl=10)
    assert (
        build_runtime({**BASE, "STATE_STORE": redis_url}).store.take("state:x") == b"1"
    )  # another process's view
    replay = runtime.replay_cache
    assert replay.add("_id", b"1", ttl=10) and not replay.add("_id", b"1", ttl=10)
    runtime.close()


def test_the_replay_cache_refuses_an_evicting_redis(redis_factory):
    server = redis_factory(extra={"maxmemory": "64mb", "maxmemory-policy": "allkeys-lru"})
    runtime = build_runtime({**BASE, "STATE_STORE": server.url})
    runtime.store.put("state:x", b"1", ttl=10)  # a plain store may evict: fine
    with pytest.raises(StoreFull, match="allkeys-lru"):
        runtime.replay_cache.add("_id", b"1", ttl=10)


def test_a_store_object_is_taken_as_it_is():
    store = MemoryStore()
    runtime = build_runtime({**BASE, "STATE_STORE": store})
    assert runtime.store is store
    runtime.close()  # not ours to close: nothing happens to it
    store.put("a", b"1", ttl=5)
    assert store.get("a") == b"1"


@pytest.mark.parametrize(
    "value", ["memcached://host", "redis//host", "https://user:hunter2@redis.example.com"]
)
def test_an_unknown_store_is_a_setting_problem(value):
    with pytest.raises(ConfigurationError) as info:
        QlikAuthConfig.from_mapping({**BASE, "STATE_STORE": value})
    assert "STATE_STORE" in str(info.value) and "hunter2" not in str(info.value)


def test_the_password_is_not_in_the_config_repr(redis_url):
    cfg = QlikAuthConfig.from_mapping(
        {**BASE, "STATE_STORE": redis_url.replace("redis://", "redis://:hunter2@")}
    )
    assert "hunter2" not in repr(cfg)


def test_flask_extension_uses_the_setting(redis_url):
    from flask import Flask
    from flask_qlikauth import QlikAuth

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="t",
        QLIKAUTH_QPS_NODES=BASE["QPS_NODES"],
        QLIKAUTH_CERTS=BASE["CERTS"],
        QLIKAUTH_HUB_URL=BASE["HUB_URL"],
        QLIKAUTH_STATE_STORE=redis_url,
    )
    ext = QlikAuth()
    ext.user_loader(lambda: None)
    ext.init_app(app)
    with app.app_context():
        store = ext.runtime.store
        assert isinstance(store, RedisStore)
        store.put("flask", b"1", ttl=10)
    assert RedisStore(redis_url, namespace="qlikauth").take("flask") == b"1"
