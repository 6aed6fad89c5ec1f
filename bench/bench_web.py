"""Web benchmarks: page views with and without qlikauth (Flask, Django) and the sign-in storm.

The example portals are used as they ship; the benchmark only adds what they lack for a
measurement (bench users for the storm, see ``storm_app.py``; a no-qlikauth twin of the
Flask portal, below), without editing them.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _procs import (
    EmulatorProcess,
    Gunicorn,
    free_port,
    hub_with_ticket,
    load_module,
    storm,
    storm_figures,
)
from run import Contender, interleave, log, ratio, summary

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLASK_APP = ROOT / "examples" / "flask_portal" / "app.py"
DJANGO_DIR = ROOT / "examples" / "django_portal"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _wsgi_caller(app: Any, environ: dict[str, Any], expect: int = 200) -> Any:
    status_box: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        status_box.append(status)
        return lambda data: None

    def call() -> bytes:
        status_box.clear()
        it = app(dict(environ), start_response)
        try:
            body = b"".join(it)
        finally:
            close = getattr(it, "close", None)
            if close:
                close()
        if not status_box or not status_box[0].startswith(str(expect)):
            raise RuntimeError(f"page view answered {status_box[:1]}: {body[:200]!r}")
        return body

    return call


# -- 2. page views ----------------------------------------------------------------------------
def _flask_session_app(settings: dict[str, str]) -> Any:
    """A session-mode Flask portal whose page views run the extension, and the same page without it.

    ``/page`` asks the extension on every view for the signed-in user's proxy session
    (``start_session``: the remembered one is reused and its cookie set, as Django's middleware
    does on every response); ``/page-without`` renders the same page and skips that call. So the
    "QPS calls per page view" figure is counted where the extension actually runs.
    """
    from flask import Flask, make_response, redirect, session
    from flask_qlikauth import QlikAuth

    from qlikauth.identity import QlikUser

    ext = QlikAuth()

    @ext.user_loader
    def load_user() -> QlikUser | None:
        name = session.get("user")
        return QlikUser("PORTAL", name, [("group", "Sales")]) if name else None

    @ext.user_key  # the mapping remembered per portal user (docs/flask.md)
    def user_key() -> str | None:
        return session.get("user")

    app = Flask("bench_flask_session_portal")
    app.config.update(SECRET_KEY=secrets.token_hex(32), **settings)
    ext.init_app(app)
    # Compiled once, as Flask caches a file template.
    page = app.jinja_env.from_string(
        "<!doctype html><title>Portal</title><h1>Hello {{ user }}</h1><a "
        "href='/qlik/login'>Qlik</a>"
    )

    @app.post("/signin")
    def signin() -> Any:
        session.clear()
        session["user"] = "alice"
        return ext.start_session(redirect("/page"))

    @app.get("/page")
    def page_with() -> Any:
        return ext.start_session(make_response(page.render(user=session["user"])))

    @app.get("/page-without")
    def page_without() -> Any:
        return make_response(page.render(user=session["user"]))

    return app


def _flask_session_environ(app: Any) -> dict[str, Any]:
    """A signed-in browser's request: the portal's session cookie and the proxy session cookie."""
    from werkzeug.test import EnvironBuilder

    client = app.test_client()
    assert client.post("/signin").status_code == 302
    cookies = {name: client.get_cookie(name) for name in ("session", "X-Qlik-Session-mashup")}
    assert all(c is not None for c in cookies.values()), (
        "sign-in set no portal or proxy session cookie"
    )
    jar = "; ".join(f"{name}={c.value}" for name, c in cookies.items() if c is not None)
    return EnvironBuilder(
        base_url="http://localhost:5000", path="/page", headers={"Cookie": jar}
    ).get_environ()


def _django_handlers(settings: dict[str, str]) -> tuple[Any, Any, dict[str, Any]]:
    os.environ.update(settings)
    if "PORTAL_DB" not in os.environ:
        db_dir = tempfile.mkdtemp(prefix="bench-django-")
        atexit.register(shutil.rmtree, db_dir, True)
        os.environ["PORTAL_DB"] = str(Path(db_dir) / "db.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    for p in (str(DJANGO_DIR), str(ROOT / "integrations")):
        if p not in sys.path:
            sys.path.insert(0, p)
    import django

    django.setup()
    from django.conf import settings as dj
    from django.contrib.auth.models import User
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import Client
    from werkzeug.test import EnvironBuilder

    run_mod = load_module(DJANGO_DIR / "run.py", "bench_django_run")
    run_mod.setup_database()
    with_handler = WSGIHandler()
    full = list(dj.MIDDLEWARE)
    dj.MIDDLEWARE = [m for m in full if "qlikauth" not in m]
    without_handler = WSGIHandler()
    dj.MIDDLEWARE = full
    client = Client()
    client.force_login(User.objects.get(username="alice"))
    # The first signed-in view creates the proxy session and sets its cookie; from then on the
    # browser sends it back, so the measured views carry both cookies, as a browser's would.
    assert client.get("/mashup/", HTTP_HOST="localhost:8000").status_code == 200
    jar = "; ".join(f"{k}={m.value}" for k, m in client.cookies.items() if m.value)
    assert "X-Qlik-Session-mashup=" in jar, "the first view set no proxy session cookie"
    environ = EnvironBuilder(
        base_url="http://localhost:8000", path="/mashup/", headers={"Cookie": jar}
    ).get_environ()
    return with_handler, without_handler, environ


def _page_view_pair(
    name: str,
    app_with: Any,
    app_without: Any,
    environ: dict[str, Any],
    emu: EmulatorProcess,
    args: argparse.Namespace,
) -> dict[str, Any]:
    call_with = _wsgi_caller(app_with, environ)
    call_without = _wsgi_caller(app_without, environ)
    first = emu.stats()["qps_requests"]
    for _ in range(5):  # sign-in side effects (a proxy session on the first view) happen here
        call_with()
        call_without()
    before = emu.stats()["qps_requests"]
    cw = Contender("with qlikauth", lambda: call_with)
    co = Contender("without qlikauth", lambda: call_without)
    # Many short alternations: a Django view takes ~3 ms, so a few long slices hold too few
    # views and the median of their ratios wanders by several percent from run to run.
    rounds = args.rounds * 4 + 1
    interleave([cw, co], rounds, args.slice / 6, 1)
    qps_calls = emu.stats()["qps_requests"] - before
    time_ratio = ratio(co, cw)  # time per view with / without = rate without / rate with
    return {
        "time_ratio": round(time_ratio, 3),
        "overhead_pct": round((time_ratio - 1) * 100, 1),
        "with": summary(cw),
        "without": summary(co),
        "views_with": cw.calls,
        "views_without": co.calls,
        "qps_calls_during_views": qps_calls,
        "qps_calls_first_views": before - first,
        "qps_calls_per_view": qps_calls / max(1, cw.calls + co.calls),
        "zero_qps_calls": qps_calls == 0,
    }


def bench_page_views(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    proxies = [{"prefix": "portal", "method": "ticket"}, {"prefix": "mashup", "method": "session"}]
    with EmulatorProcess(proxies=proxies) as emu:
        base = {"QLIKAUTH_QPS_NODES": emu.qps_url, "QLIKAUTH_CERTS": str(emu.certs_dir)}
        log("page views: flask (session mode, the extension on every view)")
        flask_app = _flask_session_app(
            {
                **base,
                "QLIKAUTH_HUB_URL": emu.hub_urls["mashup"],
                "QLIKAUTH_VIRTUAL_PROXY": "mashup",
                "QLIKAUTH_MODE": "session",
                "QLIKAUTH_COOKIE_DOMAIN": "",
            }
        )
        environ = _flask_session_environ(flask_app)
        out["flask"] = _page_view_pair(
            "flask",
            flask_app,
            _SwapEnviron(flask_app, {**environ, "PATH_INFO": "/page-without"}),
            environ,
            emu,
            args,
        )
        out["flask"]["where"] = (
            "session-mode page calling start_session on every view vs. the same page without it"
        )
        log("page views: django")
        dj_settings = {
            **base,
            "QLIKAUTH_HUB_URL": emu.hub_urls["mashup"],
            "QLIKAUTH_VIRTUAL_PROXY": "mashup",
        }
        h_with, h_without, dj_environ = _django_handlers(dj_settings)
        out["django"] = _page_view_pair("django", h_with, h_without, dj_environ, emu, args)
    return out


class _SwapEnviron:
    """Serve with a fixed environ (the one signed for this app), ignoring the caller's."""

    def __init__(self, app: Any, environ: dict[str, Any]) -> None:
        self.app, self.environ = app, environ

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(dict(self.environ), start_response)


