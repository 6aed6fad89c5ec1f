"""SAML fixtures: the local pysaml2 IdP (unserved, in-process), a strict SP in front of it, keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("saml2", reason="the saml extra is not installed: pip install 'qlikauth[saml]'")

from qlikauth.bridges.saml import SamlAssertion, SamlServiceProvider, SamlSettings  # noqa: E402
from qlikauth.emulator.saml_idp import SamlIdp, write_self_signed  # noqa: E402

SP_BASE = "https://portal.example.com/qlik/saml/"
SP_ENTITY = SP_BASE + "metadata"
ACS = SP_BASE + "acs"
SLO = SP_BASE + "slo"


@pytest.fixture(scope="session")
def saml_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Key pairs: the IdP's, the SP's, and an attacker's ("evil"), as (cert, key)."""
    d = tmp_path_factory.mktemp("saml-keys")
    return {name: write_self_signed(d / name, name) for name in ("idp", "sp", "evil")}


@pytest.fixture
def idp(saml_keys: dict[str, tuple[Path, Path]]) -> Iterator[SamlIdp]:
    """The local pysaml2 IdP with the session's IdP key (not served: tests call it directly)."""
    i = SamlIdp(key_dir=saml_keys["idp"][0].parent)
    yield i
    i.stop()


@dataclass
class Flow:
    """One SP + IdP pair and the browser token of "this browser"."""

    sp: SamlServiceProvider
    idp: SamlIdp
    token: str = ""

    def start(self, relay_state: str | None = "/portal/home", token: str | None = None) -> Any:
        start = self.sp.login(relay_state, token or self.token or None)
        if start.cookie is not None:
            self.token = start.cookie.value
        return self.idp.parse_authn_request(start.redirect.location)

    def response(self, user: str = "alice", **kwargs: Any) -> dict[str, str]:
        """A signed response from the IdP to a fresh AuthnRequest of this browser."""
        info = self.start()
        xml = self.idp.response_xml(user, in_response_to=info.id, acs_url=info.acs_url,
                                    sp_entity_id=info.sp_entity_id, **kwargs)
        return self.idp.post_form(xml, info.relay_state)

    def acs(self, form: dict[str, str], token: str | None = None) -> SamlAssertion:
        return self.sp.acs(form, self.token if token is None else token)


@pytest.fixture
def make_flow(idp: SamlIdp, saml_keys: dict[str, tuple[Path, Path]]) -> Callable[..., Flow]:
    """``make_flow(**settings)``: a strict SP (sensible defaults) trusted by the IdP."""

    def make(**overrides: Any) -> Flow:
        values: dict[str, Any] = {"sp_entity_id": SP_ENTITY, "acs_url": ACS, "slo_url": SLO,
                                  "idp_metadata": idp.metadata()}
        values.update(overrides)
        sp = SamlServiceProvider(SamlSettings(**values))
        idp.add_sp_metadata(sp.metadata())
        return Flow(sp, idp)

    return make


@pytest.fixture
def flow(make_flow: Callable[..., Flow]) -> Flow:
    return make_flow()
