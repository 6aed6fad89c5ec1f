"""``store.lock``: an owner-checked lock on MemoryStore and on RedisStore (a real redis-server).

The case that matters: holder A is slower than the lock's ttl, the lock expires, holder B
takes it; when A finally gives it back, B's lock must stay. (The Django cache store runs the
same case in tests/django/test_store.py.)
"""

from __future__ import annotations

import threading
import time

import pytest

from qlikauth.exceptions import StoreUnavailable
from qlikauth.store import MemoryStore, StateStore, StoreLock
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
    s = RedisStore(request.getfixturevalue("redis_url"), namespace="locks")
    yield s
    s.close()


def test_one_holder_at_a_time_and_release_frees_it(store: StateStore):
    a = store.lock("fetch:ann", ttl=10)
    b = store.lock("fetch:ann", ttl=10)
    assert isinstance(a, StoreLock)
    with a as held:
        assert held is True and a.held
        assert b.acquire() is False  # one try: A has it
        assert store.lock("fetch:bob", ttl=10).acquire() is True  # another name is another lock
    assert a.held is False
    assert b.acquire() is True and b.release() is True
    assert b.release() is False  # released once


def test_a_waiter_gets_the_lock_when_the_holder_lets_go(store: StateStore):
    a = store.lock("fetch:ann", ttl=10)
    assert a.acquire()
    threading.Timer(0.2, a.release).start()
    started = time.monotonic()
    with store.lock("fetch:ann", ttl=10, wait=5) as held:
        assert held is True
    assert 0.1 < time.monotonic() - started < 3


def test_a_waiter_gives_up_after_wait(store: StateStore):
    assert store.lock("fetch:ann", ttl=10).acquire()
    started = time.monotonic()
    with store.lock("fetch:ann", ttl=10, wait=0.3) as held:
        assert held is False
    assert 0.25 < time.monotonic() - started < 2


def test_memory_a_slow_holder_does_not_release_the_next_holders_lock():
    clock = Clock()
    store = MemoryStore(clock=clock)
    slow = store.lock("fetch:ann", ttl=5)
    assert slow.acquire()
    clock.now += 6  # the slow holder overran its ttl: the lock expired
    nxt = store.lock("fetch:ann", ttl=5)
    assert nxt.acquire() is True
    assert slow.release() is False  # not its lock any more
    assert store.lock("fetch:ann", ttl=5).acquire() is False  # the next holder still has it
    assert nxt.release() is True
    assert store.lock("fetch:ann", ttl=5).acquire() is True


def test_redis_a_slow_holder_does_not_release_the_next_holders_lock(redis_url):
    # Two stores: two portal processes with their own connections.
    one, two = RedisStore(redis_url, namespace="locks"), RedisStore(redis_url, namespace="locks")
    try:
        slow = one.lock("fetch:ann", ttl=0.2)
        assert slow.acquire()
        time.sleep(0.35)  # the slow holder overran its ttl: Redis expired the key
        nxt = two.lock("fetch:ann", ttl=30)
        assert nxt.acquire() is True
        assert slow.release() is False  # the compare-and-delete refused: not its token
        assert one.lock("fetch:ann", ttl=30).acquire() is False  # the next holder still has it
        assert one._client.pttl("locks:fetch:ann") > 25_000
        assert nxt.release() is True
        assert one.lock("fetch:ann", ttl=30).acquire() is True
    finally:
        one.close()
        two.close()


def test_redis_lock_errors_are_store_unavailable():
    from _support import free_port_number

    store = RedisStore(f"redis://127.0.0.1:{free_port_number()}/0", timeout=0.5)
    with pytest.raises(StoreUnavailable):
        store.lock("x", ttl=1).acquire()


def test_lock_arguments_are_checked():
    with pytest.raises(ValueError):
        MemoryStore().lock("x", ttl=0)
    with pytest.raises(ValueError):
        MemoryStore().lock("x", ttl=1, wait=-1)