# -- 3. sign-in storm ---------------------------------------------------------------------------
def _private_dir(prefix: str) -> str:
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, True)
    return d


def bench_storm(args: argparse.Namespace) -> dict[str, Any]:
    import requests

    users = args.storm_users
    port = free_port()
    portal = f"http://127.0.0.1:{port}"
    proxies = [{"prefix": "portal", "method": "ticket", "module_uri": f"{portal}/qlik/module"}]
    with EmulatorProcess(proxies=proxies) as emu:
        env = {
            **os.environ,
            "QLIKAUTH_QPS_NODES": emu.qps_url,
            "QLIKAUTH_CERTS": str(emu.certs_dir),
            "QLIKAUTH_HUB_URL": emu.hub_urls["portal"],
            "QLIKAUTH_VIRTUAL_PROXY": "portal",
            "PORTAL_SECRET_KEY": secrets.token_hex(32),
            "BENCH_USERS": str(users),
            # One private session directory for both gunicorn workers (server-side sessions).
            "PORTAL_SESSION_DIR": _private_dir("bench-portal-sessions-"),
        }
        log(f"storm: gunicorn -w 2 --threads 8 on {portal}, {users} users")
        with Gunicorn("storm_app:app", port, workers=2, threads=8, env=env, ready_path="/login"):
            root = str(emu.certs_dir / "root.pem")
            before = emu.stats()
            results: list[dict[str, Any]] = [{} for _ in range(users)]

            def sign_in(i: int, barrier: Any) -> None:
                name = f"bench{i:03d}"
                res = results[i]
                res.update(user=name, ok=False)
                s = requests.Session()
                s.trust_env = False
                # No retries and no Connection: close here: gunicorn runs with --keep-alive 0 (the
                # recommended deployment), so no request is ever sent on a connection it is
                # closing for idleness, and a lost sign-in is the portal's.
                step = ["login form"]
                try:
                    page = s.get(f"{portal}/login?next=/qlik/login", timeout=60).text
                    csrf = _CSRF.search(page).group(1)  # type: ignore[union-attr]
                finally:
                    barrier.wait()
                try:
                    t0 = time.perf_counter()
                    step[0] = "POST /login"
                    r = s.post(
                        f"{portal}/login",
                        data={
                            "csrf": csrf,
                            "next": "/qlik/login",
                            "username": name,
                            "password": "demo",
                        },
                        allow_redirects=False,
                        timeout=60,
                    )
                    assert r.status_code == 302, f"login {r.status_code}"
                    step[0] = "/qlik/login"
                    r = s.get(
                        portal + r.headers["Location"]
                        if r.headers["Location"].startswith("/")
                        else r.headers["Location"],
                        allow_redirects=False,
                        timeout=60,
                    )
                    assert r.status_code == 302, f"/qlik/login {r.status_code}: {r.text[:200]}"
                    hub = r.headers["Location"]
                    m = re.search(r"[?&]qlikTicket=([^&]+)", hub)
                    res["ticket"] = m.group(1) if m else None
                    r = hub_with_ticket(s, hub, root, 60, step)
                    res["seconds"] = time.perf_counter() - t0
                    who = r.json()
                    res["hub_user"] = f"{who.get('userDirectory')}\\{who.get('userId')}"
                    res["ok"] = True
                except Exception as exc:  # counted, reported
                    res["error"] = f"{step[0]}: {type(exc).__name__}: {exc}"
                finally:
                    s.close()

            wall = storm(users, sign_in, join_within=120)
            after = emu.stats()
    done = [r for r in results if r.get("ok")]
    mixups = sum(1 for r in done if r["hub_user"].lower() != f"portal\\{r['user']}")
    tickets = [r.get("ticket") for r in done]
    return {
        **storm_figures(users, results, wall),
        "mixups": mixups,
        "distinct_tickets": len(set(tickets)) == len(tickets) == users and None not in tickets,
        "hub_identity_ok": mixups == 0 and len(done) == users,
        "qps_requests": after["qps_requests"] - before["qps_requests"],
        "tickets_redeemed": after["tickets_redeemed"] - before["tickets_redeemed"],
        "server": (
            "gunicorn -w 2 --threads 8 --keep-alive 0 (examples/flask_portal via "
            "bench/storm_app.py)"
        ),
    }
