"""qlikauth.web.flows without any framework: a WebRequest in, a plain answer out (real emulator,
real TLS)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from qlikauth import QlikUser
from qlikauth.web import build_runtime, flows
from qlikauth.web.flows import JsonAnswer, PageAnswer, PlainAnswer, RedirectAnswer, WebRequest


@pytest.fixture
def emu(emulator_factory: Any) -> Any:
    from qlikauth.emulator import VirtualProxy

    return emulator_factory(
        virtual_proxies=[
            VirtualProxy(
                prefix="portal", method="ticket", module_uri="https://portal.example/qlik/module"
            ),
            VirtualProxy(prefix="mashup", method="session"),
        ]
    )


def runtime_for(emu: Any, prefix: str = "portal", **extra: Any) -> Any:
    return build_runtime(
        {
            "QPS_NODES": emu.qps_url,
            "CERTS": str(emu.certs_dir),
            "VIRTUAL_PROXY": prefix,
            "HUB_URL": emu.hub_url_for(prefix),
            "USER_DIRECTORY": "PORTAL",
            **extra,
        }
    )


ALICE = QlikUser("PORTAL", "alice", [("group", "Sales")])


def req(method: str = "GET", path: str = "/qlik/login", **kw: Any) -> WebRequest:
    return WebRequest(method=method, path=path, host="portal.example", **kw)


def test_the_user_is_mapped_once_and_only_when_needed(emu: Any, qps_calls: list) -> None:
    calls: list[int] = []

    def mapper() -> QlikUser:
        calls.append(1)
        return ALICE

    runtime = runtime_for(emu)
    r = req(args={"target": "https://evil.example/"}, user=mapper)
    answer = flows.run(flows.login, r, runtime)
    assert (
        isinstance(answer, PageAnswer) and answer.status == 400 and calls == []
    )  # refused before mapping
    r = req(user=mapper, headers={"X-Forwarded-For": "1"})
    assert r.header("x-forwarded-for") == "1" and r.header("Origin") is None
    answer = flows.run(flows.login, r, runtime)
    assert isinstance(answer, RedirectAnswer) and calls == [1]
    assert r.owner == "portal\\alice" and calls == [1]  # QlikUser.key is case-folded
    assert ("Cache-Control", "no-store") in answer.headers
    assert (
        answer.location.startswith(emu.hub_url_for("portal")) and "qlikTicket=" in answer.location
    )
    assert "qlikTicket" not in repr(answer)  # a ticket URL is never shown in reprs (logs)
    assert qps_calls == [("POST", "ticket")]


def test_anonymous_login_and_module_go_to_the_portals_login(emu: Any, qps_calls: list) -> None:
    runtime = runtime_for(emu, LOGIN_URL="/accounts/login?x=1")
    answer = flows.run(
        flows.login,
        req(full_path="/qlik/login?target=/portal/hub/s", args={"target": "/portal/hub/s"}),
        runtime,
    )
    assert isinstance(answer, RedirectAnswer)
    parts = urlsplit(answer.location)
    assert parts.path == "/accounts/login" and parse_qs(parts.query) == {
        "x": ["1"],
        "next": ["/qlik/login?target=/portal/hub/s"],
    }
    module = flows.run(
        flows.module,
        req(
            path="/qlik/module",
            args={"targetId": "abc", "proxyRestUri": emu.rest_uri_for("portal")},
        ),
        runtime,
    )
    assert isinstance(module, RedirectAnswer) and module.location.startswith(
        "/accounts/login?x=1&next="
    )
    assert qps_calls == []


def test_module_refuses_a_forged_node_without_echoing_it(emu: Any, qps_calls: list) -> None:
    runtime = runtime_for(emu)
    forged = "https://evil.example:4243/qps/portal/"
    answer = flows.run(
        flows.module,
        req(path="/qlik/module", args={"targetId": "abc", "proxyRestUri": forged}, user=ALICE),
        runtime,
    )
    assert isinstance(answer, PageAnswer) and answer.status == 400
    text = repr(dict(answer.context))
    assert (
        "evil.example" not in text and emu.qps_url not in text and "4243" not in text
    )  # no node list either
    as_json = flows.run(
        flows.module,
        req(path="/qlik/module", args={"targetId": "abc", "proxyRestUri": forged}, wants_json=True),
        runtime,
    )
    assert (
        isinstance(as_json, JsonAnswer)
        and as_json.status == 400
        and as_json.data["error"] == "RedirectError"
    )
    assert "evil.example" not in repr(as_json.data) and len(as_json.data["reference"]) == 8
    assert qps_calls == []


def test_logout_page_and_post_policy(emu: Any, qps_calls: list) -> None:
    runtime = runtime_for(emu)
    page = flows.run(
        flows.logout,
        req(path="/qlik/logout", args={"next": "//evil.example"}, csrf_token="tok"),
        runtime,
    )
    assert isinstance(page, PageAnswer) and page.template == "qlikauth/logout.html"
    assert page.context == {"action": "/qlik/logout", "next_url": "/", "csrf_token_value": "tok"}
    assert ("X-Frame-Options", "DENY") in page.headers
    # a POST without the framework's CSRF check must be same-origin
    for headers in (
        {},
        {"Origin": "null"},
        {"Origin": "https://evil.example"},
        {"Referer": "https://portal.example.evil/x"},
        {"Origin": "http://portal.example"},
    ):
        refused = flows.run(
            flows.logout, req("POST", "/qlik/logout", scheme="https", headers=headers), runtime
        )
        assert isinstance(refused, PlainAnswer) and refused.status == 403, headers
    assert qps_calls == []
    ok = flows.run(
        flows.logout,
        req(
            "POST",
            "/qlik/logout",
            headers={"Origin": "https://portal.example"},
            form={"next": "/home"},
            user=ALICE,
        ),
        runtime,
    )
    assert isinstance(ok, RedirectAnswer) and ok.location == "/home"
    assert [(c.name, c.deletes) for c in ok.cookies] == [
        (runtime.clear_cookie().name, True),
        (flows.SEEN_COOKIE, True),
    ]
    assert qps_calls == [("DELETE", "user")]
    # the framework's own CSRF check (Django) replaces the origin check
    checked = flows.run(flows.logout, req("POST", "/qlik/logout", csrf_verified=True), runtime)
    assert isinstance(checked, RedirectAnswer) and checked.location == "/"
    wrong = flows.run(flows.logout, req("PUT", "/qlik/logout"), runtime)
    assert isinstance(wrong, PlainAnswer) and wrong.status == 405


def test_session_mode_resume_and_end(emu: Any, qps_calls: list) -> None:
    runtime = runtime_for(emu, "mashup", MODE="session")
    session: dict[str, Any] = {}
    first = flows.resume_session(req(path="/", session=session, user=ALICE), runtime)
    assert first.active and first.created and qps_calls == [("POST", "session")]
    # the proxy session cookie, and the browser's record of who signed in here
    assert [c.name for c in first.cookies] == [runtime.session.cookie_name, flows.SEEN_COOKIE]
    sid = first.cookies[0].value
    assert session[flows.SESSION_KEY]["sid"] == sid
    qps_calls.clear()
    again = flows.resume_session(
        req(path="/", session=session, user=ALICE, cookies={runtime.session.cookie_name: sid}),
        runtime,
    )
    assert again.active and not again.created and again.cookies == () and qps_calls == []
    login = flows.run(flows.login, req(session=session, user=ALICE), runtime)
    assert isinstance(login, RedirectAnswer) and login.location == emu.hub_url_for("mashup")
    assert qps_calls == [("GET", "session")]
    assert [c.value for c in login.cookies if c.name == runtime.session.cookie_name] == [sid]
    qps_calls.clear()
    cookies = flows.end_sessions(
        req(path="/", session=session, user=ALICE, cookies={runtime.session.cookie_name: sid}),
        runtime,
    )
    assert [(c.name, c.deletes) for c in cookies] == [
        (runtime.session.cookie_name, True),
        (flows.SEEN_COOKIE, True),
    ]
    assert flows.SESSION_KEY not in session and flows.SIGNIN_KEY not in session
    assert runtime.qps.get_session(sid) is None
    anonymous = flows.resume_session(req(path="/", session={}), runtime)
    assert not anonymous.active and anonymous.cookies == ()


class _WatchedSession(dict):
    """A portal session that records every write (a page view must write nothing)."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.writes: list[str] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.writes.append(key)
        return super().pop(key, *default)


