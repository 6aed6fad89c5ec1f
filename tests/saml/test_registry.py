"""The SSO session registry: IdP session -> proxy sessions, ended on every QPS node (real emulators,
real Redis)."""

from __future__ import annotations

import threading

import pytest

from qlikauth import QlikUser, QpsClient
from qlikauth.bridges.registry import SsoKey, SsoSessionRegistry
from qlikauth.emulator import EmulatorCluster
from qlikauth.store import MemoryStore, open_store

ISSUER = "https://idp.example.com/metadata"
ALICE = QlikUser("AZURE", "alice@example.com", [("group", "Sales")])
BOB = QlikUser("AZURE", "bob@example.com")


@pytest.fixture
def cluster(certs_dir):
    with EmulatorCluster(nodes=2, certs_dir=certs_dir, host="localhost", bind="127.0.0.1") as c:
        yield c


def _qps(cluster) -> QpsClient:
    return QpsClient([n.qps_url for n in cluster.nodes], cluster.nodes[0].certs_dir)


def _live(cluster, user):
    return [s for n in cluster.nodes for s in n.state.sessions(user=user)]


def test_end_deletes_recorded_sessions_on_every_node(cluster):
    qps = _qps(cluster)
    registry = SsoSessionRegistry(MemoryStore())
    # alice has two IdP sessions (two browsers); each made a proxy session, on different nodes
    s1 = qps.add_session(ALICE)
    s2 = qps.add_session(ALICE)
    k1, k2 = SsoKey(ISSUER, "alice@example.com", "_s1"), SsoKey(ISSUER, "alice@example.com", "_s2")
    registry.record(k1, ALICE, s1.session_id)
    registry.record(k2, ALICE, s2.session_id)
    bob = qps.add_session(BOB)
    registry.record(SsoKey(ISSUER, "bob@example.com", "_b"), BOB, bob.session_id)
    assert len(_live(cluster, ALICE)) == 2
    ended = registry.end(ISSUER, "alice@example.com", ["_s1"], qps)
    assert ended.sessions_ended == 1 and registry.is_ended(k1) and not registry.is_ended(k2)
    assert [s.session_id for s in _live(cluster, ALICE)] == [s2.session_id]
    # no SessionIndex in the LogoutRequest: every IdP session of the subject ends
    ended = registry.end(ISSUER, "alice@example.com", None, qps)
    assert ended.sessions_ended == 1 and registry.is_ended(k2) and _live(cluster, ALICE) == []
    assert len(_live(cluster, BOB)) == 1  # bob untouched
    qps.close()


def test_ticket_mode_record_ends_the_users_sessions_on_every_node(cluster):
    qps = _qps(cluster)
    registry = SsoSessionRegistry(MemoryStore())
    for _ in range(2):
        qps.add_session(
            ALICE
        )  # what the hub did when the tickets were redeemed, unknown to the portal
    registry.record(SsoKey(ISSUER, "alice@example.com", "_t"), ALICE, None)
    ended = registry.end(ISSUER, "alice@example.com", ["_t"], qps)
    assert ended.sessions_ended == 2 and _live(cluster, ALICE) == []
    qps.close()


def test_an_unreachable_node_is_reported_not_raised(cluster):
    qps = _qps(cluster)
    registry = SsoSessionRegistry(MemoryStore())
    s = qps.add_session(ALICE)
    registry.record(SsoKey(ISSUER, "alice@example.com", "_x"), ALICE, None)
    cluster.nodes[1].stop()
    ended = registry.end(ISSUER, "alice@example.com", ["_x"], qps)
    assert ended.errors and ended.users == (ALICE,)
    assert registry.is_ended(SsoKey(ISSUER, "alice@example.com", "_x"))
    del s
    qps.close()


def test_unknown_logout_marks_ended_and_touches_nothing():
    registry = SsoSessionRegistry(MemoryStore())
    ended = registry.end(ISSUER, "nobody@example.com", ["_n"])
    assert ended.users == () and registry.is_ended(SsoKey(ISSUER, "nobody@example.com", "_n"))
    assert not registry.is_ended(None)


def test_a_new_sign_in_with_the_same_idp_session_does_not_undo_the_end():
    """The IdP session's end is kept with its time: a sign-in that began before it stays ended,
    whatever signs in with the same IdP session id afterwards; one that begins after is new."""
    import time

    registry = SsoSessionRegistry(MemoryStore())
    key = SsoKey(ISSUER, "alice@example.com", "_s")
    before = time.time()
    registry.record(key, ALICE, "sid-1", signin_id="first")
    ended = registry.end(ISSUER, "alice@example.com", ["_s"])
    assert ended.signin_ids == ("first",)
    registry.record(key, ALICE, "sid-2", signin_id="second")  # the same IdP session id again
    assert registry.is_ended(key) and registry.ended_at(key) >= before  # the first stays ended
    assert registry.ended_at(key) < time.time() + 1  # ... and a sign-in from now on is newer
    again = registry.take(ISSUER, "alice@example.com", ["_s"])
    assert again.signin_ids == ("second",) and again.session_ids == ("sid-2",)


def test_keys_name_nobody_in_the_store(redis_url):
    store = open_store(redis_url)
    registry = SsoSessionRegistry(store)
    registry.record(SsoKey(ISSUER, "alice@example.com", "_s"), ALICE, "sid-1")
    import redis

    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys("*")]
    assert keys and not any("alice" in k for k in keys)


def test_concurrent_records_through_redis_keep_every_session(redis_url, cluster):
    # two portal instances (two stores on one Redis) record sessions for one IdP session at once
    qps = _qps(cluster)
    stores = [open_store(redis_url), open_store(redis_url)]
    key = SsoKey(ISSUER, "alice@example.com", "_shared")
    sessions = [qps.add_session(ALICE) for _ in range(4)]
    barrier = threading.Barrier(4)

    def record(i: int) -> None:
        barrier.wait()
        SsoSessionRegistry(stores[i % 2]).record(key, ALICE, sessions[i].session_id)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ended = SsoSessionRegistry(stores[1]).end(ISSUER, "alice@example.com", ["_shared"], qps)
    assert ended.sessions_ended == 4 and _live(cluster, ALICE) == []
    assert SsoSessionRegistry(stores[0]).is_ended(key)
    qps.close()
