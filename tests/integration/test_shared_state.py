"""Two real portal processes on one real Redis: one-time state and the replay cache are shared.

A sign-in started on one process finishes on the other; replaying its state or an assertion id
is refused on either; Redis stopped mid-run gives a clear error (503 to the browser, the store
and what to do in the log), never a silent pass.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
from _support import free_port_number

HERE = Path(__file__).resolve().parent


@pytest.fixture
def two_portals(server_process, redis_factory):
    server = redis_factory()
    ports = [free_port_number(), free_port_number()]
    procs = [
        server_process(
            [sys.executable, str(HERE / "state_portal.py")],
            port,
            env={"PORTAL_PORT": str(port), "STATE_STORE": server.url},
        )
        for port in ports
    ]
    return server, [f"http://127.0.0.1:{p}" for p in ports], procs


def test_a_sign_in_started_on_one_process_finishes_on_the_other(two_portals):
    _server, (a, b), _procs = two_portals
    for first, second in ((a, b), (b, a)):
        started = requests.get(f"{first}/signin/start", params={"user": "alice"}, timeout=10).json()
        done = requests.get(
            f"{second}/signin/finish", params={"state": started["state"]}, timeout=10
        )
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["user"] == "alice"
        assert body["started_on"] != body["finished_on"], "two different processes"
        # a replay of the same state is refused on either process
        for where in (a, b):
            again = requests.get(
                f"{where}/signin/finish", params={"state": started["state"]}, timeout=10
            )
            assert again.status_code == 400 and "already used" in again.json()["error"]


def test_an_assertion_replayed_on_either_process_is_refused(two_portals):
    _server, (a, b), _procs = two_portals
    assert requests.post(f"{a}/acs", data={"assertion_id": "_id-1"}, timeout=10).status_code == 200
    for where in (a, b):
        r = requests.post(f"{where}/acs", data={"assertion_id": "_id-1"}, timeout=10)
        assert r.status_code == 409 and "already used" in r.json()["error"]
    assert requests.post(f"{b}/acs", data={"assertion_id": "_id-2"}, timeout=10).status_code == 200
    assert requests.post(f"{a}/acs", data={"assertion_id": "_id-2"}, timeout=10).status_code == 409


def test_redis_stopped_mid_run_is_a_clear_error_never_a_pass(two_portals):
    server, (a, b), procs = two_portals
    started = requests.get(f"{a}/signin/start", params={"user": "alice"}, timeout=10).json()
    assert requests.post(f"{a}/acs", data={"assertion_id": "_id-9"}, timeout=10).status_code == 200
    server.stop()
    answers = [
        requests.get(f"{b}/signin/finish", params={"state": started["state"]}, timeout=20),
        requests.post(f"{a}/acs", data={"assertion_id": "_id-9"}, timeout=20),  # would be a replay
        requests.post(f"{b}/acs", data={"assertion_id": "_id-10"}, timeout=20),
        requests.get(f"{a}/signin/start", params={"user": "bob"}, timeout=20),
    ]
    for r in answers:
        assert r.status_code == 503, (r.status_code, r.text)
        assert r.json() == {"error": "Sign-in is unavailable right now; please try again shortly."}
        assert "127.0.0.1" not in r.text and "redis" not in r.text.lower()
    for proc in procs:
        logged = Path(proc.log_path).read_text(errors="replace")
        assert f"Redis state store redis://127.0.0.1:{server.port}/0 (namespace 'qlikauth" in logged
        assert "cannot be reached" in logged and "check that redis-server is running" in logged
    # Redis back: the portals answer again without a restart
    server.start()
    fresh = requests.get(f"{a}/signin/start", params={"user": "carol"}, timeout=10).json()
    assert (
        requests.get(f"{b}/signin/finish", params={"state": fresh["state"]}, timeout=10).json()[
            "user"
        ]
        == "carol"
    )
