"""flask_qlikauth with Flask's test client against the QPS emulator (real mutual TLS)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, session
from flask_qlikauth import QlikAuth, flask_login_loader

from qlikauth import QlikUser
from qlikauth.exceptions import ConfigurationError
from qlikauth.web.flows import SESSION_KEY


def make_app(emu: Any, prefix: str = "", **overrides: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test",
        TESTING=True,
        QLIKAUTH_QPS_NODES=emu.qps_url,
        QLIKAUTH_CERTS=str(emu.certs_dir),
        QLIKAUTH_HUB_URL=emu.hub_url_for(prefix) if prefix else emu.hub_url + "/hub/",
        QLIKAUTH_VIRTUAL_PROXY=prefix,
        QLIKAUTH_USER_DIRECTORY="PORTAL",
        QLIKAUTH_HEADER_NAME="X-Portal-User",
    )
    app.config.update({f"QLIKAUTH_{k}": v for k, v in overrides.items()})
    ext = QlikAuth()

    @ext.user_loader
    def load() -> QlikUser | None:
        name = session.get("user")
        return (
            QlikUser("PORTAL", name, [("group", "Sales"), ("group", "Finance")]) if name else None
        )

    ext.init_app(app)

    @app.route("/signin/<name>")
    def signin(name: str) -> str:
        session.clear()
        session["user"] = name
        return "ok"

    @app.route("/after-login/<name>")
    def after_login(name: str) -> Any:
        session.clear()
        session["user"] = name
        return ext.start_session(app.make_response("signed in"))

    @app.route("/open-qlik")
    def open_qlik() -> Any:
        return ext.start_session(app.make_response("ok"))  # the signed-in user, remembered session

    app.qlikauth = ext  # type: ignore[attr-defined]
    return app


@pytest.fixture
def ticket_emu(emulator_factory: Any) -> Any:
    from qlikauth.emulator import VirtualProxy

    return emulator_factory(
        virtual_proxies=[
            VirtualProxy(
                prefix="portal", method="ticket", module_uri="http://localhost:5000/qlik/module"
            )
        ]
    )


@pytest.fixture
def session_emu(emulator_factory: Any) -> Any:
    from qlikauth.emulator import VirtualProxy

    return emulator_factory(virtual_proxies=[VirtualProxy(prefix="mashup", method="session")])


def set_cookies(response: Any) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def test_config_comes_from_app_config_and_is_checked(ticket_emu: Any) -> None:
    app = make_app(ticket_emu, "portal")
    state = app.extensions["qlikauth"]
    assert state.config.qps_nodes == (ticket_emu.qps_url,)
    assert state.config.virtual_proxy == "portal"
    assert state.runtime._qps is None  # nothing loaded until a QPS call is needed
    bad = Flask("bad")
    bad.config.update(
        QLIKAUTH_QPS_NODES="http://qlik:4243",
        QLIKAUTH_CERTS="/x",
        QLIKAUTH_HUB_URL="https://qlik/hub/",
    )
    with pytest.raises(ConfigurationError, match="QPS_NODES.*https"):
        QlikAuth(bad)
    typo = Flask("typo")
    typo.config.update(QLIKAUTH_QPS_NODE="https://qlik:4243")
    with pytest.raises(ConfigurationError, match="Did you mean QPS_NODES"):
        QlikAuth(typo)


def test_login_anonymous_goes_to_the_apps_login_page(ticket_emu: Any, qps_calls: list) -> None:
    client = make_app(ticket_emu, "portal").test_client()
    r = client.get("/qlik/login?target=/portal/hub/stream")
    assert r.status_code == 302
    parts = urlsplit(r.headers["Location"])
    assert parts.path == "/login"
    assert parse_qs(parts.query)["next"] == ["/qlik/login?target=/portal/hub/stream"]
    assert qps_calls == []


def test_login_redirects_to_the_hub_with_a_ticket(ticket_emu: Any, qps_calls: list) -> None:
    client = make_app(ticket_emu, "portal").test_client()
    client.get("/signin/alice")
    r = client.get("/qlik/login")
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith(ticket_emu.hub_url_for("portal"))
    assert "qlikTicket=" in location
    assert r.headers["Cache-Control"] == "no-store"
    assert qps_calls == [("POST", "ticket")]
    r = client.get("/qlik/login?target=/portal/hub/my/work")
    assert urlsplit(r.headers["Location"]).path == "/portal/hub/my/work"


def test_unsafe_targets_are_refused_before_any_qps_call(
    ticket_emu: Any, qps_calls: list, unsafe_redirects: tuple[str, ...], offsite: Any
) -> None:
    client = make_app(ticket_emu, "portal").test_client()
    client.get("/signin/alice")
    allowed = urlsplit(ticket_emu.hub_url).netloc
    hub_origin = ticket_emu.hub_url
    for probe in unsafe_redirects:
        target = probe.replace("{allowed}", allowed)
        r = client.get("/qlik/login", query_string={"target": target})
        assert r.status_code == 400, (target, r.status_code)
        assert not offsite(r.headers.get("Location"), (hub_origin,)), target
    assert qps_calls == []
    # the anonymous path checks the target first too
    anon = make_app(ticket_emu, "portal").test_client()
    assert anon.get("/qlik/login", query_string={"target": "//evil.com"}).status_code == 400


def test_error_page_and_json(ticket_emu: Any, caplog: Any) -> None:
    client = make_app(ticket_emu, "portal").test_client()
    client.get("/signin/alice")
    with caplog.at_level("WARNING", logger="qlikauth.web"):
        r = client.get("/qlik/login?target=https://evil.com/")
    assert r.status_code == 400 and r.mimetype == "text/html"
    body = r.get_data(as_text=True)
    assert "What to do" in body and "This link cannot be followed" in body
    # the public page names neither the attacker's host nor the allowed ones; the log has both
    assert "evil.com" not in body and urlsplit(ticket_emu.hub_url).netloc not in body
    reference = body.split('id="qlikauth-reference">', 1)[1].split("<", 1)[0]
    assert len(reference) == 8
    logged = [rec.getMessage() for rec in caplog.records if reference in rec.getMessage()]
    assert len(logged) == 1 and "evil.com" in logged[0] and "not allowed" in logged[0]
    r = client.get("/qlik/login?target=https://evil.com/", headers={"Accept": "application/json"})
    assert r.status_code == 400
    data = json.loads(r.get_data())
    assert data["error"] == "RedirectError" and "evil.com" not in json.dumps(data)
    assert set(data) == {"error", "detail", "hint", "reference"}


def test_qps_down_gives_502_and_leaves_nothing_behind(ticket_emu: Any, free_port: int) -> None:
    app = make_app(ticket_emu, "portal", QPS_NODES=f"https://localhost:{free_port}", TIMEOUT=2)
    client = app.test_client()
    client.get("/signin/alice")
    r = client.get("/qlik/login")
    assert r.status_code == 502
    assert "Location" not in r.headers and not set_cookies(r)
    body = r.get_data(as_text=True)
    assert "cannot be reached" in body and "qlikTicket" not in body
    # ticket mode mints nothing at the portal's own sign-in, so QPS being down does not stop it
    r = client.get("/after-login/alice")
    assert r.status_code == 200 and not [c for c in set_cookies(r) if c.startswith("X-Qlik")]


def test_module_flow(ticket_emu: Any, qps_calls: list, offsite: Any) -> None:
    client = make_app(ticket_emu, "portal").test_client()
    rest = f"{ticket_emu.qps_url}/qps/portal/"
    # missing parameters / foreign node: refused, nothing sent
    assert client.get("/qlik/module").status_code == 400
    for bad in (
        "https://evil.com:4243/qps/portal/",
        f"{ticket_emu.qps_url}/qps/other/",
        rest.replace("https://", "http://"),
        "//evil.com/qps/portal/",
    ):
        r = client.get("/qlik/module", query_string={"targetId": "abc", "proxyRestUri": bad})
        assert r.status_code == 400, bad
    assert qps_calls == []
    # anonymous: to the login page and back here afterwards
    r = client.get("/qlik/module", query_string={"targetId": "abc", "proxyRestUri": rest})
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/login"
    nxt = parse_qs(urlsplit(r.headers["Location"]).query)["next"][0]
    assert nxt.startswith("/qlik/module?") and "proxyRestUri" in nxt
    client.get("/signin/alice")
    r = client.get(nxt)
    assert r.status_code == 302 and "qlikTicket=" in r.headers["Location"]
    assert not offsite(r.headers["Location"], (ticket_emu.hub_url,))
    assert qps_calls == [("POST", "ticket")]


def test_session_mode_sets_cookie_once_and_logout_ends_it(
    session_emu: Any, qps_calls: list
) -> None:
    app = make_app(session_emu, "mashup", MODE="session")
    client = app.test_client()
    r = client.get("/after-login/alice")
    cookies = [c for c in set_cookies(r) if c.startswith("X-Qlik-Session-mashup=")]
    assert len(cookies) == 1
    attrs = [a.strip() for a in cookies[0].split(";")]
    assert "Secure" in attrs and "HttpOnly" in attrs and "SameSite=Lax" in attrs  # the default
    assert not any(
        a.lower().startswith(("max-age", "expires")) for a in attrs
    )  # browser-session cookie
    assert qps_calls == [("POST", "session")]
    sid = cookies[0].split(";")[0].split("=", 1)[1]
    qps = app.extensions["qlikauth"].runtime.qps
    assert qps.get_session(sid).user.user_id == "alice"
    qps_calls.clear()
    r = client.get("/signin/alice")  # the app's own login clears the Flask session
    r = client.get("/qlik/login")
    assert r.status_code == 302 and r.headers["Location"] == session_emu.hub_url_for("mashup")
    # nothing remembered: the session the browser still carries from the earlier sign-in
    # (orphaned now) is ended first, then one new session is made
    assert qps_calls == [("DELETE", "session"), ("POST", "session")]
    assert qps.get_session(sid) is None
    qps_calls.clear()
    # again: the remembered session is reused; an explicit /qlik/login confirms it with one GET
    # and sets no cookie the browser already carries
    sid = _browser_sid(client)
    r = client.get("/qlik/login")
    assert qps_calls == [("GET", "session")]
    assert not any(c.startswith("X-Qlik-Session-mashup=") for c in set_cookies(r))
    assert _browser_sid(client) == sid
    # a browser that lost the cookie gets it again, from the remembered session, no QPS call
    qps_calls.clear()
    client.delete_cookie("X-Qlik-Session-mashup")
    assert _sid(client.get("/open-qlik")) == sid and qps_calls == []
    # logout: every session of the user ends on every node, cookie cleared
    r = client.post(
        "/qlik/logout", data={"next": "//evil.com"}, headers={"Origin": "http://localhost"}
    )
    assert r.status_code == 302 and r.headers["Location"] == "/"
    cleared = [c for c in set_cookies(r) if c.startswith("X-Qlik-Session-mashup=;")]
    assert cleared and "Max-Age=0" in cleared[0]
    assert ("DELETE", "user") in qps_calls
    assert qps.get_session(sid) is None
    assert qps.user_sessions(QlikUser("PORTAL", "alice")) == []


def test_session_mode_replaces_a_session_qlik_has_ended(session_emu: Any, qps_calls: list) -> None:
    """The proxy session timed out (or was ended in Qlik) while the portal still remembers it."""
    app = make_app(session_emu, "mashup", MODE="session", SESSION_RECHECK="300")
    client = app.test_client()
    old = _sid(client.get("/after-login/alice"))
    qps = app.extensions["qlikauth"].runtime.qps
    assert qps.delete_session(old)  # Qlik ends it behind the portal's back
    qps_calls.clear()
    r = client.get("/qlik/login")  # an explicit click confirms it, finds it gone, makes a new one
    assert r.status_code == 302 and qps_calls == [("GET", "session"), ("POST", "session")]
    new = _sid(r)
    assert new != old and qps.get_session(new).user.user_id == "alice"
    with client.session_transaction() as s:
        assert s[SESSION_KEY]["sid"] == new
    # and the new cookie signs the browser into the hub
    hub = requests.Session()
    hub.trust_env = False
    page = hub.get(
        session_emu.hub_url_for("mashup"),
        cookies={"X-Qlik-Session-mashup": new},
        headers={"Accept": "application/json"},
        verify=str(session_emu.certs_dir / "root.pem"),
    )
    assert page.status_code == 200 and page.json()["userId"] == "alice"
    # start_session trusts a remembered session for SESSION_RECHECK seconds, then confirms it
    qps_calls.clear()
    assert client.get("/open-qlik").status_code == 200 and qps_calls == []
    with client.session_transaction() as s:
        s[SESSION_KEY] = {**s[SESSION_KEY], "checked": 0}
    r = client.get("/open-qlik")
    assert qps_calls == [("GET", "session")] and _browser_sid(client) == new
    assert not any(
        c.startswith("X-Qlik-Session-mashup=") for c in set_cookies(r)
    )  # still the same one


def test_logout_redirect_targets(ticket_emu: Any, unsafe_redirects: tuple[str, ...]) -> None:
    client = make_app(ticket_emu, "portal").test_client()
    same_site = {"Origin": "http://localhost"}
    for probe in unsafe_redirects:
        r = client.post(
            "/qlik/logout",
            data={"next": probe.replace("{allowed}", "localhost")},
            headers=same_site,
        )
        assert r.status_code == 302 and r.headers["Location"] == "/", probe
        # the GET page carries only a checked ``next`` into its form
        page = client.get(
            "/qlik/logout", query_string={"next": probe.replace("{allowed}", "localhost")}
        )
        assert page.status_code == 200 and 'name="next" value="/"' in page.get_data(as_text=True), (
            probe
        )
    assert (
        client.post("/qlik/logout", data={"next": "/bye"}, headers=same_site).headers["Location"]
        == "/bye"
    )


CROSS_SITE_LOGOUTS = {
    "other-origin": {"Origin": "https://evil.example"},
    "other-port": {"Origin": "http://localhost:8081"},
    "lookalike-host": {"Origin": "http://localhost.evil.example"},
    "null-origin": {"Origin": "null"},
    "other-referer": {"Referer": "https://evil.example/page"},
    "userinfo-referer": {"Referer": "http://localhost@evil.example/"},
    "no-origin-no-referer": {},
}


def _sid(response: Any) -> str:
    [cookie] = [c for c in set_cookies(response) if c.startswith("X-Qlik-Session-mashup=")]
    return cookie.split(";")[0].split("=", 1)[1]


def _browser_sid(client: Any) -> str | None:
    """The proxy session cookie the test browser carries (and sends)."""
    cookie = client.get_cookie("X-Qlik-Session-mashup")
    return None if cookie is None else cookie.value


def test_logout_is_post_only_and_refuses_cross_site(session_emu: Any, qps_calls: list) -> None:
    app = make_app(session_emu, "mashup", MODE="session")
    client = app.test_client()
    qps = app.extensions["qlikauth"].runtime.qps
    sid = _sid(client.get("/after-login/alice"))
    qps_calls.clear()
    # A link or <img> on another site: a page with a sign-out button, nothing ends.
    r = client.get("/qlik/logout?next=/bye", headers={"Referer": "https://evil.example/"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and '<form method="post" action="/qlik/logout">' in html
    assert 'name="next" value="/bye"' in html
    assert (
        r.headers["X-Frame-Options"] == "DENY"
        and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    )
    assert not any(c.startswith("X-Qlik-Session-mashup=") for c in set_cookies(r))
    # A form on another site posting here: 403, nothing ends.
    for name, headers in CROSS_SITE_LOGOUTS.items():
        r = client.post("/qlik/logout", data={"next": "/"}, headers=headers)
        assert r.status_code == 403, name
        assert not any(c.startswith("X-Qlik-Session-mashup=") for c in set_cookies(r)), name
    assert client.head("/qlik/logout").status_code == 200
    assert qps_calls == [] and qps.get_session(sid).user.user_id == "alice"
    # The portal's own page (Referer only, as with an Origin-less older client): signed out.
    r = client.post(
        "/qlik/logout", data={"next": "/bye"}, headers={"Referer": "http://localhost/account"}
    )
    assert r.status_code == 302 and r.headers["Location"] == "/bye"
    assert any(c.startswith("X-Qlik-Session-mashup=;") for c in set_cookies(r))
    assert qps.get_session(sid) is None
    # Same origin (the browser's Origin header) works too.
    sid = _sid(client.get("/after-login/bob"))
    r = client.post(
        "/qlik/logout", headers={"Origin": "http://localhost", "Referer": "https://evil.example/"}
    )
    assert r.status_code == 302 and qps.get_session(sid) is None


def test_header_auth_endpoint(ticket_emu: Any, qps_calls: list) -> None:
    client = make_app(ticket_emu, "portal").test_client()
    spoof = {
        "X-Qlik-User": "UserDirectory=PORTAL; UserId=admin",
        "X_Qlik_User": "PORTAL\\admin",
        "X-Portal-User": "PORTAL\\admin",
        "X-Qlik-Header-Value": "PORTAL\\admin",
    }
    r = client.get("/qlik/header-auth", headers=spoof)
    assert r.status_code == 401 and "X-Qlik-Header-Value" not in r.headers
    assert r.headers["Cache-Control"] == "no-store"
    client.get("/signin/alice")
    r = client.get("/qlik/header-auth", headers=spoof)
    assert r.status_code == 200
    assert r.headers["X-Qlik-Header-Value"] == "PORTAL\\alice"
    assert r.headers["Cache-Control"] == "no-store"
    assert qps_calls == []


def test_header_auth_static_directory_and_custom_response_header(ticket_emu: Any) -> None:
    app = make_app(
        ticket_emu, "portal", HEADER_USER_DIRECTORY="PORTAL", HEADER_RESPONSE_HEADER="X-Identity"
    )
    client = app.test_client()
    client.get("/signin/bob")
    r = client.get("/qlik/header-auth")
    assert r.status_code == 200 and r.headers["X-Identity"] == "bob"
    other = make_app(ticket_emu, "portal", HEADER_USER_DIRECTORY="OTHER").test_client()
    other.get("/signin/bob")
    assert other.get("/qlik/header-auth").status_code == 403


# -- issue 10 -------------------------------------------------------------------------------
def _hub_client() -> requests.Session:
    hub = requests.Session()
    hub.trust_env = False
    return hub


@pytest.mark.parametrize("name", ["qlikTicket", "QLIKTICKET", "qlik%54icket", "x-qlik-ticket"])
def test_a_laundered_ticket_never_reaches_the_hub(ticket_emu: Any, name: str) -> None:
    """Login CSRF: a target carrying the attacker's ticket must not sign the victim in as the
    attacker."""
    app = make_app(ticket_emu, "portal")
    qps = app.extensions["qlikauth"].runtime.qps
    attackers = qps.request_ticket(QlikUser("PORTAL", "mallory")).ticket
    client = app.test_client()
    client.get("/signin/alice")
    target = f"{ticket_emu.hub_url_for('portal')}?{name}={attackers}"
    r = client.get("/qlik/login", query_string={"target": target})
    assert r.status_code == 302
    location = r.headers["Location"]
    assert attackers not in location and location.lower().count("ticket=") == 1
    # redeemed at the real (emulated) hub: the browser is alice, not mallory
    hub = _hub_client().get(
        location,
        headers={"Accept": "application/json"},
        verify=str(ticket_emu.certs_dir / "root.pem"),
    )
    assert hub.status_code == 200 and hub.json()["userId"] == "alice"


def test_cross_site_navigation_mints_no_ticket(ticket_emu: Any, qps_calls: list) -> None:
    client = make_app(ticket_emu, "portal").test_client()
    client.get("/signin/alice")
    for _ in range(6):  # more than Qlik's five sessions per user
        r = client.get(
            "/qlik/login?target=/portal/hub/stream", headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert r.status_code == 200 and "Location" not in r.headers
    body = r.get_data(as_text=True)
    assert 'id="qlikauth-continue-submit"' in body and 'value="/portal/hub/stream"' in body
    assert r.headers["X-Frame-Options"] == "DENY" and qps_calls == []
    # the button: a same-origin navigation gets the ticket
    r = client.get(
        "/qlik/login?target=/portal/hub/stream", headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert (
        r.status_code == 302
        and "qlikTicket=" in r.headers["Location"]
        and qps_calls == [("POST", "ticket")]
    )
    # typed or bookmarked: no other site is involved
    assert client.get("/qlik/login", headers={"Sec-Fetch-Site": "none"}).status_code == 302
    # a sibling host of the portal is another site too: it could mint tickets as well
    r = client.get("/qlik/login", headers={"Sec-Fetch-Site": "same-site"})
    assert r.status_code == 200 and 'id="qlikauth-continue-submit"' in r.get_data(as_text=True)


def test_error_pages_show_no_internal_node_or_qps_answer(
    ticket_emu: Any, free_port: int, caplog: Any
) -> None:
    app = make_app(ticket_emu, "portal", QPS_NODES=f"https://localhost:{free_port}", TIMEOUT=2)
    client = app.test_client()
    client.get("/signin/alice")
    with caplog.at_level("WARNING", logger="qlikauth.web"):
        r = client.get("/qlik/login")
    body = r.get_data(as_text=True)
    assert r.status_code == 502 and str(free_port) not in body and "localhost" not in body
    assert any(str(free_port) in rec.getMessage() for rec in caplog.records)  # the log has it
    # a forged proxyRestUri: the configured node list is not shown to the (anonymous) browser
    anon = make_app(ticket_emu, "portal").test_client()
    for accept in ("text/html", "application/json"):
        r = anon.get(
            "/qlik/module",
            query_string={
                "targetId": "abc",
                "proxyRestUri": "https://evil.example:4243/qps/portal/",
            },
            headers={"Accept": accept},
        )
        text = r.get_data(as_text=True)
        assert (
            r.status_code == 400 and "evil.example" not in text and ticket_emu.qps_url not in text
        ), accept


def test_session_mode_follows_the_portals_groups(session_emu: Any, qps_calls: list) -> None:
    app = make_app(session_emu, "mashup", MODE="session")
    ext = app.qlikauth  # type: ignore[attr-defined]

    @ext.user_loader
    def load() -> QlikUser | None:
        name = session.get("user")
        return (
            QlikUser("PORTAL", name, [("group", g) for g in session.get("groups", [])])
            if name
            else None
        )

    @app.route("/set-groups/<groups>")
    def set_groups(groups: str) -> str:
        session["groups"] = groups.split(",")
        return "ok"

    client = app.test_client()
    client.get("/set-groups/Sales,Finance")
    client.get("/signin/alice")  # clears the session: groups again
    client.get("/set-groups/Sales,Finance")
    old = _sid(client.get("/open-qlik"))
    qps = app.extensions["qlikauth"].runtime.qps
    assert ("group", "Finance") in qps.get_session(old).user.attributes
    qps_calls.clear()
    r = client.get("/open-qlik")  # nothing changed: no call, no cookie to set
    assert _browser_sid(client) == old and qps_calls == [] and not set_cookies(r)
    client.get("/set-groups/Sales")  # Finance revoked in the portal
    new = _sid(client.get("/open-qlik"))
    assert new != old and qps.get_session(old) is None
    assert qps.get_session(new).user.attributes == (("group", "Sales"),)
    qps_calls.clear()
    r = client.get("/qlik/login")  # explicit: confirms the new one, keeps it
    assert qps_calls == [("GET", "session")] and _browser_sid(client) == new


def _remembering_app(emu: Any, groups: dict[str, list[str]], loads: list[str]) -> Flask:
    """A session-mode portal whose users' groups live in ``groups`` (its "database"), the
    mapping remembered per user with ``user_key``; ``loads`` records every loader call."""
    app = make_app(emu, "mashup", MODE="session")
    ext = app.qlikauth  # type: ignore[attr-defined]

    @ext.user_loader
    def load() -> QlikUser | None:
        name = session.get("user")
        loads.append(name)
        return QlikUser("PORTAL", name, [("group", g) for g in groups[name]]) if name else None

    @ext.user_key
    def key() -> str | None:
        return session.get("user")

    return app


def test_user_key_remembers_the_mapping_and_forget_user_applies_a_removed_group(
    session_emu: Any, qps_calls: list
) -> None:
    groups = {"alice": ["Sales", "Finance"], "bob": ["Sales"]}
    loads: list[str] = []
    app = _remembering_app(session_emu, groups, loads)
    ext = app.qlikauth  # type: ignore[attr-defined]
    client = app.test_client()
    client.get("/signin/alice")
    old = _sid(client.get("/open-qlik"))
    qps = app.extensions["qlikauth"].runtime.qps
    loads.clear()
    qps_calls.clear()
    for _ in range(5):
        assert not set_cookies(client.get("/open-qlik"))
    assert loads == [] and qps_calls == []  # page views: the remembered mapping, no call
    groups["alice"] = ["Sales"]  # Finance removed in the portal's database...
    ext.forget_user("alice")  # ...which tells the extension
    new = _sid(client.get("/open-qlik"))  # the very next view
    assert loads == ["alice"] and new != old and qps.get_session(old) is None
    assert qps.get_session(new).user.attributes == (("group", "Sales"),)
    # nobody signed in: the key says so, the loader is not asked
    loads.clear()
    with app.test_request_context("/"):
        assert ext.current_user() is None and loads == []


def test_user_key_mapping_expires_for_changes_made_elsewhere(
    session_emu: Any, qps_calls: list, monkeypatch: Any
) -> None:
    import time

    import flask_qlikauth

    monkeypatch.setattr(flask_qlikauth, "MAPPING_LIFETIME", 0.3)
    groups = {"alice": ["Sales", "Finance"]}
    loads: list[str] = []
    app = _remembering_app(session_emu, groups, loads)
    client = app.test_client()
    client.get("/signin/alice")
    old = _sid(client.get("/open-qlik"))
    groups["alice"] = ["Sales"]  # changed by another process: nobody calls forget_user here
    assert not set_cookies(client.get("/open-qlik"))  # still the remembered mapping
    time.sleep(0.4)
    new = _sid(client.get("/open-qlik"))
    qps = app.extensions["qlikauth"].runtime.qps
    assert new != old and qps.get_session(new).user.attributes == (("group", "Sales"),)


# -- setup mistakes a new user makes (issue: holes found from outside) -------------------------
def _bare_app(emu: Any) -> Flask:
    app = Flask("bare")
    app.config.update(
        SECRET_KEY="test",
        TESTING=True,
        QLIKAUTH_QPS_NODES=emu.qps_url,
        QLIKAUTH_CERTS=str(emu.certs_dir),
        QLIKAUTH_HUB_URL=emu.hub_url_for("portal"),
        QLIKAUTH_VIRTUAL_PROXY="portal",
        QLIKAUTH_USER_DIRECTORY="PORTAL",
    )
    return app


def test_init_app_without_a_user_loader_is_refused(ticket_emu: Any) -> None:
    # Without one nobody is ever signed in and /qlik/login loops back to the login page forever.
    with pytest.raises(ConfigurationError, match="user_loader"):
        QlikAuth(_bare_app(ticket_emu))
    with pytest.raises(ConfigurationError, match="user_loader"):
        QlikAuth().init_app(_bare_app(ticket_emu))
    QlikAuth(_bare_app(ticket_emu), user_loader=lambda: None)  # given at construction: fine


def test_flask_login_users_are_mapped_explicitly_not_from_get_id(ticket_emu: Any) -> None:
    import flask_login

    class Account(flask_login.UserMixin):
        def __init__(self, username: str) -> None:
            self.username = username
            self.id = "8f14e45f-session-token"  # what Flask-Login recommends get_id() return

    app = _bare_app(ticket_emu)
    manager = flask_login.LoginManager(app)
    manager.user_loader(
        lambda token: Account("alice") if token == "8f14e45f-session-token" else None
    )
    ext = QlikAuth()
    ext.user_loader(
        flask_login_loader(lambda u: QlikUser("PORTAL", u.username, [("group", "Sales")]))
    )
    ext.init_app(app)

    @app.route("/signin")
    def signin() -> str:
        flask_login.login_user(Account("alice"))
        return "ok"

    client = app.test_client()
    assert client.get("/qlik/login").headers["Location"].startswith("/login?next=")  # anonymous
    client.get("/signin")
    hub = client.get("/qlik/login").headers["Location"]
    ticket = parse_qs(urlsplit(hub).query)["qlikTicket"][0]
    page = requests.get(
        f"{hub.split('?')[0]}?qlikTicket={ticket}",
        headers={"Accept": "application/json"},
        verify=str(ticket_emu.certs_dir / "root.pem"),
    )
    assert page.json()["userId"] == "alice"  # the mapping's name, never the get_id() token


def test_flask_qlikauth_check_command(ticket_emu: Any, tmp_path: Any) -> None:
    app = _bare_app(ticket_emu)
    QlikAuth(app, user_loader=lambda: None)
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["qlikauth", "check", "--alive"])
    assert ok.exit_code == 0, ok.output
    assert "certificates OK" in ok.output and f"{ticket_emu.qps_url}: alive" in ok.output
    broken = _bare_app(ticket_emu)
    broken.config["QLIKAUTH_CERTS"] = str(tmp_path)  # an empty directory
    QlikAuth(broken, user_loader=lambda: None)
    bad = broken.test_cli_runner().invoke(args=["qlikauth", "check"])
    assert bad.exit_code == 1 and "Error:" in bad.output and "Traceback" not in bad.output


def _redeem(emu: Any, location: str) -> str:
    """Follow a ticket redirect at the emulated hub (a browser of its own); the user it signs in."""
    page = _hub_client().get(
        location, headers={"Accept": "application/json"}, verify=str(emu.certs_dir / "root.pem")
    )
    assert page.status_code == 200, page.status_code
    return str(page.json()["userId"])


def _seen(response: Any) -> list[str]:
    return [c for c in set_cookies(response) if c.startswith("qlikauth_seen=")]


def test_switching_users_in_one_browser_ends_the_previous_users_qlik_sessions(
    ticket_emu: Any, qps_calls: list
) -> None:
    """Ticket mode: bob signing in over alice in one browser must not leave the hub showing
    alice."""
    from qlikauth.store import MemoryStore

    store = MemoryStore()
    app = make_app(ticket_emu, "portal", STATE_STORE=store)
    alice, bob = QlikUser("PORTAL", "alice"), QlikUser("PORTAL", "bob")
    client = app.test_client()
    client.get("/signin/alice")
    r = client.get("/qlik/login", base_url="https://localhost")  # Secure over https
    [cookie] = _seen(r)
    attrs = [a.strip() for a in cookie.split(";")]
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} <= set(attrs)
    r = client.get("/qlik/login")  # a development portal over plain http: not Secure, or dropped
    [cookie] = _seen(r)
    assert "Secure" not in [a.strip() for a in cookie.split(";")]
    assert not any(
        a.lower().startswith(("max-age", "expires", "domain")) for a in attrs
    )  # browser-session
    assert _redeem(ticket_emu, r.headers["Location"]) == "alice"
    assert len(ticket_emu.state.sessions(user=alice)) == 1
    # the same user again: nothing ends
    qps_calls.clear()
    client.get("/signin/alice")  # the app's own login clears its session
    r = client.get("/qlik/login")
    assert r.status_code == 302 and qps_calls == [("POST", "ticket")]
    assert _redeem(ticket_emu, r.headers["Location"]) == "alice"
    assert len(ticket_emu.state.sessions(user=alice)) == 2
    # bob signs in in the same browser: alice's Qlik sessions end before bob's ticket
    qps_calls.clear()
    client.get("/signin/bob")
    r = client.get("/qlik/login")
    assert r.status_code == 302 and qps_calls == [("DELETE", "user"), ("POST", "ticket")]
    assert ticket_emu.state.sessions(user=alice) == []
    assert _redeem(ticket_emu, r.headers["Location"]) == "bob"
    assert len(ticket_emu.state.sessions(user=bob)) == 1
    # the module flow does the same: carol over bob
    qps_calls.clear()
    client.get("/signin/carol")
    r = client.get(
        "/qlik/module",
        query_string={"targetId": "abc", "proxyRestUri": f"{ticket_emu.qps_url}/qps/portal/"},
    )
    assert r.status_code == 302 and qps_calls == [("DELETE", "user"), ("POST", "ticket")]
    assert ticket_emu.state.sessions(user=bob) == [] and _seen(r)


def test_an_unknown_or_forged_handle_ends_nothing(ticket_emu: Any, qps_calls: list) -> None:
    app = make_app(ticket_emu, "portal")
    client = app.test_client()
    client.get("/signin/alice")
    assert _redeem(ticket_emu, client.get("/qlik/login").headers["Location"]) == "alice"
    for forged in ("forged", "alice", "PORTAL\\alice", "x" * 500):
        qps_calls.clear()
        other = app.test_client()
        other.set_cookie("qlikauth_seen", forged)
        other.get("/signin/bob")
        r = other.get("/qlik/login")
        assert r.status_code == 302 and qps_calls == [("POST", "ticket")], forged
        assert forged not in _seen(r)[0]  # a fresh random handle replaces it
    assert len(ticket_emu.state.sessions(user=QlikUser("PORTAL", "alice"))) == 1


def test_a_qps_failure_refuses_the_switch_and_keeps_the_handle(
    ticket_emu: Any, free_port: int, qps_calls: list
) -> None:
    """Ending alice's sessions fails: bob is refused (not signed in next to alice's live hub
    session)."""
    from qlikauth.store import MemoryStore

    store = MemoryStore()
    good = make_app(ticket_emu, "portal", STATE_STORE=store)
    down = make_app(
        ticket_emu,
        "portal",
        STATE_STORE=store,
        QPS_NODES=f"https://localhost:{free_port}",
        TIMEOUT=2,
    )
    alice = QlikUser("PORTAL", "alice")
    browser = good.test_client()
    browser.get("/signin/alice")
    assert _redeem(ticket_emu, browser.get("/qlik/login").headers["Location"]) == "alice"
    handle = browser.get_cookie("qlikauth_seen").value
    same_browser = down.test_client()  # another portal process that cannot reach QPS
    same_browser.set_cookie("qlikauth_seen", handle)
    same_browser.get("/signin/bob")
    r = same_browser.get("/qlik/login")
    body = r.get_data(as_text=True)
    assert r.status_code == 502 and "Location" not in r.headers and not set_cookies(r)
    assert "cannot be reached" in body and str(free_port) not in body  # the public text
    assert len(ticket_emu.state.sessions(user=alice)) == 1
    # the handle was kept: once QPS answers, the next try ends alice's sessions
    qps_calls.clear()
    browser.get("/signin/bob")
    r = browser.get("/qlik/login")
    assert r.status_code == 302 and qps_calls == [("DELETE", "user"), ("POST", "ticket")]
    assert ticket_emu.state.sessions(user=alice) == []


def test_portal_sign_out_clears_the_handle(ticket_emu: Any, qps_calls: list) -> None:
    app = make_app(ticket_emu, "portal")
    client = app.test_client()
    client.get("/signin/alice")
    assert _redeem(ticket_emu, client.get("/qlik/login").headers["Location"]) == "alice"
    handle = client.get_cookie("qlikauth_seen").value
    r = client.post("/qlik/logout", headers={"Origin": "http://localhost"})
    assert r.status_code == 302
    [cleared] = _seen(r)
    assert cleared.startswith("qlikauth_seen=;") and "Max-Age=0" in cleared
    assert client.get_cookie("qlikauth_seen") is None
    assert ticket_emu.state.sessions(user=QlikUser("PORTAL", "alice")) == []
    # a copy of the old cookie still names alice (it needs no store): it can only end alice's
    # sessions once more before bob's ticket, never sign anybody in
    qps_calls.clear()
    client.set_cookie("qlikauth_seen", handle)
    client.get("/signin/bob")
    r = client.get("/qlik/login")
    assert r.status_code == 302 and qps_calls == [("DELETE", "user"), ("POST", "ticket")]
    assert _redeem(ticket_emu, r.headers["Location"]) == "bob"


def test_render_sets_an_answers_headers_as_setting_them_one_by_one_would() -> None:
    """render() adds distinct new headers at once; a header the response has, or one named twice,
    is set (replaced), as before."""
    from flask_qlikauth import render

    from qlikauth.web.flows import JsonAnswer, PlainAnswer

    app = Flask("render")
    with app.test_request_context("/"):
        plain = render(
            PlainAnswer(body="t", headers=(("Cache-Control", "no-store"), ("Pragma", "no-cache")))
        )
        assert (
            plain.headers.getlist("Cache-Control") == ["no-store"]
            and plain.headers["Pragma"] == "no-cache"
        )
        assert plain.mimetype == "text/plain" and plain.get_data(as_text=True) == "t"
        typed = render(PlainAnswer(body="t", headers=(("Content-Type", "text/csv"), ("X-A", "1"))))
        assert typed.headers.getlist("Content-Type") == ["text/csv"] and typed.headers["X-A"] == "1"
        twice = render(JsonAnswer(data={}, headers=(("X-B", "1"), ("x-b", "2"))))
        assert twice.headers.getlist("X-B") == ["2"]


def test_a_post_form_and_the_query_are_read_only_when_a_flow_asks(session_emu: Any) -> None:
    from flask_qlikauth import web_request

    app = make_app(session_emu, "mashup", MODE="session")
    with app.test_request_context(
        "/x?next=/a&next=/b", method="POST", data={"next": "/home", "csrf": "t"}
    ):
        wr = web_request()
        assert (
            wr.args.get("next") == "/a" and wr.args["next"] == "/a" and sorted(wr.args) == ["next"]
        )
        assert (
            wr.form.get("next") == "/home"
            and len(wr.form) == 2
            and dict(wr.form) == {"next": "/home", "csrf": "t"}
        )
        assert wr.form.get("missing") is None
    with app.test_request_context("/x"):
        assert web_request().args == {} and web_request().form == {}
