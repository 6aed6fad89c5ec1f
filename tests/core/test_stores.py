"""The state stores: MemoryStore (injected clock) and RedisStore against a real redis-server.

Every store runs the same contract; then what each adds: the replay-cache mode that refuses
when full, namespacing, atomic take across processes, and typed errors when Redis is down.
"""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys

import pytest
from _support import free_port_number

from qlikauth.exceptions import (
    ConfigurationError,
    QlikAuthError,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from qlikauth.store import MemoryStore, StateStore, open_store
from qlikauth.store.redis_store import RedisStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue("redis_url")
    s = RedisStore(url, namespace="t")
    yield s
    s.close()


def test_contract(store):
    assert isinstance(store, StateStore)
    store.put("a", b"1", ttl=10)
    assert store.get("a") == b"1"
    assert store.add("a", b"2", ttl=10) is False and store.get("a") == b"1"
    assert store.take("a") == b"1" and store.take("a") is None and store.get("a") is None
    assert store.add("b", b"x", ttl=10) is True
    store.delete("b")
    assert store.get("b") is None
    store.put("c", b"\x00\xff binary", ttl=10)
    assert store.take("c") == b"\x00\xff binary"


def test_memory_expiry_with_an_injected_clock():
    clock = Clock()
    s = MemoryStore(clock=clock)
    s.put("short", b"x", ttl=5)
    clock.now += 4.9
    assert s.get("short") == b"x"
    clock.now += 0.2
    assert s.get("short") is None and s.take("short") is None
    assert s.add("short", b"y", ttl=10) is True and s.get("short") == b"y"


def test_memory_evict_mode_drops_what_expires_first():
    s = MemoryStore(max_items=100)
    for i in range(1000):
        s.put(f"k{i}", b"v", ttl=60 + i)
    assert 90 <= len(s) <= 100
    assert s.get("k999") == b"v" and s.get("k0") is None


def test_memory_replay_mode_refuses_when_full_and_forgets_nothing():
    clock = Clock()
    s = MemoryStore(max_items=3, when_full="refuse", clock=clock)
    for i in range(3):
        assert s.add(f"id{i}", b"1", ttl=60)
    with pytest.raises(StoreFull) as info:
        s.add("id3", b"1", ttl=60)
    assert "replay cache is full" in str(info.value) and "max_items" in str(info.value)
    assert isinstance(info.value, StoreError) and info.value.status == 503
    with pytest.raises(StoreFull):
        s.put("id4", b"1", ttl=60)
    # every consumed id is still known: each replay is still refused
    assert [s.add(f"id{i}", b"1", ttl=60) for i in range(3)] == [False, False, False]
    s.put("id0", b"2", ttl=60)  # rewriting a present key needs no room
    # once entries expire there is room again
    clock.now += 61
    assert s.add("id3", b"1", ttl=60) is True


def test_redis_replay_mode_refuses_when_full(redis_url):
    s = RedisStore(redis_url, namespace="replay", max_items=3, when_full="refuse")
    for i in range(3):
        assert s.add(f"id{i}", b"1", ttl=60)
    assert len(s) == 3
    with pytest.raises(StoreFull) as info:
        s.add("id3", b"1", ttl=60)
    assert "full (3 live entries)" in str(info.value) and "127.0.0.1" in str(info.value)
    assert [s.add(f"id{i}", b"1", ttl=60) for i in range(3)] == [False, False, False]
    # a taken (or deleted) entry frees its place in the index
    assert s.take("id0") == b"1"
    s.delete("id1")
    assert len(s) == 1
    assert s.add("id3", b"1", ttl=60) and s.add("id4", b"1", ttl=60)
    with pytest.raises(StoreFull):
        s.put("id5", b"1", ttl=60)


def test_redis_evict_mode_drops_what_expires_first(redis_url):
    s = RedisStore(redis_url, namespace="cache", max_items=5, when_full="evict")
    for i in range(20):
        s.put(f"k{i}", b"v", ttl=60 + i)
    assert len(s) == 5
    assert [s.get(f"k{i}") for i in (15, 19)] == [b"v", b"v"] and s.get("k0") is None


def test_redis_ttl_is_set_in_redis(redis_url):
    import redis

    s = RedisStore(redis_url, namespace="ttl")
    s.put("a", b"1", ttl=30)
    assert s.add("b", b"1", ttl=0.5)
    raw = redis.Redis.from_url(redis_url)
    assert 29_000 < raw.pttl("ttl:a") <= 30_000
    assert 0 < raw.pttl("ttl:b") <= 500
    raw.close()


def test_namespaces_do_not_meet(redis_url):
    a, b = RedisStore(redis_url, namespace="portal-a"), RedisStore(redis_url, namespace="portal-b")
    a.put("state", b"A", ttl=10)
    assert b.get("state") is None and b.take("state") is None
    assert b.add("state", b"B", ttl=10) is True
    assert a.take("state") == b"A" and b.take("state") == b"B"


def test_any_key_works_odd_ones_under_a_digest(store):
    # Some keys come from requests (an assertion id, InResponseTo): blanks, newlines, non-ASCII and
    # very long ones must work, each distinct, and never become another key.
    odd = ["has space", "new\nline", "x" * 201, "x" * 202, "caf\u00e9", "", "a b", "a_b"]
    for i, key in enumerate(odd):
        assert store.add(key, str(i).encode(), ttl=10) is True
    for i, key in enumerate(odd):
        assert store.add(key, b"again", ttl=10) is False
        assert store.take(key) == str(i).encode()
    if not isinstance(store, MemoryStore):
        with pytest.raises(TypeError):
            store.put(b"bytes", b"v", ttl=1)  # type: ignore[arg-type]


def test_odd_keys_are_digests_in_redis(redis_url):
    import redis

    s = RedisStore(redis_url, namespace="odd")
    s.put("has space", b"1", ttl=10)
    s.put("plain:key", b"2", ttl=10)
    raw = redis.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in raw.keys("odd:*"))
    raw.close()
    assert keys[0].startswith("odd:#sha256:") and " " not in keys[0] and keys[1] == "odd:plain:key"