def test_reused_session_only_when_nothing_changed(emu: Any, qps_calls: list) -> None:
    """The page-view fast path answers only when resume_session would reuse the record untouched."""
    runtime = runtime_for(emu, "mashup", MODE="session", SESSION_RECHECK="300")
    session = _WatchedSession()
    sid = flows.resume_session(req(path="/", session=session, user=ALICE), runtime).cookies[0].value
    record = session[flows.SESSION_KEY]
    qps_calls.clear()
    session.writes.clear()
    jar = {runtime.session.cookie_name: sid}
    reused = flows.reused_session(session, jar, ALICE, runtime)
    assert reused is not None and reused.active and reused.cookies == () and not reused.created
    assert reused.node == record["node"]
    # the same through resume_session, for a freshly mapped but equal user, and an explicit start
    again = QlikUser("PORTAL", "alice", [("group", "Sales")])
    assert (
        flows.resume_session(
            req(path="/", session=session, user=again, cookies=jar), runtime, start=True
        )
        is reused
    )
    assert qps_calls == [] and session.writes == []
    # anything else is resume_session's to decide
    assert flows.reused_session(session, {}, ALICE, runtime) is None  # the browser lacks the cookie
    assert (
        flows.reused_session(session, {runtime.session.cookie_name: "other"}, ALICE, runtime)
        is None
    )
    assert (
        flows.reused_session(session, jar, ALICE.with_attributes([("group", "Finance")]), runtime)
        is None
    )
    assert (
        flows.reused_session(session, jar, QlikUser("PORTAL", "bob", [("group", "Sales")]), runtime)
        is None
    )
    assert (
        flows.reused_session(session, jar, ALICE, runtime, owner="auth.user:7") is None
    )  # another portal user
    assert flows.reused_session(session, jar, None, runtime) is None
    assert flows.reused_session(None, jar, ALICE, runtime) is None
    assert (
        flows.reused_session(session, jar, ALICE, runtime, verify=True) is None
    )  # /qlik/login confirms
    assert (
        flows.reused_session(session, jar, ALICE, runtime, now=record["checked"] + 301) is None
    )  # recheck due
    assert (
        flows.reused_session({**session, flows.SIGNED_OUT_KEY: True}, jar, ALICE, runtime) is None
    )
    assert qps_calls == [] and session.writes == []
    # the stale attributes are replaced by resume_session (one QPS call each way), never reused
    finance = ALICE.with_attributes([("group", "Finance")])
    replaced = flows.resume_session(
        req(path="/", session=session, user=finance, cookies=jar), runtime
    )
    assert replaced.created and replaced.cookies[0].value != sid
    assert qps_calls == [("DELETE", "session"), ("POST", "session")]


