"""Load with faults, smaller: ``bench/load_faults.py`` with 300 sign-ins by 20 browsers per mode.

Through the Flask example on gunicorn, two emulated nodes (their own process) and a real Redis:
node 1 crashes and restarts, then Redis is killed and restarted, while browsers (two of them
shared by two users, four signing in with SAML and four with OpenID Connect at the SSO example
portals) sign in and out. Asserted for every way in: no mix-ups, no hangs, no orphaned proxy
sessions, no previous user left signed in after a switch, no unexplained failure, the right
user with the right group; and that the faults really happened during the load (each phase saw
sign-ins, most of them right).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

for _module in ("flask", "gunicorn", "flask_session", "redis"):
    try:
        importlib.import_module(_module)
    except ImportError:
        if os.environ.get("QLIKAUTH_REQUIRE_ALL"):
            raise
        pytest.skip(
            f"{_module} is not installed: pip install -e '.[all,dev]'", allow_module_level=True
        )

sys.path.insert(0, str(ROOT / "tests"))
from _redis_server import REDIS_SERVER  # noqa: E402

if REDIS_SERVER is None:
    if os.environ.get("QLIKAUTH_REQUIRE_ALL"):
        raise RuntimeError("redis-server is not installed (Debian package 'redis-server')")
    pytest.skip("redis-server is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("load") / "load.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")])}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load_faults.py"),
            "--sign-ins",
            "300",
            "--browsers",
            "20",
            "--think",
            "0.05",
            "--json",
            str(out),
            "--no-assert",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["mode"]: r for r in json.loads(out.read_text())}


@pytest.mark.timeout(660)
@pytest.mark.parametrize("mode", ["ticket", "session"])
def test_no_mixup_hang_or_orphan_through_a_node_crash_and_a_redis_outage(figures, mode):
    res = figures[mode]
    problems = res["first_problems"]
    assert res["sign_ins"] == 300
    assert res["mixups"] == 0, problems
    assert res["hung"] == 0, problems
    assert res["unclear"] == 0, problems  # a 500 or a blank error is a defect, a clear refusal not
    assert res["orphans"] == 0, res["orphan_users"]
    # The shared-workstation promise: the previous user's proxy session never answers after
    # a switch, node crash and Redis outage included.
    assert res["previous_alive"] == 0, problems
    assert res["user_switches"] > 0  # the shared browsers did switch users
    assert res["final_signouts_failed"] == []
    # The faults happened under load: every phase saw sign-ins, and most were right.
    assert [f["action"] for f in res["faults"]] == ["crash", "restart", "kill_redis", "start_redis"]
    for phase, p in res["phases"].items():
        assert p["sign_ins"] > 0, phase
    # A sign-in in flight when node 1 died may have been sent to its hub; nothing else fails.
    assert res["right"] + res["refused"] + res["node_gone"] == 300
    # Password sign-ins need no shared store: none is refused through the Redis outage, and
    # SAML and OIDC ones only for it: they need the store for the one-time request state, so
    # they are refused with a clear page while Redis is down (or when it died between the start
    # of the sign-in and its end at the portal).
    # The one other refusal, session mode only, at the crash: a proxy session POST that went
    # out on a pooled connection to node 1 as it died may have landed there, and with node 1
    # unable to say, QpsClient.add_session refuses rather than risk a second session on node 2
    # (a clear 502). Node 1 is then marked down, so it is about one per portal worker.
    password, saml, oidc = res["ways"]["password"], res["ways"]["saml"], res["ways"]["oidc"]
    at_crash = {"/qlik/login": 0, "other": 0}
    for phase, p in res["phases"].items():
        for refusal, n in p["refusals"].items():
            if "502 (Qlik Sense cannot be reached)" in refusal:
                assert mode == "session", (phase, refusal)
                assert phase == "node_down" or "[by then node_down]" in refusal, (phase, refusal)
                at_crash["/qlik/login" if refusal.startswith("/qlik/login") else "other"] += n
                continue
            assert refusal.startswith(("SAML", "OIDC")), (phase, refusal)
            assert phase == "redis_down" or "redis_down" in refusal, (phase, refusal)
    assert sum(at_crash.values()) <= 10, at_crash
    assert password["refused"] == at_crash["/qlik/login"] and password["right"] > 120
    # right = the hub showed the user's own e-mail, directory and group (Browser._at_hub)
    assert saml["right"] > 0 and oidc["right"] > 0
    # OIDC both ways: through the provider's login form, and by single sign-on when the browser
    # still held a provider session (every second sign-in of a browser)
    assert min(oidc["right_by_form_sso"]) > 0, oidc
    assert res["saml_browsers"] == res["oidc_browsers"] == 4
    # Every OIDC browser's last sign-out went through the provider's end-session endpoint.
    assert res["op_sessions_left"] == []