def test_bad_namespaces_are_refused(redis_url):
    with pytest.raises(ConfigurationError):
        RedisStore(redis_url, namespace="a b")


def _taker(url: str, keys: list[str], barrier, out) -> None:
    s = RedisStore(url, namespace="race")
    barrier.wait(60)
    out.put([k for k in keys if s.take(k) is not None])


def test_take_is_used_once_across_processes(redis_url):
    s = RedisStore(redis_url, namespace="race")
    keys = [f"state-{i}" for i in range(300)]
    for k in keys:
        s.put(k, b"v", ttl=60)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_taker, args=(redis_url, keys, barrier, out)) for _ in range(3)]
    for p in procs:
        p.start()
    won = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    taken = [k for w in won for k in w]
    assert sorted(taken) == sorted(keys), "every value taken exactly once, by one process"


def test_take_falls_back_to_lua_without_getdel(redis_factory):
    # Redis < 6.2 has no GETDEL: the same server with the command renamed away shows the fallback.
    server = redis_factory(extra={"rename-command": ["GETDEL", ""]})
    s = RedisStore(server.url, namespace="old")
    s.put("a", b"1", ttl=10)
    assert s.take("a") == b"1" and s.take("a") is None
    assert s._getdel is False  # noqa: SLF001 - the fallback path was taken, not GETDEL


def test_replay_cache_on_an_evicting_redis_is_refused(redis_factory):
    server = redis_factory(extra={"maxmemory": "64mb", "maxmemory-policy": "allkeys-lru"})
    s = RedisStore(server.url, namespace="replay", when_full="refuse", max_items=10)
    with pytest.raises(StoreFull) as info:
        s.add("id", b"1", ttl=10)
    assert "allkeys-lru" in str(info.value) and "noeviction" in str(info.value)
    # a plain cache on the same Redis is fine
    assert RedisStore(server.url, namespace="cache").add("id", b"1", ttl=10)


def test_redis_out_of_memory_is_store_full(redis_factory):
    server = redis_factory(extra={"maxmemory": "2mb", "maxmemory-policy": "noeviction"})
    s = RedisStore(server.url, namespace="oom", when_full="refuse")
    with pytest.raises(StoreFull) as info:
        for i in range(100_000):
            s.add(f"id{i}", b"x" * 1024, ttl=600)
    assert "out of memory" in str(info.value) and "Nothing was evicted" in str(info.value)
    assert s.get("id0") == b"x" * 1024  # what was stored is still there: reads keep working


def test_redis_down_is_a_clear_typed_error(redis_factory):
    server = redis_factory()
    url = server.url.replace("redis://", "redis://:s3cret-pass@")
    server.stop()
    s = RedisStore(url, namespace="down", timeout=0.5)
    for call in (
        lambda: s.put("a", b"1", 5),
        lambda: s.add("a", b"1", 5),
        lambda: s.get("a"),
        lambda: s.take("a"),
        lambda: s.delete("a"),
        s.ping,
    ):
        with pytest.raises(StoreUnavailable) as info:
            call()
        msg = str(info.value)
        assert f"127.0.0.1:{server.port}" in msg and "cannot be reached" in msg
        assert "redis-server" in msg and "STATE_STORE" in msg
        assert "s3cret" not in msg and "s3cret" not in (info.value.store or "")
        assert isinstance(info.value, QlikAuthError) and info.value.status == 503


