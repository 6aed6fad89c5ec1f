"""Bad input in every alphabet through django_qlikauth's endpoints: never a 500, only the
documented answers, and nothing that was refused reaches QPS (the emulator counts its API calls).

The same strategies as tests/web/test_bad_input_everywhere.py (Flask): every code point, lone
surrogates as the invalid UTF-8 they arrive as, raw non-UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _django_setup import configure_django

configure_django()

from django.contrib.auth.models import User  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from web.test_bad_input_everywhere import ANY_TEXT, RAW_BYTES, wire  # noqa: E402

DOCUMENTED = {200, 204, 302, 303, 400, 401, 403, 404, 405, 413}
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from qlikauth.emulator import Emulator, VirtualProxy
    from qlikauth.emulator.saml_idp import DEMO_GROUPS, ENTRA_CLAIMS, SamlIdp, write_self_signed

    User.objects.get_or_create(username="alice")
    keys = tmp_path_factory.mktemp("django-bad-input")
    write_self_signed(keys / "idp", "idp")
    emu = Emulator(
        virtual_proxies=[
            VirtualProxy("portal", method="ticket", module_uri="http://testserver/qlik/module")
        ]
    ).start()
    idp = SamlIdp(key_dir=keys / "idp")
    qlik = {
        "QPS_NODES": emu.qps_url,
        "CERTS": str(emu.certs_dir),
        "HUB_URL": emu.hub_url_for("portal"),
        "VIRTUAL_PROXY": "portal",
        "USER_DIRECTORY": "PORTAL",
        "ALLOWED_TARGETS": [emu.hub_url],
        "SAML": {
            "BASE_URL": "http://testserver/qlik/saml/",
            "ALLOW_HTTP": True,
            "IDP_METADATA": idp.metadata(),
        },
        "CLAIMS": {
            "USER_ID": ENTRA_CLAIMS["email"],
            "USER_DIRECTORY": "AZURE",
            "GROUP_NAMES": {g: n for n, g in DEMO_GROUPS.items()},
            "UNKNOWN_GROUPS": "refuse",
        },
    }
    try:
        with override_settings(QLIKAUTH=qlik):
            yield {"emu": emu}
    finally:
        idp.stop()
        emu.stop()


def _check(
    site: dict[str, Any],
    method: str,
    path: str,
    query: str = "",
    form: str | None = None,
    signed_in: bool = True,
) -> int:
    emu = site["emu"]
    client = Client()
    if signed_in:
        client.get("/signin/alice")
    before = emu.state.qps_requests
    url = f"{path}?{query}" if query else path
    if method == "GET":
        r = client.get(url, HTTP_SEC_FETCH_SITE="same-origin")
    else:
        r = client.post(
            url,
            data=form or "",
            content_type="application/x-www-form-urlencoded",
            HTTP_ORIGIN="http://testserver",
            HTTP_SEC_FETCH_SITE="same-origin",
        )
    assert r.status_code in DOCUMENTED, (path, query[:80], r.status_code, r.content[:300])
    if r.status_code >= 400:
        assert emu.state.qps_requests == before, (path, query[:80], "refused, yet QPS was asked")
    return r.status_code


@SETTINGS
@given(target=ANY_TEXT | RAW_BYTES)
@example(target="\ud800")
@example(target=b"\xc0\xaf")
def test_login_target(site: dict[str, Any], target: str | bytes) -> None:
    _check(site, "GET", "/qlik/login", f"target={wire(target)}")


@SETTINGS
@given(rest=ANY_TEXT | RAW_BYTES, target_id=ANY_TEXT | RAW_BYTES, node=st.booleans())
@example(rest="", target_id="\udfff", node=True)
def test_module_parameters(
    site: dict[str, Any], rest: str | bytes, target_id: str | bytes, node: bool
) -> None:
    proxy = (
        wire(site["emu"].rest_uri_for("portal") + (rest if isinstance(rest, str) else ""))
        if node
        else wire(rest)
    )
    _check(site, "GET", "/qlik/module", f"proxyRestUri={proxy}&targetId={wire(target_id)}")


@SETTINGS
@given(next_=ANY_TEXT | RAW_BYTES, path=st.sampled_from(["/qlik/logout", "/qlik/saml/logout"]))
@example(next_="//evil.example", path="/qlik/logout")
def test_logout_next(site: dict[str, Any], next_: str | bytes, path: str) -> None:
    _check(site, "POST", path, form=f"next={wire(next_)}")
    if path == "/qlik/logout":
        _check(site, "GET", path, f"next={wire(next_)}")


@SETTINGS
@given(next_=ANY_TEXT | RAW_BYTES, message=ANY_TEXT | RAW_BYTES, relay=ANY_TEXT | RAW_BYTES)
@example(next_="\ud800", message="PHNhbWxwOl\udfff", relay="/")
def test_saml_endpoints(
    site: dict[str, Any], next_: str | bytes, message: str | bytes, relay: str | bytes
) -> None:
    _check(site, "GET", "/qlik/saml/login", f"next={wire(next_)}", signed_in=False)
    _check(
        site,
        "POST",
        "/qlik/saml/acs",
        form=f"SAMLResponse={wire(message)}&RelayState={wire(relay)}",
        signed_in=False,
    )
    _check(site, "GET", "/qlik/saml/slo", f"SAMLRequest={wire(message)}&RelayState={wire(relay)}")
    _check(
        site,
        "POST",
        "/qlik/saml/slo",
        form=f"SAMLResponse={wire(message)}&RelayState={wire(relay)}",
    )


def test_the_endpoints_answer_good_input(site: dict[str, Any]) -> None:
    # The properties above would pass on routes that do not exist: these must work.
    client = Client()
    assert client.get("/qlik/saml/login?next=/").status_code == 302
    client.get("/signin/alice")
    before = site["emu"].state.qps_requests
    r = client.get("/qlik/login", HTTP_SEC_FETCH_SITE="same-origin")
    assert r.status_code == 302 and "qlikTicket=" in r["Location"]
    assert site["emu"].state.qps_requests == before + 1