def test_header_auth_answers_plain_data(emu: Any, qps_calls: list) -> None:
    runtime = runtime_for(emu, HEADER_NAME="X-Portal-User")
    ok = flows.run(flows.header_auth, req(path="/qlik/header-auth", user=ALICE), runtime)
    assert (
        isinstance(ok, PlainAnswer)
        and ok.status == 200
        and ("X-Qlik-Header-Value", "PORTAL\\alice") in ok.headers
    )
    anon = flows.run(
        flows.header_auth,
        req(path="/qlik/header-auth", headers={"X-Qlik-Header-Value": "PORTAL\\admin"}),
        runtime,
    )
    assert anon.status == 401 and not any(v == "PORTAL\\admin" for _, v in anon.headers)
    unset = flows.run(
        flows.header_auth, req(path="/qlik/header-auth", user=ALICE), runtime_for(emu)
    )
    assert (
        isinstance(unset, PageAnswer)
        and unset.status == 500
        and "HEADER_NAME" not in repr(unset.context)
    )
    assert qps_calls == []


def test_the_public_surface_of_qlikauth_web() -> None:
    import qlikauth.web as web

    assert web.__all__ == [
        "QlikAuthConfig",
        "QlikAuthRuntime",
        "build_runtime",
        "settings_from_environ",
        "MODES",
        "SETTING_KEYS",
        "WebRequest",
        "Answer",
        "RedirectAnswer",
        "PageAnswer",
        "PlainAnswer",
        "JsonAnswer",
        "SessionOutcome",
        "Flow",
        "run",
        "ErrorDescription",
        "describe_error",
        "TEMPLATES_DIR",
    ]
    assert flows.__all__ == [
        "WebRequest",
        "Answer",
        "RedirectAnswer",
        "PageAnswer",
        "PlainAnswer",
        "JsonAnswer",
        "SessionOutcome",
        "Flow",
        "run",
        "login",
        "module",
        "logout",
        "header_auth",
        "login_redirect",
        "error_answer",
        "resume_session",
        "reused_session",
        "end_sessions",
        "same_origin",
        "NO_STORE",
        "SESSION_KEY",
        "SIGNIN_KEY",
        "RETRY_KEY",
        "RETRY_AFTER_SECONDS",
        "SIGNED_OUT_KEY",
        "SEEN_COOKIE",
        "portal_signed_in",
        "portal_signed_out",
        "cross_site",
        "continue_page",
        "refuse_cross_site_start",
    ]
    for module in (web, flows):
        for name in module.__all__:
            assert hasattr(module, name), name
    assert sorted(p.name for p in (web.TEMPLATES_DIR / "qlikauth").iterdir()) == [
        "choose.html",
        "continue.html",
        "error.html",
        "logout.html",
    ]


