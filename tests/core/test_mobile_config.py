"""qlikauth mobile-config: the mobile app's hub list (mdm JSON, AppConfig XML), URLs checked."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from qlikauth.cli import main
from qlikauth.exceptions import ConfigurationError
from qlikauth.mobile import appconfig_xml, check_hubs, mdm_value, parse_hub


def test_mdm_value_lists_every_hub_in_order(capsys):
    assert (
        main(
            [
                "mobile-config",
                "--hub",
                "Sales=https://qlik.example.com/sales/hub/",
                "--hub",
                "Finance = https://qlik.example.com/finance/",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == [
        {"name": "Sales", "url": "https://qlik.example.com/sales/hub/"},
        {"name": "Finance", "url": "https://qlik.example.com/finance/"},
    ]


def test_appconfig_xml_carries_the_mdm_value(tmp_path):
    out = tmp_path / "appconfig.xml"
    assert (
        main(
            [
                "mobile-config",
                "--hub",
                "Sales & Ops=https://qlik.example.com/sales/",
                "--format",
                "xml",
                "--bundle-id",
                "com.example.qliksense",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    root = ET.fromstring(out.read_text(encoding="utf-8"))
    assert root.tag == "managedAppConfiguration"
    assert root.findtext("bundleId") == "com.example.qliksense"
    entry = root.find("dict/string")
    assert entry.get("keyName") == "mdm"
    value = json.loads(entry.findtext("defaultValue/value"))
    assert value == [{"name": "Sales & Ops", "url": "https://qlik.example.com/sales/"}]


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("Sales=http://qlik.example.com/", "must be https"),
        ("Sales", "NAME=URL"),
        ("=https://qlik.example.com/", "NAME=URL"),
        ("Sales=https:///hub/", "no host name"),
        ("Sales=https://user:pw@qlik.example.com/", "user information"),
        ("Sales=https://qlik.example.com/hub/?qlikTicket=x", "a query"),
        ("Sales=https://qlik.example.com:99999/", "not a URL"),
    ],
)
def test_bad_hub_urls_are_refused_with_the_reason(spec, said, capsys):
    with pytest.raises(ConfigurationError, match=said):
        parse_hub(spec)
    assert main(["mobile-config", "--hub", spec]) == 2
    err = capsys.readouterr().err
    assert said in err and "pw" not in err


def test_names_and_urls_must_be_unique():
    a = parse_hub("Sales=https://qlik.example.com/sales/")
    with pytest.raises(ConfigurationError, match="given twice"):
        check_hubs([a, parse_hub("sales=https://qlik.example.com/other/")])
    with pytest.raises(ConfigurationError, match="same URL"):
        check_hubs([a, parse_hub("Other=https://QLIK.example.com/sales")])
    with pytest.raises(ConfigurationError, match="at least one"):
        mdm_value([])


def test_host_names_must_resolve_when_asked():
    check_hubs([parse_hub("Local=https://localhost/hub/")], resolve=True)
    with pytest.raises(ConfigurationError, match="does not resolve"):
        check_hubs([parse_hub("Gone=https://qlik.invalid/hub/")], resolve=True)


def test_xml_needs_a_bundle_id(capsys):
    assert main(["mobile-config", "--hub", "S=https://qlik.example.com/", "--format", "xml"]) == 2
    assert "--bundle-id" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="bundle id"):
        appconfig_xml([parse_hub("S=https://qlik.example.com/")], "<evil>")
