"""docs/settings.md is generated from the settings tables in the code and cannot drift from them."""

from __future__ import annotations

import pytest

from qlikauth.web import reference
from tests.docs.docblocks import ROOT


def test_the_page_is_what_the_code_generates():
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page == reference.settings_reference(), (
        "docs/settings.md differs from the code's settings tables: regenerate it with "
        "python -m qlikauth.web.reference > docs/settings.md"
    )


def test_every_key_the_code_reads_is_on_the_page():
    from qlikauth.bridges.saml import SamlSettings
    from qlikauth.mapping import ClaimsMapping
    from qlikauth.web.config import SETTING_KEYS

    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    for key in (
        *SETTING_KEYS,
        *SamlSettings._KEYS,
        *ClaimsMapping._KEYS,
        "ISSUER",
        "SESSION_IDLE_TIMEOUT",
    ):
        assert f"| `{key}` |" in page, key


def test_a_key_without_a_description_is_refused(monkeypatch):
    described = dict(reference.SAML)
    del described["CLOCK_SKEW"]
    monkeypatch.setattr(reference, "SAML", described)
    with pytest.raises(AssertionError, match="SAML: no description for CLOCK_SKEW"):
        reference.settings_reference()


def test_a_description_without_a_key_is_refused(monkeypatch):
    monkeypatch.setattr(reference, "PORTAL", {**reference.PORTAL, "QPS_NODE": "a typo"})
    with pytest.raises(AssertionError, match="described but not a setting: QPS_NODE"):
        reference.check_reference()


def test_defaults_come_from_the_code(monkeypatch):
    from qlikauth.web import config

    monkeypatch.setitem(config._KEYS, "TIMEOUT", 7.5)
    assert "| `TIMEOUT` | `7.5` |" in reference.settings_reference()