def test_node_hub_urls_setting() -> None:
    from qlikauth import ConfigurationError
    from qlikauth.web import QlikAuthConfig

    base = {
        "QPS_NODES": "https://qs1:4243,https://qs2:4243",
        "CERTS": "/c",
        "HUB_URL": "https://qs1/p/hub/",
    }
    as_list = QlikAuthConfig.from_mapping(
        {**base, "NODE_HUB_URLS": "https://qs1/p/hub/, https://qs2/p/hub/"}
    )
    as_map = QlikAuthConfig.from_mapping(
        {**base, "NODE_HUB_URLS": {"https://QS2:4243/": "https://qs2/p/hub/"}}
    )
    assert as_list.node_hub_urls == {
        "https://qs1:4243": "https://qs1/p/hub/",
        "https://qs2:4243": "https://qs2/p/hub/",
    }
    assert as_map.node_hub_urls == {"https://qs2:4243": "https://qs2/p/hub/"}
    assert QlikAuthConfig.from_mapping(base).node_hub_urls == {}
    for bad, match in (
        ("https://qs1/p/hub/", "1 hub URL"),
        ({"https://qs3:4243": "https://qs3/"}, "not one of"),
        ({"https://qs2:4243": "ftp://qs2/"}, "NODE_HUB_URLS"),
    ):
        with pytest.raises(ConfigurationError, match=match):
            QlikAuthConfig.from_mapping({**base, "NODE_HUB_URLS": bad})


