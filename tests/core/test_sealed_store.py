"""SealedStore: bearer values kept as AES-256-GCM ciphertexts, on MemoryStore and a real Redis.

What a copy of the Redis data holds is checked by reading Redis directly (redis-py), not
through the store.
"""

from __future__ import annotations

import logging

import pytest
import redis

from qlikauth.exceptions import ConfigurationError
from qlikauth.store import (
    MemoryStore,
    SealedStore,
    StateStore,
    StoreKeys,
    new_store_key,
    open_store,
)
from qlikauth.store.redis_store import RedisStore
from qlikauth.store.sealed import sealed_for_bearer_values

TOKEN = b"eyJhbGciOiJFUzM4NCJ9.a-bearer-access-token.signature"


@pytest.fixture(params=["memory", "redis"])
def inner(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    s = RedisStore(request.getfixturevalue("redis_url"), namespace="sealed")
    yield s
    s.close()


def test_contract_through_the_seal(inner: StateStore):
    store = SealedStore(inner, [new_store_key("a")])
    assert isinstance(store, StateStore)
    store.put("tok:ann", TOKEN, ttl=10)
    assert store.get("tok:ann") == TOKEN
    assert store.add("tok:ann", b"other", ttl=10) is False and store.get("tok:ann") == TOKEN
    assert store.take("tok:ann") == TOKEN and store.take("tok:ann") is None
    assert store.add("tok:bob", b"", ttl=10) is True and store.get("tok:bob") == b""
    store.delete("tok:bob")
    assert store.get("tok:bob") is None
    with store.lock("fetch:ann", ttl=5) as held:
        assert held and store.lock("fetch:ann", ttl=5).acquire() is False


def test_the_raw_redis_value_holds_no_token(redis_url):
    store = SealedStore(RedisStore(redis_url, namespace="sealed"), [new_store_key("k2026")])
    store.put("tok:ann", TOKEN, ttl=30)
    raw = redis.Redis.from_url(redis_url)
    dump = {k: raw.get(k) for k in raw.scan_iter("sealed:*")}
    assert list(dump) == [b"sealed:tok:ann"]
    value = dump[b"sealed:tok:ann"]
    assert TOKEN not in value and b"bearer-access-token" not in value
    assert (
        value.startswith(b"qs1:k2026:") and len(value) == len(b"qs1:k2026:") + 12 + len(TOKEN) + 16
    )
    # The same value sealed twice is two different ciphertexts (a fresh nonce each time).
    store.put("tok:ann", TOKEN, ttl=30)
    assert raw.get("sealed:tok:ann") != value
    raw.close()


def test_rotation_the_first_key_seals_every_key_opens(caplog):
    inner = MemoryStore()
    old, new = new_store_key("old"), new_store_key("new")
    SealedStore(inner, [old]).put("tok:ann", TOKEN, ttl=10)
    rotated = SealedStore(inner, f"{new}, {old}")
    assert rotated.get("tok:ann") == TOKEN  # sealed by the old key, still opens
    rotated.put("tok:bob", TOKEN, ttl=10)
    assert inner.get("tok:bob").startswith(b"qs1:new:")
    retired = SealedStore(inner, [new])
    assert retired.get("tok:bob") == TOKEN
    with caplog.at_level(logging.WARNING, logger="qlikauth.store"):
        assert retired.get("tok:ann") is None  # the old key is gone: reads as absent
    assert "does not open" in caplog.text and TOKEN.decode() not in caplog.text


def test_a_ciphertext_opens_only_under_its_own_key_and_unaltered():
    inner = MemoryStore()
    store = SealedStore(inner, [new_store_key("a")])
    store.put("tok:ann", TOKEN, ttl=10)
    blob = inner.get("tok:ann")
    inner.put("tok:mallory", blob, ttl=10)  # copied under another user's key
    assert store.get("tok:mallory") is None
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    inner.put("tok:ann", flipped, ttl=10)
    assert store.get("tok:ann") is None
    inner.put("tok:ann", TOKEN, ttl=10)  # a value stored in clear before sealing
    assert store.get("tok:ann") is None
    other = SealedStore(inner, [new_store_key("a")])  # same id, another key
    store.put("tok:ann", TOKEN, ttl=10)
    assert other.get("tok:ann") is None


@pytest.mark.parametrize(
    "setting, says",
    [
        ("", "empty"),
        ("nocolon", "entry 1"),
        ("a:short", "32 bytes"),
        ("bad id:" + "A" * 43, "key id"),
        (["a:" + "A" * 43, "a:" + "B" * 43], "twice"),
    ],
)
def test_bad_keys_are_refused_by_name(setting, says):
    with pytest.raises(ConfigurationError, match=says) as info:
        StoreKeys(setting)
    assert "B" * 20 not in str(info.value)


def test_keys_never_show_their_material():
    entry = new_store_key("main")
    keys = StoreKeys({"main": entry.split(":", 1)[1]})
    assert keys.key_ids == ("main",) and entry.split(":", 1)[1] not in repr(keys)
    assert entry.split(":", 1)[1] not in repr(SealedStore(MemoryStore(), keys))


def test_shared_stores_need_keys_memory_does_not(redis_url, monkeypatch):
    monkeypatch.delenv("QLIKAUTH_STORE_KEYS", raising=False)
    memory = MemoryStore()
    assert sealed_for_bearer_values(memory, None, "tokens") is memory
    shared = RedisStore(redis_url, namespace="sealed")
    with pytest.raises(ConfigurationError, match="QLIKAUTH_STORE_KEYS") as info:
        sealed_for_bearer_values(shared, None, "Qlik Cloud access tokens")
    assert "kept in clear" in str(info.value)
    monkeypatch.setenv("QLIKAUTH_STORE_KEYS", new_store_key("env"))
    sealed = sealed_for_bearer_values(shared, None, "tokens")
    assert isinstance(sealed, SealedStore) and sealed.keys.key_ids == ("env",)
    assert sealed_for_bearer_values(sealed, None, "tokens") is sealed
    shared.close()


def test_open_store_with_keys_seals():
    store = open_store("memory", keys=new_store_key("a"))
    assert isinstance(store, SealedStore) and isinstance(store.inner, MemoryStore)
    with pytest.raises(ConfigurationError):
        SealedStore(store, new_store_key("b"))  # sealed once, not twice
