"""Two portal processes share one token cache on a real Redis: 2 x 25 concurrent requests, one token
request."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import redis

from qlikauth.cloud import AccessTokenCache, QlikCloud
from qlikauth.exceptions import ConfigurationError
from qlikauth.store import RedisStore, SealedStore, new_store_key

from .conftest import Person

WORKER = textwrap.dedent("""
    import json, sys, threading, time
    from qlikauth.cloud import AccessTokenCache, OAuthClient, QlikCloud
    from qlikauth.store import RedisStore

    url, ca, redis_url, start, keys = sys.argv[1:6]
    start = float(start)
    cache = AccessTokenCache(QlikCloud(url, verify=ca),
                             OAuthClient("embed-client", client_secret="embed-secret"),
                             RedisStore(redis_url, namespace="cloudtest"), keys=keys)
    out, errors = [], []
    def one():
        try:
            out.append(cache.get("ann@example.com").access_token)
        except Exception as exc:
            errors.append(repr(exc))
    threads = [threading.Thread(target=one) for _ in range(25)]
    time.sleep(max(0.0, start - time.time()))   # both processes start their threads together
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    print(json.dumps({"tokens": sorted(set(out)), "n": len(out), "errors": errors,
                      "fetches": cache.fetches}))
""")


def test_two_processes_on_redis_make_one_token_request(tenant, cloud, issuer, redis_url, tmp_path):
    cloud.jwt_session(issuer.mint(Person("ann@example.com", "Ann", "ann@example.com")))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    start = time.time() + 3.0
    keys = new_store_key("shared")  # both processes seal and open with the same key
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                tenant.url,
                str(tenant.root_pem),
                redis_url,
                str(start),
                keys,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["errors"] == [] and r["n"] == 25 for r in results), results
    tokens = {t for r in results for t in r["tokens"]}
    assert len(tokens) == 1, results  # every request of both processes got the same token
    assert sum(r["fetches"] for r in results) == 1
    assert tenant.state.counter("token_requests") == 1


class SlowTenant(QlikCloud):
    """The real client to the emulated tenant, with a token request slower than the fetch lock."""

    def token(self, *args, **kwargs):
        time.sleep(0.6)
        return super().token(*args, **kwargs)


def test_a_fetch_slower_than_its_lock_does_not_release_the_next_fetchers_lock(
    tenant, cloud, issuer, embed_client, redis_url
):
    cloud.jwt_session(issuer.mint(Person("ann@example.com", "Ann", "ann@example.com")))
    store = RedisStore(redis_url, namespace="cloudtest")
    slow = SlowTenant(tenant.url, verify=tenant.root_pem)
    cache = AccessTokenCache(slow, embed_client, store, lock_ttl=0.2, keys=new_store_key())
    name = cache._key("ann@example.com") + ":lock"
    other = RedisStore(redis_url, namespace="cloudtest")  # another portal process
    taken = []

    def next_fetcher() -> None:
        time.sleep(0.4)  # the slow fetch's lock has expired by now
        taken.append(other.lock(name, ttl=30).acquire())

    t = threading.Thread(target=next_fetcher)
    t.start()
    assert cache.get("ann@example.com").access_token
    t.join(10)
    assert taken == [True]
    # Leaving the slow fetch did not delete the other process's lock.
    assert store.lock(name, ttl=30).acquire() is False
    slow.close()
    other.close()
    store.close()


def test_tokens_in_redis_are_sealed_and_a_copy_of_redis_gives_none(
    tenant, cloud, issuer, embed_client, redis_url, monkeypatch
):
    monkeypatch.delenv("QLIKAUTH_STORE_KEYS", raising=False)
    cloud.jwt_session(issuer.mint(Person("ann@example.com", "Ann", "ann@example.com")))
    with pytest.raises(ConfigurationError, match="kept in clear"):
        AccessTokenCache(cloud, embed_client, RedisStore(redis_url, namespace="cloudtest"))
    key = new_store_key("k1")
    cache = AccessTokenCache(
        cloud, embed_client, RedisStore(redis_url, namespace="cloudtest"), keys=key
    )
    assert isinstance(cache.store, SealedStore)
    token = cache.get("ann@example.com").access_token
    raw = redis.Redis.from_url(redis_url)
    dump = {k: raw.get(k) for k in raw.scan_iter("cloudtest:*")}
    raw.close()
    assert dump and all(v is not None for v in dump.values())
    # Neither the token nor any long piece of it is in what Redis holds.
    for value in dump.values():
        assert token.encode() not in value
        assert not any(token[i : i + 16].encode() in value for i in range(0, len(token) - 16, 8))
    # Another process with the key reads it; one without the key (or with another) gets nothing.
    again = AccessTokenCache(
        cloud, embed_client, RedisStore(redis_url, namespace="cloudtest"), keys=key
    )
    assert again.get("ann@example.com").access_token == token
    assert tenant.state.counter("token_requests") == 1
    stranger = AccessTokenCache(
        cloud, embed_client, RedisStore(redis_url, namespace="cloudtest"), keys=new_store_key("k1")
    )
    assert stranger.get("ann@example.com").access_token != token  # fetched its own
