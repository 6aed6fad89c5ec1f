"""The identity cache (``identity_cache=``) against real nginx: who is cached, and what sign-out
does.

The portal is the minimal Flask portal of ``test_front`` (200 + ``X-Qlik-Header-Value`` for a
signed-in session, 401 otherwise, every call recorded) plus a sign-out that clears the session
as the integrations' logout does. Each test asserts what reached the upstream and how often the
portal was asked.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import requests
from _support import free_port_number as free_port

from .conftest import front_block, identity_cache_dir, start_wsgi
from .test_front import _portal_app

pytestmark = pytest.mark.nginx

TTL = 60  # long enough that no assertion here races the expiry


@pytest.fixture(scope="module")
def portal():
    from flask import redirect, session

    app = _portal_app()

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect("/login")

    srv, port = start_wsgi(app)
    yield app, port
    srv.shutdown()


@pytest.fixture(scope="module")
def cache_dir():
    d = tempfile.mkdtemp(prefix="qlikauth-identity-cache-")
    os.chmod(d, 0o777)  # nginx's workers (nobody, when the tests run as root) write here
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def front(certs, recorder, portal, start_nginx, cache_dir):
    _app, pport = portal
    port = free_port()
    block = front_block(
        certs,
        pport,
        [f"https://localhost:{recorder.port}"],
        port,
        identity_cache=TTL,
        identity_cache_dir=cache_dir,
    )
    return start_nginx(block, port)


def _browser(pport: int, user: str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    r = s.get(f"http://localhost:{pport}/login", params={"user": user}, timeout=5)
    assert r.status_code == 200 and s.cookies.get("session")
    return s


def _hub(front, certs, cookie: str | None, mark: str) -> requests.Response:
    headers = {"Cookie": cookie} if cookie else {}
    return requests.get(
        f"https://localhost:{front.port}/hdr/hub/?mark={mark}",
        headers=headers,
        verify=str(certs / "root.pem"),
        allow_redirects=False,
        timeout=5,
    )


def _cookie(s: requests.Session) -> str:
    return f"session={s.cookies['session']}"


def _seen(recorder, mark: str) -> list[list[str]]:
    return [r["identity"] for r in recorder.requests if f"mark={mark}" in r["path"]]


def test_the_portal_is_asked_once_per_session_cookie(front, portal, recorder, certs):
    app, pport = portal
    alice, bob = _browser(pport, "alice"), _browser(pport, "bob")
    app.config["calls"].clear()
    for i in range(5):
        assert _hub(front, certs, _cookie(alice), f"a{i}").text == "alice"
        assert _hub(front, certs, _cookie(bob), f"b{i}").text == "bob"
    assert len(app.config["calls"]) == 2, "one question per session cookie, then the cache"
    assert [_seen(recorder, f"a{i}") for i in range(5)] == [[["alice"]]] * 5
    assert [_seen(recorder, f"b{i}") for i in range(5)] == [[["bob"]]] * 5


def test_signing_out_takes_effect_at_once_for_the_browser(front, portal, recorder, certs):
    app, pport = portal
    s = _browser(pport, "carol")
    copied = _cookie(s)
    assert _hub(front, certs, copied, "c-before").text == "carol"
    s.post(f"http://localhost:{pport}/logout", allow_redirects=False, timeout=5)
    assert "session" not in s.cookies  # the browser's cookie is gone...
    r = _hub(front, certs, "; ".join(f"{c.name}={c.value}" for c in s.cookies) or None, "c-after")
    assert (
        r.status_code == 302 and _seen(recorder, "c-after") == []
    )  # ...so it is asked about, and refused
    # What the cache does NOT revoke (docs/nginx.md): a copy of the signed-out cookie keeps its
    # identity until its cache entry expires (identity_cache seconds at most).
    app.config["calls"].clear()
    assert _hub(front, certs, copied, "c-copy").text == "carol"
    assert app.config["calls"] == []


def test_requests_without_cookies_are_never_cached(front, portal, recorder, certs):
    app, _pport = portal
    app.config["calls"].clear()
    for i in range(3):
        assert _hub(front, certs, None, f"anon{i}").status_code == 302
    assert len(app.config["calls"]) == 3
    assert _seen(recorder, "anon0") == []


def test_a_refusal_is_never_cached(front, portal, recorder, certs):
    app, pport = portal
    app.config["calls"].clear()
    bogus = "session=not-a-signed-session"
    for i in range(3):
        assert _hub(front, certs, bogus, f"bogus{i}").status_code == 302
    assert len(app.config["calls"]) == 3, "each 401 asked again"


def test_each_cookie_header_is_its_own_entry(front, portal, recorder, certs):
    # The key is the whole Cookie header, all the portal decides from: another cookie beside the
    # session one, or the session cookie twice (which nginx and the portal might read differently),
    # is a question of its own, answered by the portal, never by another header's entry.
    app, pport = portal
    alice, dave = _browser(pport, "alice"), _browser(pport, "dave")
    app.config["calls"].clear()
    assert _hub(front, certs, _cookie(alice), "e1").text == "alice"
    assert _hub(front, certs, f"{_cookie(alice)}; theme=dark", "e2").text == "alice"
    assert len(app.config["calls"]) == 2
    both = f"{_cookie(alice)}; {_cookie(dave)}"
    answers = {_hub(front, certs, both, f"twice{i}").text for i in range(3)}
    assert len(app.config["calls"]) == 3, "asked once for that header, then cached under it"
    assert len(answers) == 1 and answers <= {"alice", "dave"}
    assert _hub(front, certs, _cookie(dave), "dave-alone").text == "dave"


def test_another_users_cookie_never_gets_a_cached_identity(front, portal, recorder, certs):
    _app, pport = portal
    users = [f"user{i}" for i in range(6)]
    browsers = {u: _browser(pport, u) for u in users}
    for rnd in range(2):
        for u in users:
            assert _hub(front, certs, _cookie(browsers[u]), f"{u}-{rnd}").text == u
    for u in users:
        assert _seen(recorder, f"{u}-0") == [[u]] and _seen(recorder, f"{u}-1") == [[u]]


@pytest.fixture(scope="module")
def front_as_generated(certs, recorder, portal, start_nginx):
    """The block with the identity cache as generated by default (its lifetime not given)."""
    _app, pport = portal
    port = free_port()
    d = identity_cache_dir()
    block = front_block(
        certs, pport, [f"https://localhost:{recorder.port}"], port, identity_cache_dir=d
    )
    assert "proxy_cache_valid 200 5s;" in block
    yield start_nginx(block, port)
    shutil.rmtree(d, ignore_errors=True)


def test_as_generated_a_signed_out_browser_is_refused_on_its_very_next_request(
    front_as_generated, portal, recorder, certs
):
    app, pport = portal
    s = _browser(pport, "erin")
    app.config["calls"].clear()
    for i in range(4):
        assert _hub(front_as_generated, certs, _cookie(s), f"g{i}").text == "erin"
    assert len(app.config["calls"]) == 1, "the portal asked once, then the cache answered"
    s.post(f"http://localhost:{pport}/logout", allow_redirects=False, timeout=5)
    r = _hub(
        front_as_generated,
        certs,
        "; ".join(f"{c.name}={c.value}" for c in s.cookies) or None,
        "g-after",
    )
    assert r.status_code == 302 and _seen(recorder, "g-after") == []
    assert len(app.config["calls"]) == 2, (
        "the next request was asked about, not answered from the cache"
    )
