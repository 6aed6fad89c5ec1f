"""The SP against an IdP on another SAML stack: samlify (Node, xml-crypto) signs, qlikauth verifies.

So the SP is not tested only against pysaml2, the library it is built on: sign-in, the
refusals that do not depend on who made the response, and single logout both ways.
"""

from __future__ import annotations

import base64

import pytest

from qlikauth.bridges.registry import SsoKey, SsoSessionRegistry
from qlikauth.bridges.saml import (
    IdpLogoutRequest,
    SamlError,
    SamlServiceProvider,
    SamlSettings,
    redirect_query,
)
from qlikauth.emulator.saml_idp import DEMO_USERS
from qlikauth.mapping import ENTRA_GROUPS_CLAIM, ClaimsMapping
from qlikauth.store import MemoryStore

from .conftest import ACS, SLO, SP_ENTITY

USERS = {name: {"name_id": u.name_id, "claims": dict(u.claims)} for name, u in DEMO_USERS.items()}


@pytest.fixture
def pair(samlify_factory, idp):
    # the SP's metadata first (with a stand-in IdP), then the real SP against samlify's metadata
    bootstrap = SamlServiceProvider(
        SamlSettings(sp_entity_id=SP_ENTITY, acs_url=ACS, slo_url=SLO, idp_metadata=idp.metadata())
    )
    peer = samlify_factory(bootstrap.metadata(), USERS)
    store = MemoryStore()
    sp = SamlServiceProvider(
        SamlSettings(
            sp_entity_id=SP_ENTITY, acs_url=ACS, slo_url=SLO, idp_metadata=peer.metadata()
        ),
        store=store,
        replay_cache=MemoryStore(when_full="refuse"),
    )
    return sp, peer


def _sign_in(sp, peer, user="alice", relay="/portal/home"):
    start = sp.login(relay)
    out = peer.login(start.redirect.location, user)
    assert "error" not in out and "acs" in out, out
    assert out["acs"] == ACS
    form = {"SAMLResponse": out["SAMLResponse"], "RelayState": out["RelayState"]}
    return form, start.cookie.value, out["sessionIndex"]


def test_sign_in_with_samlify_maps_the_entra_claims(pair):
    sp, peer = pair
    form, token, session_index = _sign_in(sp, peer)
    xml = base64.b64decode(form["SAMLResponse"]).decode()
    assert "rsa-sha256" in xml and "xml-exc-c14n" in xml
    a = sp.acs(form, token)
    assert (
        a.name_id == "alice@example.com"
        and a.session_index == session_index
        and a.relay_state == "/portal/home"
    )
    mapping = ClaimsMapping(user_id="$subject", user_directory="AZURE", attributes=None)
    user = mapping.to_user(a.claims, a.name_id)
    assert user.groups == DEMO_USERS["alice"].claims[ENTRA_GROUPS_CLAIM]


def test_samlify_response_replayed_is_refused(pair):
    sp, peer = pair
    form, token, _ = _sign_in(sp, peer)
    sp.acs(form, token)
    with pytest.raises(SamlError) as err:
        sp.acs(form, token)
    assert err.value.code == "replayed"


def test_samlify_response_of_another_browser_and_tampered(pair):
    sp, peer = pair
    form, token, _ = _sign_in(sp, peer)
    with pytest.raises(SamlError) as err:
        sp.acs(form, "x" * 43)
    assert err.value.code == "other_browser"
    xml = base64.b64decode(form["SAMLResponse"]).decode().replace("Alice Example", "Mallory")
    with pytest.raises(SamlError) as err:
        sp.acs({**form, "SAMLResponse": base64.b64encode(xml.encode()).decode()}, token)
    assert err.value.code == "signature"
    xml = (
        base64.b64decode(form["SAMLResponse"])
        .decode()
        .replace(">alice@example.com<", ">alice@example.com<!---->x<", 1)
    )
    with pytest.raises(SamlError) as err:
        sp.acs({**form, "SAMLResponse": base64.b64encode(xml.encode()).decode()}, token)
    assert err.value.code == "comment"


def test_idp_initiated_logout_from_samlify_ends_the_registered_sessions(pair):
    sp, peer = pair
    form, token, session_index = _sign_in(sp, peer)
    a = sp.acs(form, token)
    registry = SsoSessionRegistry(MemoryStore())
    from qlikauth import QlikUser

    key = SsoKey(a.issuer, a.name_id, a.session_index)
    registry.record(key, QlikUser("AZURE", "alice@example.com"))
    url = peer.logout(session_index)
    raw_query = url.split("?", 1)[1]
    assert "Signature=" in raw_query
    result = sp.handle_slo("redirect", redirect_query(url), raw_query)
    assert isinstance(result, IdpLogoutRequest)
    assert result.name_id == "alice@example.com" and result.session_indexes == (session_index,)
    ended = registry.end(result.issuer, result.name_id, result.session_indexes)
    assert [u.user_id for u in ended.users] == ["alice@example.com"] and registry.is_ended(key)
    # our LogoutResponse, answered to samlify: it must accept it
    assert result.response.location.startswith(peer.base_url + "/slo?SAMLResponse=")
    # the same request again: refused (used once)
    with pytest.raises(SamlError) as err:
        sp.handle_slo("redirect", redirect_query(url), raw_query)
    assert err.value.code == "replayed"


def test_sp_initiated_logout_is_understood_by_samlify(pair):
    sp, peer = pair
    form, token, _ = _sign_in(sp, peer)
    a = sp.acs(form, token)
    location = sp.logout(a.logout_info(), "/bye", token).location
    out = peer.slo(location)
    assert out["nameId"] == "alice@example.com"
    # samlify's LogoutResponse comes back to our SLO URL and finishes the logout
    url = out["url"]
    back = sp.handle_slo("redirect", redirect_query(url), url.split("?", 1)[1], token)
    assert back.location == "/bye"