def test_session_mode_sends_the_browser_to_the_node_holding_the_session(certs_dir: Any) -> None:
    """Proxy sessions live on one node: with node 1 down, the session is made on node 2 and
    /qlik/login goes to node 2's hub (NODE_HUB_URLS), where its cookie means something."""
    from qlikauth.emulator import EmulatorCluster, VirtualProxy

    with EmulatorCluster(
        nodes=2, certs_dir=certs_dir, virtual_proxies=[VirtualProxy("mashup", method="session")]
    ) as c:
        hubs = [n.hub_url_for("mashup") for n in c.nodes]
        runtime = build_runtime(
            {
                "QPS_NODES": c.qps_urls,
                "CERTS": str(c.certs_dir),
                "VIRTUAL_PROXY": "mashup",
                "HUB_URL": hubs[0],
                "NODE_HUB_URLS": hubs,
                "MODE": "session",
                "USER_DIRECTORY": "PORTAL",
            }
        )
        try:
            first = flows.run(flows.login, req(session={}, user=ALICE), runtime)
            assert isinstance(first, RedirectAnswer) and first.location == hubs[0]
            c[0].stop()
            bobs: dict[str, Any] = {}
            second = flows.run(
                flows.login, req(session=bobs, user=QlikUser("PORTAL", "bob")), runtime
            )
            assert isinstance(second, RedirectAnswer) and second.location == hubs[1]
            assert bobs[flows.SESSION_KEY]["node"] == c.qps_urls[1]
            assert [s.user.user_id for s in c[1].state.sessions("mashup")] == ["bob"]
        finally:
            runtime.close()


def test_a_ticket_sign_in_over_another_user_ends_the_session_in_the_qlik_cookie_too(
    emu: Any, qps_calls: list
) -> None:
    """The portal sees the configured Qlik cookie (same host): that exact session ends as well."""
    runtime = runtime_for(emu)
    first = flows.run(flows.login, req(user=ALICE), runtime)
    [seen] = first.cookies
    assert (
        seen.name == flows.SEEN_COOKIE
        and seen.http_only
        and seen.samesite == "Lax"
        and seen.max_age is None
    )
    carried = runtime.qps.add_session(
        QlikUser("PORTAL", "carol")
    ).session_id  # some session in the cookie
    qps_calls.clear()
    bob = QlikUser("PORTAL", "bob")
    answer = flows.run(
        flows.login,
        req(
            user=bob, cookies={seen.name: seen.value, runtime.config.effective_cookie_name: carried}
        ),
        runtime,
    )
    assert isinstance(answer, RedirectAnswer) and "qlikTicket=" in answer.location
    assert qps_calls == [("DELETE", "user"), ("DELETE", "session"), ("POST", "ticket")]
    assert runtime.qps.get_session(carried) is None
    [new] = answer.cookies
    assert new.value != seen.value  # a fresh handle for bob


#: What a boolean setting may be, and what it reads as (qlikauth._parse;
#: tests/saml/test_sp_refusals.py checks ALLOW_HTTP alike).
BOOLEAN_WORDS = [
    (True, True),
    (False, False),
    (1, True),
    (0, False),
    ("Yes", True),
    (" on ", True),
    ("TRUE", True),
    ("0", False),
    ("off", False),
    ("", False),
    ("No", False),
]
NOT_BOOLEAN = ["maybe", "ture", 2, 1.0, ["true"]]


@pytest.mark.parametrize(("value", "expected"), BOOLEAN_WORDS)
def test_a_boolean_setting_reads_the_words_it_documents(value: Any, expected: bool) -> None:
    from qlikauth.web import QlikAuthConfig

    base = {"QPS_NODES": "https://qs1:4243", "CERTS": "/c", "HUB_URL": "https://qs1/p/hub/"}
    assert QlikAuthConfig.from_mapping({**base, "COOKIE_SECURE": value}).cookie_secure is expected


@pytest.mark.parametrize("value", NOT_BOOLEAN)
def test_a_boolean_setting_that_is_not_one_is_refused_by_name(value: Any) -> None:
    from qlikauth import ConfigurationError
    from qlikauth.web import QlikAuthConfig

    base = {"QPS_NODES": "https://qs1:4243", "CERTS": "/c", "HUB_URL": "https://qs1/p/hub/"}
    with pytest.raises(ConfigurationError, match="COOKIE_SECURE.*expected true or false"):
        QlikAuthConfig.from_mapping({**base, "COOKIE_SECURE": value})
