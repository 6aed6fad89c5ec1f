"""The hub list an EMM (Workspace ONE, Intune, ...) pushes to the Qlik Sense mobile app.

``qlikauth mobile-config --hub NAME=URL ...`` writes the hub list as the JSON value of the app's
``mdm`` configuration key, and the same as an AppConfig specification XML
(``managedAppConfiguration``, the format of the AppConfig community, appconfig.org) that EMM
consoles import. Every URL is checked first: https, a host, no user information, query or
fragment; names and URLs unique; with ``resolve=True`` every host name must resolve here.

>>> hubs = [parse_hub("Sales=https://qlik.example.com/sales/hub/")]
>>> mdm_value(hubs)
'[{"name":"Sales","url":"https://qlik.example.com/sales/hub/"}]'
"""

from __future__ import annotations

import json
import re
import socket
import xml.etree.ElementTree as ET  # noqa: S405 - we only write XML, never parse it
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .exceptions import ConfigurationError

__all__ = ["Hub", "parse_hub", "check_hubs", "mdm_value", "appconfig_xml", "MDM_KEY"]

#: The configuration key of the Qlik Sense mobile app that holds the hub list.
MDM_KEY = "mdm"

_BUNDLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,254}\Z")


@dataclass(frozen=True)
class Hub:
    """One hub the app lists: the name users see and its https URL."""

    name: str
    url: str

    def as_dict(self) -> dict[str, str]:
        """``{"name": ..., "url": ...}``."""
        return {"name": self.name, "url": self.url}


def parse_hub(spec: str) -> Hub:
    """A hub from ``NAME=URL`` (the URL checked: https, a host, no user info, query or fragment)."""
    name, sep, url = spec.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not name or not url:
        raise ConfigurationError(
            f"--hub {spec[:40]!r} must be NAME=URL, e.g. Sales=https://qlik.example.com/sales/hub/."
        )
    if any(not ch.isprintable() for ch in name) or len(name) > 100:
        raise ConfigurationError(
            f"hub name {name[:40]!r} must be printable text of at most 100 characters."
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigurationError(f"hub {name!r}: {url[:60]!r} is not a URL.") from None
    if parts.scheme != "https":
        raise ConfigurationError(
            f"hub {name!r}: {url[:60]!r} must be https: the app signs in and opens websockets "
            "over it, and Qlik's session cookie is Secure."
        )
    if not parts.hostname:
        raise ConfigurationError(f"hub {name!r}: {url[:60]!r} has no host name.")
    if "@" in parts.netloc:
        # never echo what may be a password
        raise ConfigurationError(
            f"hub {name!r}: the URL must not carry user information (user:password@): give the "
            "virtual proxy's address, e.g. https://qlik.example.com/sales/."
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"hub {name!r}: the URL of {parts.hostname} must not carry a query or a fragment: "
            "give the virtual proxy's address, e.g. https://qlik.example.com/sales/."
        )
    return Hub(name, url)


def check_hubs(hubs: Sequence[Hub], *, resolve: bool = False) -> list[Hub]:
    """Refuse an empty list, a name or URL given twice, and (``resolve``) host names that do not
    resolve from this machine; returns the list."""
    if not hubs:
        raise ConfigurationError("give at least one --hub NAME=URL.")
    names: dict[str, str] = {}
    urls: dict[str, str] = {}
    for hub in hubs:
        key = hub.name.casefold()
        if key in names:
            raise ConfigurationError(
                f"hub name {hub.name!r} is given twice: the app shows names, "
                "so each must be unique."
            )
        names[key] = hub.name
        norm = hub.url.rstrip("/").lower()
        if norm in urls:
            raise ConfigurationError(f"hubs {urls[norm]!r} and {hub.name!r} have the same URL.")
        urls[norm] = hub.name
    if resolve:
        for hub in hubs:
            host = urlsplit(hub.url).hostname or ""
            try:
                socket.getaddrinfo(host, None)
            except (socket.gaierror, UnicodeError):
                raise ConfigurationError(
                    f"hub {hub.name!r}: the host {host!r} does not resolve from here; devices "
                    "resolve it through the per-app VPN's DNS, so check it there too."
                ) from None
    return list(hubs)


def mdm_value(hubs: Sequence[Hub]) -> str:
    """The value of the app's ``mdm`` key: the hub list as compact JSON."""
    return json.dumps(
        [h.as_dict() for h in check_hubs(hubs)], separators=(",", ":"), ensure_ascii=False
    )


def appconfig_xml(hubs: Sequence[Hub], bundle_id: str) -> str:
    """An AppConfig specification (``managedAppConfiguration``) with the ``mdm`` key's default
    value, for an EMM console to import; ``bundle_id`` is the app's, as the EMM lists it."""
    if not isinstance(bundle_id, str) or not _BUNDLE_ID.match(bundle_id):
        raise ConfigurationError(
            f"bundle id {str(bundle_id)[:60]!r} must be the app's bundle identifier (letters, "
            "digits, '.' and '-'), as your EMM console shows it for the Qlik Sense app."
        )
    root = ET.Element("managedAppConfiguration")
    ET.SubElement(root, "version").text = "1"
    ET.SubElement(root, "bundleId").text = bundle_id
    entries = ET.SubElement(root, "dict")
    entry = ET.SubElement(entries, "string", keyName=MDM_KEY)
    default = ET.SubElement(entry, "defaultValue")
    ET.SubElement(default, "value").text = mdm_value(hubs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
