"""Bad input in every alphabet through the OIDC endpoints (flask_qlikauth.oidc, the real OpenID
provider, the QPS emulator): never a 500, only the documented answers, and nothing that was
refused reaches QPS. The login's ``target`` and ``next``, the callback's ``code``, ``state``,
``iss`` and ``error``, the back-channel ``logout_token``, the front-channel ``iss`` and ``sid``,
the logout's ``next``; strategies as in tests/web/test_bad_input_everywhere.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask_qlikauth import QlikAuth
from flask_qlikauth.oidc import QlikOidc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from web.test_bad_input_everywhere import ANY_TEXT, RAW_BYTES, wire

from .conftest import start_op
from .site import SECRET, web_client

DOCUMENTED = {200, 204, 302, 303, 400, 401, 403, 404, 405, 413}
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PORTAL = "https://localhost"


@pytest.fixture(scope="module")
def site(certs_dir: Any, portal_tls: Any) -> Iterator[dict[str, Any]]:
    from qlikauth.emulator import Emulator, VirtualProxy

    client = web_client([443])
    client["redirect_uris"] = [f"{PORTAL}/oidc/callback"]
    client["post_logout_redirect_uris"] = [f"{PORTAL}/"]
    client["backchannel_logout_uri"] = f"{PORTAL}/oidc/backchannel-logout"
    op = start_op(certs_dir, [client], tls=portal_tls)
    emu = Emulator(certs_dir=certs_dir, virtual_proxies=[VirtualProxy("portal")]).start()
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
            QLIKAUTH_OIDC={
                "ISSUER": op.issuer,
                "CLIENT_ID": "portal-web",
                "CLIENT_SECRET": SECRET,
                "REDIRECT_URI": f"{PORTAL}/oidc/callback",
                "CA_BUNDLE": op.ca_bundle,
                "SCOPES": "openid email profile groups",
                "POST_LOGOUT_REDIRECT_URI": f"{PORTAL}/",
            },
        )
        QlikAuth(app, user_loader=lambda: QlikOidc.current_user())
        QlikOidc(app)
        yield {"app": app, "emu": emu, "op": op}
    finally:
        emu.stop()
        op.stop()


def _check(
    site: dict[str, Any], method: str, path: str, query: str = "", form: str | None = None
) -> int:
    emu = site["emu"]
    with site["app"].test_client() as client:
        before = emu.state.qps_requests
        kwargs: dict[str, Any] = {
            "query_string": query,
            "base_url": PORTAL,
            "headers": {"Sec-Fetch-Site": "same-origin", "Origin": PORTAL},
        }
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
        return r.status_code


def test_the_endpoints_answer_good_input(site: dict[str, Any]) -> None:
    # The properties below would pass on routes that do not exist: the login must work.
    assert _check(site, "GET", "/oidc/login") == 302


@SETTINGS
@given(target=ANY_TEXT | RAW_BYTES, next_=ANY_TEXT | RAW_BYTES)
@example(target="\ud800", next_="\udfff")
@example(target="https://evil.example/", next_="//evil.example")
def test_login_target_and_next(
    site: dict[str, Any], target: str | bytes, next_: str | bytes
) -> None:
    _check(site, "GET", "/oidc/login", f"target={wire(target)}")
    _check(site, "GET", "/oidc/login", f"next={wire(next_)}")


@SETTINGS
@given(
    code=ANY_TEXT | RAW_BYTES,
    state=ANY_TEXT | RAW_BYTES,
    extra=ANY_TEXT | RAW_BYTES,
    method=st.sampled_from(["GET", "POST"]),
)
@example(code="\ud800", state="\udfff", extra="x", method="GET")
def test_callback_parameters(
    site: dict[str, Any], code: str | bytes, state: str | bytes, extra: str | bytes, method: str
) -> None:
    query = f"code={wire(code)}&state={wire(state)}&iss={wire(extra)}"
    if method == "GET":
        status = _check(site, "GET", "/oidc/callback", query)
        _check(
            site,
            "GET",
            "/oidc/callback",
            f"error={wire(extra)}&state={wire(state)}&error_description={wire(code)}",
        )
    else:
        status = _check(site, "POST", "/oidc/callback", form=query)
    assert status >= 400  # a made-up code and state never sign anyone in


@SETTINGS
@given(token=ANY_TEXT | RAW_BYTES, sid=ANY_TEXT | RAW_BYTES, next_=ANY_TEXT | RAW_BYTES)
@example(token="eyJhbGciOiJub25lIn0.\ud800.", sid="\udfff", next_="\ud800")
def test_logouts(
    site: dict[str, Any], token: str | bytes, sid: str | bytes, next_: str | bytes
) -> None:
    assert (
        _check(site, "POST", "/oidc/backchannel-logout", form=f"logout_token={wire(token)}") >= 400
    )
    _check(site, "GET", "/oidc/frontchannel-logout", f"iss={wire(token)}&sid={wire(sid)}")
    _check(site, "POST", "/oidc/logout", form=f"next={wire(next_)}")


@pytest.mark.parametrize(
    "method, path, query",
    [
        ("GET", "/oidc/login", "target={v}"),
        ("GET", "/oidc/login", "next={v}"),
        ("GET", "/oidc/callback", "code={v}&state={v}"),
        ("GET", "/oidc/callback", "error={v}"),
        ("POST", "/oidc/backchannel-logout", "logout_token={v}"),
        ("GET", "/oidc/frontchannel-logout", "iss={v}&sid={v}"),
        ("POST", "/oidc/logout", "next={v}"),
    ],
)
def test_a_long_value_is_quoted_short_in_logs_and_pages(
    site: dict[str, Any], caplog: Any, method: str, path: str, query: str
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    value = "https://evil.example/" + "A\u0430" * 5000
    filled = query.replace("{v}", wire(value))
    with site["app"].test_client() as client:
        r = client.open(
            path,
            method=method,
            base_url=PORTAL,
            query_string="" if method == "POST" else filled,
            data=filled if method == "POST" else None,
            content_type="application/x-www-form-urlencoded",
            headers={"Sec-Fetch-Site": "same-origin", "Origin": PORTAL},
        )
    assert r.status_code in DOCUMENTED
    run = "A\u0430" * 60
    assert run not in r.get_data(as_text=True)
    for record in caplog.records:
        assert run not in record.getMessage(), (record.name, len(record.getMessage()))
