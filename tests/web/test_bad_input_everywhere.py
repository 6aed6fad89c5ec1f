"""Bad input in every alphabet through every endpoint: never a 500, only the documented answers,
and nothing that was refused reaches QPS.

Values are drawn from the whole Unicode range (lone surrogates, noncharacters, private use,
unassigned code points, look-alikes; ``st.text()`` leaves surrogates out) and from raw bytes
that are not UTF-8. On the wire a lone surrogate can only arrive as invalid UTF-8 (``%ED%A0%80``),
so the frameworks get percent-encoded bytes; the flows behind them also get the decoded text
with the surrogates in it, as a WebRequest. The endpoints: ``/qlik/login?target=``,
``/qlik/module?proxyRestUri=&targetId=``, ``/qlik/logout`` ``next``, the SAML login ``next``,
ACS (``SAMLResponse``, ``RelayState``), single logout (``SAMLRequest``, ``SAMLResponse``,
``RelayState``) and sign-out, the Qlik Cloud endpoints and the QSEoW JWT login, in Flask (one
app, SAML configured, the emulated tenant) and in Django. The emulator counts every QPS API
request: a refusal (4xx) must leave the count unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from flask import Flask, session
from flask_qlikauth import QlikAuth
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qlikauth import QlikUser
from qlikauth.exceptions import QlikAuthError
from qlikauth.redirects import RedirectPolicy

#: Every code point, surrogates (Cs) and noncharacters included.
ANY_CHAR = st.characters(codec=None, categories=None)
TRICKY = st.sampled_from(
    [
        "\ud800",
        "\udfff",
        "\ufdd0",
        "\uffff",
        "\U0010ffff",
        "\ue000",
        "\U000f0000",
        "\u0378",
        "\u202e",
        "\u200b",
        "\ufeff",
        "\u0000",
        "\r\n",
        "\u2215",
        "\uff0f",
        "\u0430",
        "\u2044",
        "%2F%2F",
        "\\\\",
        "//evil.example",
        "https://evil.example/",
        "javascript:",
        "@",
        "#",
    ]
)
ANY_TEXT = st.lists(ANY_CHAR | TRICKY, max_size=12).map("".join)
RAW_BYTES = st.binary(max_size=24)


def wire(value: str | bytes) -> str:
    """A value as it travels in a query or form: percent-encoded UTF-8 (a lone surrogate as the
    invalid bytes it would be), or the raw bytes given."""
    data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return quote_from_bytes(data, safe="")


#: What an endpoint may answer to bad input: a page or redirect, a refusal; never 5xx.
DOCUMENTED = {200, 204, 302, 303, 400, 401, 403, 404, 405, 413}
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One Flask portal: ticket mode with a module virtual proxy, SAML, the Qlik Cloud routes."""
    from flask_qlikauth.cloud import cloud_blueprint

    from qlikauth.cloud import AccessTokenCache, CloudAccess, CloudJwtIssuer, OAuthClient, QlikCloud
    from qlikauth.emulator import Emulator, VirtualProxy
    from qlikauth.emulator.cloud import CloudTenant, OAuthClientConfig
    from qlikauth.emulator.saml_idp import DEMO_GROUPS, ENTRA_CLAIMS, SamlIdp, write_self_signed
    from qlikauth.jwtkeys import SigningKey
    from qlikauth.web.cloud import CloudPortal
    from qlikauth.web.saml import saml_parts, saml_user

    keys = tmp_path_factory.mktemp("bad-input-keys")
    write_self_signed(keys / "idp", "idp")
    emu = Emulator(
        virtual_proxies=[
            VirtualProxy("portal", method="ticket", module_uri="http://localhost/qlik/module")
        ]
    ).start()
    idp = SamlIdp(key_dir=keys / "idp")
    tenant = CloudTenant(
        oauth_clients=[OAuthClientConfig("c", client_secret="s", scopes=("user_default",))]
    ).start()
    cloud = QlikCloud(tenant.url, verify=tenant.root_pem)
    try:
        app = Flask(__name__)
        app.config.update(
            SECRET_KEY="bad-input",
            TESTING=True,
            QLIKAUTH_QPS_NODES=emu.qps_url,
            QLIKAUTH_CERTS=str(emu.certs_dir),
            QLIKAUTH_HUB_URL=emu.hub_url_for("portal"),
            QLIKAUTH_VIRTUAL_PROXY="portal",
            QLIKAUTH_ALLOWED_TARGETS=[emu.hub_url],
            QLIKAUTH_SAML={
                "BASE_URL": "http://localhost/qlik/saml/",
                "ALLOW_HTTP": True,
                "IDP_METADATA": idp.metadata(),
            },
            QLIKAUTH_CLAIMS={
                "USER_ID": ENTRA_CLAIMS["email"],
                "USER_DIRECTORY": "AZURE",
                "GROUP_NAMES": {g: n for n, g in DEMO_GROUPS.items()},
                "UNKNOWN_GROUPS": "refuse",
            },
        )
        ext = QlikAuth()

        @ext.user_loader
        def load() -> QlikUser | None:
            name = session.get("user")
            if name:
                return QlikUser("PORTAL", name, [("group", "Sales")])
            return saml_user(session, ext.runtime)

        ext.init_app(app)
        issuer = CloudJwtIssuer(SigningKey.generate("RS256", kid="k1"), "https://portal.test")
        tokens = AccessTokenCache(cloud, OAuthClient("c", client_secret="s"))
        portal = CloudPortal(access=CloudAccess(tokens), jwt_issuer=issuer)
        app.register_blueprint(cloud_blueprint(portal))

        @app.get("/signin/<name>")
        def signin(name: str) -> str:
            session["user"] = name
            return "ok"

        with app.app_context():
            idp.add_sp_metadata(saml_parts(ext.runtime).sp.metadata())
        yield {"app": app, "emu": emu}
    finally:
        cloud.close()
        tenant.stop()
        idp.stop()
        emu.stop()