def test_redis_comes_back_after_a_restart(redis_factory):
    server = redis_factory()
    s = RedisStore(server.url, namespace="restart", timeout=0.5)
    s.put("a", b"1", ttl=30)
    server.stop()
    with pytest.raises(StoreUnavailable):
        s.get("a")
    server.start()
    assert s.get("a") is None  # no persistence: the value is gone, and the store answers again
    assert s.add("a", b"2", ttl=30) is True


def test_open_store_settings(redis_url, monkeypatch):
    import qlikauth.store

    monkeypatch.setattr(qlikauth.store, "_SCHEMES", {})  # as in a process without django_qlikauth
    assert isinstance(open_store(None), MemoryStore)
    assert isinstance(open_store("memory"), MemoryStore)
    m = MemoryStore()
    assert open_store(m) is m
    r = open_store(redis_url, namespace="x", max_items=5, when_full="refuse")
    assert isinstance(r, RedisStore) and r.namespace == "x"
    r.put("k", b"v", ttl=5)
    assert r.take("k") == b"v"
    replay = open_store("memory", max_items=1, when_full="refuse")
    replay.add("a", b"1", ttl=10)
    with pytest.raises(StoreFull):
        replay.add("b", b"1", ttl=10)
    with pytest.raises(ConfigurationError, match="memory"):
        open_store("memcached://x")
    with pytest.raises(ConfigurationError, match="INSTALLED_APPS"):
        open_store("django-cache:default")
    with pytest.raises(ConfigurationError) as info:
        open_store("bogus://user:hunter2@host")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError):
        open_store(42)  # type: ignore[arg-type]


def _tls_redis(redis_factory, certs, cert: str, key: str):
    port = free_port_number()
    server = redis_factory(
        extra={
            "tls-port": str(port),
            "tls-cert-file": str(certs / cert),
            "tls-key-file": str(certs / key),
            "tls-ca-cert-file": str(certs / "root.pem"),
            "tls-auth-clients": "no",
        }
    )
    return server, port


def test_rediss_verifies_the_servers_certificate_and_name(redis_factory, tmp_path):
    from qlikauth.certgen import generate_certificates, issue_server_certificate

    generate_certificates(tmp_path / "ca", ["localhost", "127.0.0.1"])
    generate_certificates(tmp_path / "other", ["localhost"])
    ca = tmp_path / "ca"
    issue_server_certificate(ca, ["qs9.example.com"], ca / "wrong.pem", ca / "wrong_key.pem")
    _good, port = _tls_redis(redis_factory, ca, "server.pem", "server_key.pem")
    s = RedisStore(f"rediss://localhost:{port}/0?ssl_ca_certs={ca / 'root.pem'}", namespace="tls")
    s.put("a", b"1", ttl=10)
    assert s.take("a") == b"1"
    with pytest.raises(StoreUnavailable, match="cannot be reached"):  # another CA
        RedisStore(
            f"rediss://localhost:{port}/0?ssl_ca_certs={tmp_path / 'other' / 'root.pem'}"
        ).get("a")
    _wrong, port2 = _tls_redis(redis_factory, ca, "wrong.pem", "wrong_key.pem")
    with pytest.raises(
        StoreUnavailable
    ) as info:  # the right CA, but a certificate for another name
        RedisStore(f"rediss://localhost:{port2}/0?ssl_ca_certs={ca / 'root.pem'}").get("a")
    assert "certificate" in str(info.value).lower() or "hostname" in str(info.value).lower()


@pytest.mark.parametrize(
    "query", ["ssl_cert_reqs=none", "ssl_cert_reqs=optional", "ssl_check_hostname=false"]
)
def test_rediss_urls_that_turn_off_verification_are_refused(query):
    with pytest.raises(ConfigurationError, match="verification"):
        RedisStore(f"rediss://:pw@redis.example.com:6380/0?{query}")


def test_store_imports_without_redis_py():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'redis':\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from qlikauth.store import StateStore, MemoryStore, open_store\n"
        "open_store('memory')\n"
        "try:\n"
        "    open_store('redis://127.0.0.1:1/0')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'qlikauth[redis]'" in out.stdout


def test_store_key_digest_is_the_one_the_keys_already_in_stores_use():
    """Registry and token-cache keys share qlikauth.store._keys.digest: the same bytes as before it
    was shared, so the keys a running portal wrote to Redis are found after an upgrade."""
    import hashlib

    from qlikauth.store._keys import digest

    assert (
        digest("sub", "https://idp", "alice")
        == hashlib.sha256(b"sub\x00https://idp\x00alice\x00").hexdigest()[:40]
    )
    assert digest("ab", "c") != digest("a", "bc")