def _check(
    site: dict[str, Any],
    method: str,
    path: str,
    *,
    query: str = "",
    form: str | None = None,
    signed_in: bool = False,
    same_origin: bool = True,
) -> int:
    """Send one request; assert a documented answer, and no QPS call when it was refused."""
    emu = site["emu"]
    with site["app"].test_client() as client:
        if signed_in:
            client.get("/signin/alice")
        headers = (
            {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
            if same_origin
            else {"Sec-Fetch-Site": "cross-site"}
        )
        before = emu.state.qps_requests
        kwargs: dict[str, Any] = {"headers": headers, "query_string": query}
        if form is not None:
            kwargs.update(data=form, content_type="application/x-www-form-urlencoded")
        r = client.open(path, method=method, **kwargs)
        assert r.status_code in DOCUMENTED, (path, query[:80], r.status_code, r.get_data()[:300])
        if r.status_code >= 400:
            assert emu.state.qps_requests == before, (
                path,
                query[:80],
                "refused, yet QPS was asked",
            )
            assert "Traceback" not in r.get_data(as_text=True)
        return r.status_code


@SETTINGS
@given(target=ANY_TEXT | RAW_BYTES, signed_in=st.booleans())
@example(target="\ud800", signed_in=True)
@example(target=b"\xff\xfe", signed_in=True)
@example(target="https://evil.example/\u202e", signed_in=True)
def test_login_target(site: dict[str, Any], target: str | bytes, signed_in: bool) -> None:
    _check(site, "GET", "/qlik/login", query=f"target={wire(target)}", signed_in=signed_in)


@SETTINGS
@given(rest=ANY_TEXT | RAW_BYTES, target_id=ANY_TEXT | RAW_BYTES, node=st.booleans())
@example(rest="\udfff", target_id="\ud800", node=False)
@example(rest="", target_id="0" * 36 + "\ufdd0", node=True)
def test_module_parameters(
    site: dict[str, Any], rest: str | bytes, target_id: str | bytes, node: bool
) -> None:
    # With the node's real proxyRestUri and a bad targetId, or a bad proxyRestUri.
    proxy = (
        wire(site["emu"].rest_uri_for("portal") + (rest if isinstance(rest, str) else ""))
        if node
        else wire(rest)
    )
    status = _check(
        site,
        "GET",
        "/qlik/module",
        query=f"proxyRestUri={proxy}&targetId={wire(target_id)}",
        signed_in=True,
    )
    assert status != 302 or node  # never a ticket for a node that is not configured


@SETTINGS
@given(next_=ANY_TEXT | RAW_BYTES, method=st.sampled_from(["GET", "POST"]))
@example(next_="//evil.example", method="POST")
@example(next_="/\ud800", method="POST")
def test_logout_next(site: dict[str, Any], next_: str | bytes, method: str) -> None:
    if method == "GET":
        _check(site, "GET", "/qlik/logout", query=f"next={wire(next_)}", signed_in=True)
    else:
        _check(site, "POST", "/qlik/logout", form=f"next={wire(next_)}", signed_in=True)
        _check(site, "POST", "/qlik/saml/logout", form=f"next={wire(next_)}", signed_in=True)


@SETTINGS
@given(next_=ANY_TEXT | RAW_BYTES, same_origin=st.booleans())
@example(next_="\ud800", same_origin=True)
def test_saml_login_next(site: dict[str, Any], next_: str | bytes, same_origin: bool) -> None:
    _check(site, "GET", "/qlik/saml/login", query=f"next={wire(next_)}", same_origin=same_origin)


@SETTINGS
@given(
    message=ANY_TEXT | RAW_BYTES,
    relay=ANY_TEXT | RAW_BYTES,
    where=st.sampled_from(["acs", "slo-get-request", "slo-get-response", "slo-post"]),
)
@example(message="PHNhbWxwOl\ud800", relay="/", where="acs")
@example(message=b"\x00\xff", relay="\udfff", where="slo-get-request")
def test_saml_messages(
    site: dict[str, Any], message: str | bytes, relay: str | bytes, where: str
) -> None:
    if where == "acs":
        _check(
            site,
            "POST",
            "/qlik/saml/acs",
            form=f"SAMLResponse={wire(message)}&RelayState={wire(relay)}",
        )
    elif where == "slo-post":
        _check(
            site,
            "POST",
            "/qlik/saml/slo",
            form=f"SAMLRequest={wire(message)}&RelayState={wire(relay)}",
        )
    else:
        name = "SAMLRequest" if where.endswith("request") else "SAMLResponse"
        _check(
            site,
            "GET",
            "/qlik/saml/slo",
            query=f"{name}={wire(message)}&RelayState={wire(relay)}&SigAlg={wire(relay)}"
            f"&Signature={wire(message)}",
        )


@SETTINGS
@given(
    value=ANY_TEXT | RAW_BYTES,
    path=st.sampled_from(
        [
            ("POST", "/qlik/cloud/access-token"),
            ("POST", "/qlik/cloud/jwt"),
            ("POST", "/qlik/cloud/logout"),
            ("GET", "/qlik/jwt/login"),
        ]
    ),
    signed_in=st.booleans(),
    same_origin=st.booleans(),
)
def test_cloud_endpoints(
    site: dict[str, Any],
    value: str | bytes,
    path: tuple[str, str],
    signed_in: bool,
    same_origin: bool,
) -> None:
    method, url = path
    query = f"target={wire(value)}&next={wire(value)}"
    if site["app"].url_map.bind("localhost").test(url, method=method):
        _check(
            site,
            method,
            url,
            query=query,
            form=query if method == "POST" else None,
            signed_in=signed_in,
            same_origin=same_origin,
        )


# -- the flows behind the frameworks, given the decoded text itself ------------------------------
@SETTINGS
@given(value=ANY_TEXT, name=st.sampled_from(["target", "next", "proxyRestUri", "targetId"]))
@example(value="\ud800", name="target")
@example(value="\udfff", name="proxyRestUri")
def test_flows_take_surrogates_in_the_decoded_text(
    site: dict[str, Any], value: str, name: str
) -> None:
    from qlikauth.web import flows

    emu = site["emu"]
    runtime = site["app"].extensions["qlikauth"].runtime
    args = {name: value}
    if name == "targetId":
        args["proxyRestUri"] = emu.rest_uri_for("portal")
    if name == "proxyRestUri":
        args["targetId"] = "0f8fad5b-d9cb-469f-a165-70867728950e"
    user = QlikUser("PORTAL", "alice")
    for flow, method in ((flows.login, "GET"), (flows.module, "GET"), (flows.logout, "POST")):
        request = flows.WebRequest(
            method,
            "/qlik/x",
            args=args,
            form=args,
            session={},
            headers={"Origin": "http://localhost"},
            host="localhost",
            scheme="http",
            user=user,
        )
        before = emu.state.qps_requests
        answer = flows.run(flow, request, runtime)
        status = getattr(answer, "status", 200)
        assert status in DOCUMENTED, (flow.__name__, name, value, answer)
        if status >= 400:
            assert emu.state.qps_requests == before, (flow.__name__, name, value)


@settings(max_examples=200, deadline=None)
@given(
    url=ANY_TEXT
    | st.builds(
        lambda a, b: a + b,
        st.sampled_from(
            ["https://hub.example.com/", "/hub/", "//", "https://hub.example.com@", "\\"]
        ),
        ANY_TEXT,
    )
)
@example(url="https://hub.example.com/\ud800")
@example(url="/hub/\udfff")
def test_redirect_policy_over_every_code_point(url: str) -> None:
    policy = RedirectPolicy(["https://hub.example.com"], "https://hub.example.com/hub/")
    try:
        checked = policy.check(url)
    except QlikAuthError as exc:
        assert len(str(exc)) < 600
        return
    checked.encode("utf-8")  # what is accepted can be sent as a Location
    assert checked.startswith(("https://hub.example.com/", "/")) and not checked.startswith("//")


def test_the_endpoints_answer_good_input(site: dict[str, Any]) -> None:
    # The properties above would pass on routes that do not exist: these must work.
    with site["app"].test_client() as client:
        assert client.get("/qlik/saml/login?next=/").status_code == 302
        client.get("/signin/alice")
        before = site["emu"].state.qps_requests
        r = client.get("/qlik/login", headers={"Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 302 and "qlikTicket=" in r.headers["Location"]
        assert site["emu"].state.qps_requests == before + 1
        # the Qlik Cloud routes are there (what they answer this user is not the point here)
        assert client.post(
            "/qlik/cloud/jwt",
            headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
        ).status_code in (200, 401)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), use_node=st.booleans(), target_id=ANY_TEXT)
@example(data=None, use_node=True, target_id="\ud800")
def test_proxy_rest_uri_check_over_every_code_point(
    site: dict[str, Any], data: Any, use_node: bool, target_id: str
) -> None:
    # The constructor behind /qlik/module: only a configured node's REST URI and a GUID-like
    # targetId pass; everything else is a QlikAuthError (RedirectError), never anything else.
    node = site["emu"].rest_uri_for("portal")
    tail = data.draw(ANY_TEXT) if data is not None else "\udfff"
    rest = node + tail if use_node else tail
    runtime = site["app"].extensions["qlikauth"].runtime
    try:
        checked = runtime.ticket.check_module_request(rest, target_id)
    except QlikAuthError as exc:
        assert len(str(exc)) < 600
        return
    assert checked.startswith(site["emu"].qps_url)
    checked.encode("utf-8")


@pytest.mark.parametrize(
    "method, path, name",
    [
        ("GET", "/qlik/login", "target"),
        ("GET", "/qlik/module", "proxyRestUri"),
        ("GET", "/qlik/module", "targetId"),
        ("POST", "/qlik/logout", "next"),
        ("GET", "/qlik/saml/login", "next"),
        ("POST", "/qlik/saml/acs", "SAMLResponse"),
        ("POST", "/qlik/saml/acs", "RelayState"),
        ("GET", "/qlik/saml/slo", "SAMLRequest"),
        ("GET", "/qlik/jwt/login", "target"),
    ],
)
def test_a_long_value_is_quoted_short_in_logs_and_pages(
    site: dict[str, Any], caplog: Any, method: str, path: str, name: str
) -> None:
    # 10 kB of a refused value must not land in the log or the page (a log line per request
    # would let anyone fill the disk, and echo whatever was sent).
    import logging

    caplog.set_level(logging.DEBUG)
    value = "https://evil.example/" + "A\u0430" * 5000
    field = f"{name}={wire(value)}"
    other = (
        "&targetId=0f8fad5b-d9cb-469f-a165-70867728950e"
        if name == "proxyRestUri"
        else f"&proxyRestUri={wire(site['emu'].rest_uri_for('portal'))}"
        if name == "targetId"
        else ""
    )
    status = _check(
        site,
        method,
        path,
        query="" if method == "POST" else field + other,
        form=field + other if method == "POST" else None,
        signed_in=True,
    )
    assert status in DOCUMENTED
    run = "A\u0430" * 60  # 120 characters of it
    for record in caplog.records:
        assert run not in record.getMessage(), (record.name, len(record.getMessage()))
        assert len(record.getMessage()) < 4000, (record.name, len(record.getMessage()))
    with site["app"].test_client() as client:
        client.get("/signin/alice")
        r = client.open(
            path,
            method=method,
            query_string="" if method == "POST" else field + other,
            data=field + other if method == "POST" else None,
            content_type="application/x-www-form-urlencoded",
            headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
        )
        assert run not in r.get_data(as_text=True)
