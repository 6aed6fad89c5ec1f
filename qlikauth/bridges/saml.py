"""A strict SAML 2.0 service provider core (pysaml2 + xmlsec1), framework-free.

Metadata, AuthnRequest over the Redirect binding, the Assertion Consumer Service over
HTTP-POST, and single logout (SP- and IdP-initiated, Redirect and POST bindings). The
answers are plain data (:class:`~qlikauth.Redirect`, :class:`~qlikauth.Cookie`, a verified
:class:`SamlAssertion`); the web flows turn them into responses and sign the user into Qlik.

pysaml2 verifies the XML signatures (with keys from the IdP's metadata only), decrypts, and
checks audience and validity times. What it leaves open is closed here, each with a test
(``tests/saml``), measured against a SAML IdP on another stack (samlify):

* a response posted twice is accepted by pysaml2 (it never uses up the outstanding request
  and keeps no assertion ids): here the request id is taken once from the
  :class:`~qlikauth.store.StateStore` and each assertion id is added to a replay cache that
  refuses when full rather than evicting (an evicted id could be replayed);
* ``InResponseTo`` must be an outstanding request **of this browser** (a random token in a
  ``SameSite=None; Secure`` cookie, stored hashed); with unsolicited responses allowed,
  pysaml2 skips ``InResponseTo`` entirely: here a present one must still match;
* ``Recipient`` is compared by pysaml2 only when ``conv_info`` is passed: here always;
* pysaml2 accepts RSA-SHA1: here every ``SignatureMethod``/``DigestMethod`` is checked
  against an allow-list (SHA-256 and up; SHA-1 only when enabled);
* a wrong ``Destination`` comes back from pysaml2 as a response without assertion and
  ``name_id = None``: here ``Destination`` is compared and a missing subject refused;
* logout requests: pysaml2 accepts unsigned ones on both bindings, never verifies a
  Redirect-binding signature and does not refuse old ones: here a LogoutRequest must be
  signed by the IdP (Redirect: the query-string signature over the exact octets received;
  POST: an enveloped XML signature), recent, addressed to us, and used once.

Before xmlsec1 sees anything: a size cap, strict base64, UTF-8 only, no DOCTYPE or entity
declarations, no comments or processing instructions (a comment inside a NameID changes
what a naive reader sees), exactly one assertion, every signature referencing its own
parent element, no duplicate IDs (the classic signature-wrapping shapes).

Nothing here logs an assertion, a SAMLResponse or a browser token; pysaml2's own loggers
are silenced (it logs whole responses, even at ERROR) and each refusal is logged by
``qlikauth.saml`` with its code only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from .._parse import parse_bool
from ..authenticators.base import Cookie, Redirect
from ..exceptions import ConfigurationError, RedirectError, SamlError
from ..store import MemoryStore, StateStore
from . import MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES

try:
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
    from saml2 import saml as saml_schema
    from saml2.client import Saml2Client
    from saml2.config import SPConfig
    from saml2.metadata import entity_descriptor, sign_entity_descriptor
    from saml2.sigver import SignatureError as _Pysaml2SignatureError
except ImportError as exc:  # pragma: no cover - exercised by the optional-dependency test
    raise ImportError(
        "qlikauth.bridges.saml needs pysaml2, lxml and xmlsec: pip install 'qlikauth[saml]'"
    ) from exc
from .saml_xmlsec import (
    PYSAML2_CONFIG,
    check_xml_libraries,
    library_versions,
    use_in_process_crypto,
)

try:
    from defusedxml import ElementTree as _SafeET
except ImportError as exc:  # pragma: no cover - pysaml2 depends on defusedxml
    raise ImportError("qlikauth.bridges.saml needs defusedxml (a pysaml2 dependency)") from exc
# only for the TreeBuilder and Comment types: parsing goes through defusedxml
import xml.etree.ElementTree as _ET  # noqa: S405

__all__ = [
    "SamlSettings",
    "SamlServiceProvider",
    "SamlAssertion",
    "SamlLoginStart",
    "IdpLogoutRequest",
    "SIGNATURE_ALGORITHMS",
    "DIGEST_ALGORITHMS",
    "SHA1_ALGORITHMS",
    "MAX_MESSAGE_BYTES",
    "MAX_REQUEST_BYTES",
    "check_request_size",
]

log = logging.getLogger("qlikauth.saml")

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
}
_DS = "{" + NS["ds"] + "}"
_SAML = "{" + NS["saml"] + "}"
_SAMLP = "{" + NS["samlp"] + "}"

#: Signature algorithms accepted by default (SHA-2 family RSA and ECDSA).
SIGNATURE_ALGORITHMS: frozenset[str] = frozenset(
    {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    }
)
#: Digest algorithms accepted by default.
DIGEST_ALGORITHMS: frozenset[str] = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)
#: Accepted only with ``ALLOW_SHA1`` (some ADFS sites in front of Qlik still sign with SHA-1).
SHA1_ALGORITHMS: frozenset[str] = frozenset(
    {
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#sha1",
    }
)
_SIGN_ALG = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_DIGEST_ALG = "http://www.w3.org/2001/04/xmlenc#sha256"

_STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"


def _quiet_pysaml2() -> None:
    # pysaml2 prints whole responses (assertions, NameIDs) at DEBUG and INFO, and on a
    # failed check logs the entire document at ERROR ("XML parse error: {... 'document': ...}").
    # Assertions must never reach a log, so its loggers are silenced; qlikauth logs each
    # refusal itself (logger "qlikauth.saml", the check that failed, never the message).
    logging.getLogger("saml2").setLevel(logging.CRITICAL + 1)


def _fail(code: str, message: str, **context: Any) -> SamlError:
    return SamlError(message, code=code, **context)


# -- settings -----------------------------------------------------------------------
def _bool(key: str, value: Any) -> bool:
    parsed = parse_bool(value)
    if parsed is not None:
        return parsed
    raise ConfigurationError(
        f"QLIKAUTH SAML {key}: expected true or false, got {value!r}.", key=key
    )


def _num(key: str, value: Any, low: float, high: float, unit: str = "seconds") -> float:
    try:
        n = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"QLIKAUTH SAML {key}: expected a number of {unit}, got {value!r}.", key=key
        ) from None
    if not low <= n <= high:
        raise ConfigurationError(
            f"QLIKAUTH SAML {key}: must be between {low:g} and {high:g} {unit}.", key=key
        )
    return n


def _https_url(key: str, value: Any, *, allow_http: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"QLIKAUTH SAML {key}: give an absolute URL.", key=key)
    parts = urlsplit(value.strip())
    if parts.scheme not in (("https", "http") if allow_http else ("https",)) or not parts.hostname:
        raise ConfigurationError(
            f"QLIKAUTH SAML {key}: {value!r} must be an absolute https URL (SAML assertions travel "
            "through the browser: over plain http anyone on the path could take them).",
            key=key,
        )
    return value.strip()


def _relay_list(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigurationError(
            "QLIKAUTH SAML UNSOLICITED_RELAY_STATES: give a list of the exact RelayState values "
            "(portal paths or Qlik URLs) an IdP-initiated sign-in may land on.",
            key="UNSOLICITED_RELAY_STATES",
        )
    return tuple(value)


def _pem_setting(key: str, value: Any) -> str | None:
    """A certificate setting: PEM text, or a path to a PEM file; returned as PEM text."""
    if value in (None, ""):
        return None
    text = str(value)
    if "-----BEGIN CERTIFICATE-----" not in text:
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"QLIKAUTH SAML {key}: cannot read {str(value)[:120]}: {exc.strerror}.", key=key
            ) from None
    try:
        from cryptography import x509

        x509.load_pem_x509_certificate(text.encode())
    except ValueError:
        raise ConfigurationError(
            f"QLIKAUTH SAML {key}: not a PEM certificate (give the IdP's new signing "
            "certificate, -----BEGIN CERTIFICATE-----).",
            key=key,
        ) from None
    return text


@dataclass(frozen=True)
class SamlSettings:
    """The checked settings of the SAML service provider (``QLIKAUTH["SAML"]`` / ``QLIKAUTH_SAML``).

    ``idp_metadata`` is the IdP's metadata XML (``from_settings`` also takes a file path).
    At least one of ``want_response_signed`` / ``want_assertions_signed`` must be on.
    """

    sp_entity_id: str
    acs_url: str
    idp_metadata: str = field(repr=False)
    slo_url: str | None = None
    idp_entity_id: str | None = None
    sp_cert: str | None = None
    sp_key: str | None = field(default=None, repr=False)
    sign_requests: bool = False
    want_response_signed: bool = False
    want_assertions_signed: bool = True
    allow_unsolicited: bool = False
    allow_sha1: bool = False
    clock_skew: float = 60.0
    request_ttl: float = 600.0
    logout_max_age: float = 300.0
    name_id_format: str | None = None
    browser_cookie: str = "qlikauth-saml"
    browser_cookie_secure: bool = True
    allow_http: bool = False
    unsolicited_relay_states: tuple[str, ...] | None = None
    cert_expiry_warning_days: int = 30
    idp_next_cert: str | None = field(default=None, repr=False)

    _KEYS = (
        "BASE_URL",
        "SP_ENTITY_ID",
        "ACS_URL",
        "SLO_URL",
        "IDP_METADATA",
        "IDP_ENTITY_ID",
        "SP_CERT",
        "SP_KEY",
        "SIGN_REQUESTS",
        "WANT_RESPONSE_SIGNED",
        "WANT_ASSERTIONS_SIGNED",
        "ALLOW_UNSOLICITED",
        "ALLOW_SHA1",
        "CLOCK_SKEW",
        "REQUEST_TTL",
        "LOGOUT_MAX_AGE",
        "NAME_ID_FORMAT",
        "BROWSER_COOKIE",
        "BROWSER_COOKIE_SECURE",
        "ALLOW_HTTP",
        "UNSOLICITED_RELAY_STATES",
        "CERT_EXPIRY_WARNING_DAYS",
        "IDP_NEXT_CERT",
    )

    def __post_init__(self) -> None:
        if not (self.want_response_signed or self.want_assertions_signed):
            raise ConfigurationError(
                "QLIKAUTH SAML: WANT_RESPONSE_SIGNED and WANT_ASSERTIONS_SIGNED are both off, so "
                "an "
                "unsigned (forged) assertion would be accepted. Turn at least one on (the default "
                "requires signed assertions).",
                key="WANT_ASSERTIONS_SIGNED",
            )
        if self.sign_requests and not (self.sp_key and self.sp_cert):
            raise ConfigurationError(
                "QLIKAUTH SAML SIGN_REQUESTS: needs SP_KEY and SP_CERT.", key="SIGN_REQUESTS"
            )
        if bool(self.sp_key) != bool(self.sp_cert):
            raise ConfigurationError(
                "QLIKAUTH SAML SP_KEY/SP_CERT: give both (the SP's key pair) or neither.",
                key="SP_KEY",
            )
        for key, path in (("SP_KEY", self.sp_key), ("SP_CERT", self.sp_cert)):
            if path and not Path(path).is_file():
                raise ConfigurationError(f"QLIKAUTH SAML {key}: {path} is not a file.", key=key)
        if not self.browser_cookie_secure and not self.allow_http:
            raise ConfigurationError(
                "QLIKAUTH SAML BROWSER_COOKIE_SECURE: the ACS is reached by a cross-site POST, "
                "which "
                "only carries a SameSite=None; Secure cookie. Keep it on (ALLOW_HTTP is for local "
                "tests).",
                key="BROWSER_COOKIE_SECURE",
            )
        if self.unsolicited_relay_states is not None and not self.allow_unsolicited:
            raise ConfigurationError(
                "QLIKAUTH SAML UNSOLICITED_RELAY_STATES: only used with ALLOW_UNSOLICITED; "
                "remove it or turn ALLOW_UNSOLICITED on.",
                key="UNSOLICITED_RELAY_STATES",
            )
        if not 0 <= self.cert_expiry_warning_days <= 365:
            raise ConfigurationError(
                "QLIKAUTH SAML CERT_EXPIRY_WARNING_DAYS: give 0 to 365 days.",
                key="CERT_EXPIRY_WARNING_DAYS",
            )
        if "<" not in self.idp_metadata:
            raise ConfigurationError(
                "QLIKAUTH SAML IDP_METADATA: not XML (give the IdP's metadata "
                "document or a path to it).",
                key="IDP_METADATA",
            )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> SamlSettings:
        """Check plain settings (keys case-insensitive; unknown keys refused).

        ``BASE_URL`` (e.g. ``https://portal.example.com/qlik/saml/``) stands for
        ``SP_ENTITY_ID = BASE_URL + "metadata"``, ``ACS_URL = BASE_URL + "acs"`` and
        ``SLO_URL = BASE_URL + "slo"`` unless those are given.
        """
        import difflib

        if not settings:
            raise ConfigurationError(
                "QLIKAUTH SAML is not configured: give at least BASE_URL (or "
                "SP_ENTITY_ID and ACS_URL) and IDP_METADATA.",
                key="SAML",
            )
        values: dict[str, Any] = {}
        for k, v in settings.items():
            key = str(k).upper()
            if key not in cls._KEYS:
                close = difflib.get_close_matches(key, cls._KEYS, n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise ConfigurationError(f"QLIKAUTH SAML {key}: unknown setting.{hint}", key=key)
            values[key] = v
        allow_http = _bool("ALLOW_HTTP", values.get("ALLOW_HTTP", False))
        base = values.get("BASE_URL")
        if base is not None:
            base = _https_url("BASE_URL", base, allow_http=allow_http)
            base = base if base.endswith("/") else base + "/"

        def url(key: str, suffix: str | None) -> str | None:
            v = values.get(key)
            if v is None and base is not None and suffix is not None:
                v = base + suffix
            return None if v is None else _https_url(key, v, allow_http=allow_http)

        entity = values.get("SP_ENTITY_ID") or (base + "metadata" if base else None)
        if not entity:
            raise ConfigurationError(
                "QLIKAUTH SAML SP_ENTITY_ID: missing (or give BASE_URL).", key="SP_ENTITY_ID"
            )
        acs = url("ACS_URL", "acs")
        if not acs:
            raise ConfigurationError(
                "QLIKAUTH SAML ACS_URL: missing (or give BASE_URL).", key="ACS_URL"
            )
        md = values.get("IDP_METADATA")
        if not isinstance(md, (str, Path)) or not str(md).strip():
            raise ConfigurationError(
                "QLIKAUTH SAML IDP_METADATA: missing: give the IdP's federation "
                "metadata XML or the path to it (Entra: 'Federation Metadata XML').",
                key="IDP_METADATA",
            )
        text = str(md)
        if "<" not in text and re.match(r"\s*https?://", text, re.I):
            raise ConfigurationError(
                f"QLIKAUTH SAML IDP_METADATA: {text.strip()[:80]!r} is a URL, and qlikauth never "
                "fetches metadata at run time (whoever answers that request would choose which "
                "keys sign your users in). Download it once and give the file: curl -fsS -o "
                "idp-metadata.xml '<the URL>' (Entra: Enterprise application > Single sign-on > "
                "Federation Metadata XML), check it, then IDP_METADATA = "
                "'/path/to/idp-metadata.xml'. Load it again when the IdP rolls its signing "
                "certificate.",
                key="IDP_METADATA",
            )
        if "<" not in text:
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(
                    f"QLIKAUTH SAML IDP_METADATA: cannot read {md}: {exc.strerror}.",
                    key="IDP_METADATA",
                ) from None

        def opt(key: str) -> str | None:
            v = values.get(key)
            return str(v) if v not in (None, "") else None

        return cls(
            sp_entity_id=str(entity),
            acs_url=acs,
            idp_metadata=text,
            slo_url=url("SLO_URL", "slo"),
            idp_entity_id=opt("IDP_ENTITY_ID"),
            sp_cert=opt("SP_CERT"),
            sp_key=opt("SP_KEY"),
            sign_requests=_bool("SIGN_REQUESTS", values.get("SIGN_REQUESTS", False)),
            want_response_signed=_bool(
                "WANT_RESPONSE_SIGNED", values.get("WANT_RESPONSE_SIGNED", False)
            ),
            want_assertions_signed=_bool(
                "WANT_ASSERTIONS_SIGNED", values.get("WANT_ASSERTIONS_SIGNED", True)
            ),
            allow_unsolicited=_bool("ALLOW_UNSOLICITED", values.get("ALLOW_UNSOLICITED", False)),
            allow_sha1=_bool("ALLOW_SHA1", values.get("ALLOW_SHA1", False)),
            clock_skew=_num("CLOCK_SKEW", values.get("CLOCK_SKEW", 60), 0, 300),
            request_ttl=_num("REQUEST_TTL", values.get("REQUEST_TTL", 600), 30, 3600),
            logout_max_age=_num("LOGOUT_MAX_AGE", values.get("LOGOUT_MAX_AGE", 300), 10, 3600),
            name_id_format=opt("NAME_ID_FORMAT"),
            browser_cookie=str(values.get("BROWSER_COOKIE") or "qlikauth-saml"),
            browser_cookie_secure=_bool(
                "BROWSER_COOKIE_SECURE", values.get("BROWSER_COOKIE_SECURE", True)
            ),
            allow_http=allow_http,
            unsolicited_relay_states=_relay_list(values.get("UNSOLICITED_RELAY_STATES")),
            cert_expiry_warning_days=int(
                _num(
                    "CERT_EXPIRY_WARNING_DAYS",
                    values.get("CERT_EXPIRY_WARNING_DAYS", 30),
                    0,
                    365,
                    "days",
                )
            ),
            idp_next_cert=_pem_setting("IDP_NEXT_CERT", values.get("IDP_NEXT_CERT")),
        )


# -- results ------------------------------------------------------------------------
@dataclass(frozen=True)
class SamlLoginStart:
    """Where to send the browser (the IdP, AuthnRequest in the query) and the browser cookie to set.

    The cookie binds the request to this browser; it is only (re)set when the browser had
    none, and is a browser-session cookie (no ``Max-Age``).
    """

    redirect: Redirect
    cookie: Cookie | None
    request_id: str = field(repr=False)


@dataclass(frozen=True)
class SamlAssertion:
    """A verified sign-in: who (NameID), which IdP session, the claims, where to go next."""

    issuer: str
    name_id: str
    name_id_format: str | None
    name_qualifier: str | None
    sp_name_qualifier: str | None
    session_index: str | None
    claims: Mapping[str, list[str]]
    assertion_id: str
    in_response_to: str | None
    relay_state: str | None
    session_not_on_or_after: float | None

    def logout_info(self) -> dict[str, Any]:
        """What the portal keeps in its session to send a LogoutRequest later (JSON-able)."""
        return {
            "issuer": self.issuer,
            "name_id": self.name_id,
            "format": self.name_id_format,
            "name_qualifier": self.name_qualifier,
            "sp_name_qualifier": self.sp_name_qualifier,
            "session_index": self.session_index,
        }

    def __repr__(self) -> str:
        return f"SamlAssertion(issuer={self.issuer!r}, name_id={self.name_id!r}, session_index=...)"


@dataclass(frozen=True)
class IdpLogoutRequest:
    """A verified LogoutRequest from the IdP and the answer to send back (a LogoutResponse)."""

    issuer: str
    name_id: str
    session_indexes: tuple[str, ...]
    response: Redirect
    relay_state: str | None = None


# -- the XML guards ---------------------------------------------------------------------
def _b64decode(text: str, what: str) -> bytes:
    if not isinstance(text, str) or not text.strip():
        raise _fail("missing", f"no {what} in the request: the IdP must post it to this address.")
    if len(text) > MAX_MESSAGE_BYTES:
        raise _fail(
            "too_large",
            f"the {what} is larger than {MAX_MESSAGE_BYTES // 1024} KiB; refused unread.",
        )
    compact = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("encoding", f"the {what} is not valid base64.") from None


def _inflate(data: bytes, what: str) -> bytes:
    try:
        d = zlib.decompressobj(-15)
        out = d.decompress(data, MAX_MESSAGE_BYTES * 4)
        if d.unconsumed_tail:
            raise _fail(
                "too_large",
                f"the {what} inflates to more than {MAX_MESSAGE_BYTES * 4 // 1024} KiB.",
            )
        return out
    except zlib.error:
        raise _fail(
            "encoding", f"the {what} is not DEFLATE-compressed as the Redirect binding requires."
        ) from None


_DECL = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.I)


def _guard_xml(raw: bytes, what: str) -> _ET.Element:
    """Parse ``raw`` safely and refuse what a SAML message never needs (see the module
    docstring)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:200]:
        raise _fail("encoding", f"the {what} is not UTF-8 encoded.")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("encoding", f"the {what} is not valid UTF-8.") from None
    if _DECL.search(raw):
        raise _fail(
            "doctype",
            f"the {what} carries a DOCTYPE or entity declaration (XXE / entity "
            "expansion); SAML messages never need one. Refused before parsing.",
        )
    builder = _ET.TreeBuilder(insert_comments=True, insert_pis=True)
    parser = _SafeET.DefusedXMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(raw)
        root = parser.close()
    except Exception as exc:  # defusedxml's DTDForbidden/EntitiesForbidden or expat's ParseError
        name = type(exc).__name__
        if "Forbidden" in name:
            raise _fail("doctype", f"the {what} declares a DTD or entities; refused.") from None
        raise _fail("xml", f"the {what} is not well-formed XML.") from None
    for el in root.iter():
        if el.tag is _ET.Comment:
            raise _fail(
                "comment",
                f"the {what} contains an XML comment; a comment inside a signed "
                "value (e.g. the NameID) changes what is read without breaking the "
                "signature, so SAML messages with comments are refused.",
            )
        if el.tag is _ET.ProcessingInstruction:
            raise _fail("xml", f"the {what} contains a processing instruction; refused.")
    return root


def _check_algorithms(root: _ET.Element, allow_sha1: bool, what: str) -> None:
    sig_ok = SIGNATURE_ALGORITHMS | (SHA1_ALGORITHMS if allow_sha1 else frozenset())
    dig_ok = DIGEST_ALGORITHMS | (SHA1_ALGORITHMS if allow_sha1 else frozenset())
    for el in root.iter(f"{_DS}SignatureMethod"):
        _check_alg(el.get("Algorithm") or "", sig_ok, allow_sha1, what)
    for el in root.iter(f"{_DS}DigestMethod"):
        _check_alg(el.get("Algorithm") or "", dig_ok, allow_sha1, what)


def _check_alg(alg: str, allowed: frozenset[str], allow_sha1: bool, what: str) -> None:
    if alg in allowed:
        return
    if alg in SHA1_ALGORITHMS:
        raise _fail(
            "algorithm",
            f"the {what} is signed with SHA-1 ({alg}), which is refused: set the IdP "
            "to sign with SHA-256 (Entra: Signing Algorithm SHA-256; ADFS: relying "
            "party > Advanced > SHA-256), or set ALLOW_SHA1 if you must.",
        )
    raise _fail(
        "algorithm",
        f"the {what} uses signature or digest algorithm {alg!r}, which is not on "
        "qlikauth's allow-list (RSA/ECDSA with SHA-256, -384, -512).",
    )


def _check_structure(root: _ET.Element) -> None:
    """Refuse the signature-wrapping shapes: extra assertions, foreign references, duplicate IDs."""
    if root.tag != f"{_SAMLP}Response":
        raise _fail("xml", "the SAMLResponse is not a samlp:Response.")
    ids: dict[str, _ET.Element] = {}
    parents: dict[_ET.Element, _ET.Element] = {}
    for parent in root.iter():
        for child in parent:
            parents[child] = parent
        ident = parent.get("ID")
        if ident is not None:
            if ident in ids:
                raise _fail(
                    "structure",
                    "two elements of the SAMLResponse carry the same ID (a "
                    "signature-wrapping shape); refused.",
                )
            ids[ident] = parent
    assertions = list(root.iter(f"{_SAML}Assertion"))
    encrypted = list(root.iter(f"{_SAML}EncryptedAssertion"))
    if len(assertions) + len(encrypted) != 1:
        raise _fail(
            "structure",
            f"the SAMLResponse holds {len(assertions) + len(encrypted)} assertions; "
            "exactly one is accepted (extra assertions are the signature-wrapping attack).",
        )
    only = (assertions or encrypted)[0]
    if parents.get(only) is not root:
        raise _fail(
            "structure",
            "the assertion is not a direct child of the Response (a "
            "signature-wrapping shape); refused.",
        )
    for sig in root.iter(f"{_DS}Signature"):
        owner = parents.get(sig)
        refs = list(sig.iter(f"{_DS}Reference"))
        if owner is None or owner.get("ID") is None or len(refs) != 1:
            raise _fail(
                "structure", "a signature is not enveloped in the element it signs; refused."
            )
        if refs[0].get("URI") != "#" + owner.get("ID", ""):
            raise _fail(
                "structure",
                "a signature references another element than the one that holds "
                "it (signature wrapping); refused.",
            )


def _parse_instant(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        raise _fail("xml", f"time {text!r} is not an xs:dateTime.") from None


_MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"


def _with_next_cert(metadata: str, pem: str | None, entity_id: str | None) -> str:
    """The IdP metadata with ``pem`` added as one more signing certificate (a rollover)."""
    if not pem:
        return metadata
    try:
        root = _SafeET.fromstring(metadata.encode(), forbid_dtd=True)
    except Exception:  # noqa: BLE001 - defusedxml's refusals and expat's ParseError
        raise ConfigurationError(
            "QLIKAUTH SAML IDP_METADATA: not well-formed XML (or declares a DTD).",
            key="IDP_METADATA",
        ) from None
    body = re.sub(r"-----[^-]+-----|\s+", "", pem)
    entity_tag = f"{_MD}EntityDescriptor"
    entities = [root] if root.tag == entity_tag else list(root.iter(entity_tag))
    added = 0
    for entity in entities:
        if entity_id and entity.get("entityID") != entity_id:
            continue
        for sso in entity.findall(f"{_MD}IDPSSODescriptor"):
            kd = _ET.Element(f"{_MD}KeyDescriptor", {"use": "signing"})
            key_info = _ET.SubElement(kd, f"{_DS}KeyInfo")
            x509_data = _ET.SubElement(key_info, f"{_DS}X509Data")
            x509 = _ET.SubElement(x509_data, f"{_DS}X509Certificate")
            x509.text = body
            children = list(sso)
            at = next((i for i, c in enumerate(children) if c.tag == f"{_MD}KeyDescriptor"), None)
            if at is None:
                at = sum(1 for c in children if c.tag in (f"{_DS}Signature", f"{_MD}Extensions"))
            sso.insert(at, kd)
            added += 1
    if not added:
        raise ConfigurationError(
            "QLIKAUTH SAML IDP_NEXT_CERT: IDP_METADATA has no IdP to add it to.",
            key="IDP_NEXT_CERT",
        )
    return _ET.tostring(root, encoding="unicode")


def _query_pairs(raw_query: str) -> dict[str, str]:
    """A raw query's ``name=value`` pairs (values still encoded); names plain and once each."""
    if len(raw_query) > MAX_REQUEST_BYTES:
        raise _fail(
            "too_large",
            f"the query is larger than {MAX_REQUEST_BYTES // 1024} KiB; refused unread.",
        )
    pairs: dict[str, str] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if not _PLAIN_NAME.fullmatch(name):
            raise _fail(
                "structure",
                f"the query parameter name {name[:40]!r} is percent-encoded "
                "or not a plain name; refused (the SAML Redirect binding's "
                "names are plain).",
            )
        if name in pairs:
            raise _fail("structure", f"{name} appears twice in the query; refused.")
        pairs[name] = value
    return pairs


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def _hash_token(token: str) -> str:
    return hashlib.sha256(b"qlikauth-saml-browser\x00" + token.encode()).hexdigest()


# -- the service provider ---------------------------------------------------------------
class SamlServiceProvider:
    """The SAML SP: metadata, login, ACS, single logout (see the module docstring).

    :param settings: the checked :class:`SamlSettings`.
    :param store: one-time state shared by every portal instance (outstanding request
        ids, logout requests in progress).
    :param replay_cache: consumed assertion and logout-request ids. It must **refuse when
        full** (``when_full="refuse"``: :class:`~qlikauth.exceptions.StoreFull`) rather than
        evict; defaults to an in-process ``MemoryStore(when_full="refuse")``.
    :param redirect_policy: the policy that vets ``RelayState`` (the place to go after
        sign-in); None allows only paths on this portal.
    """

    def __init__(
        self,
        settings: SamlSettings,
        *,
        store: StateStore | None = None,
        replay_cache: StateStore | None = None,
        redirect_policy: Any = None,
        now: Any = None,
    ) -> None:
        _quiet_pysaml2()
        self.settings = settings
        self.store: StateStore = store if store is not None else MemoryStore()
        # A replay cache must refuse when full: evicting a consumed assertion id would let
        # it be replayed.
        self.replay_cache: StateStore = (
            replay_cache if replay_cache is not None else MemoryStore(when_full="refuse")
        )
        self.redirect_policy = redirect_policy
        self._now = now or time.time
        check_xml_libraries()
        self._config = self._make_config()
        self._client = Saml2Client(config=self._config)
        # Signatures, signing and decryption in this process (libxmlsec1), not the xmlsec1 binary.
        use_in_process_crypto(self._client, allow_sha1=settings.allow_sha1)
        idps = list(self._client.metadata.identity_providers())
        if settings.idp_entity_id:
            if settings.idp_entity_id not in idps:
                raise ConfigurationError(
                    f"QLIKAUTH SAML IDP_ENTITY_ID: {settings.idp_entity_id!r} is not in "
                    "IDP_METADATA "
                    f"(it lists {', '.join(idps) or 'no identity provider'}).",
                    key="IDP_ENTITY_ID",
                )
            self.idp_entity_id = settings.idp_entity_id
        elif len(idps) == 1:
            self.idp_entity_id = idps[0]
        else:
            raise ConfigurationError(
                f"QLIKAUTH SAML IDP_METADATA lists {len(idps)} identity providers: set "
                "IDP_ENTITY_ID "
                "to the one to use.",
                key="IDP_ENTITY_ID",
            )
        self._idp_x509 = self._signing_certs()
        self._idp_certs = [cert.public_key() for cert in self._idp_x509]
        if not self._idp_certs:
            raise ConfigurationError(
                "QLIKAUTH SAML IDP_METADATA has no signing certificate for the IdP: "
                "download the metadata again from the IdP.",
                key="IDP_METADATA",
            )
        for warning in self.startup_warnings():
            log.warning("%s", warning)

    # -- configuration ------------------------------------------------------------
    def _make_config(self) -> SPConfig:
        s = self.settings
        endpoints: dict[str, Any] = {"assertion_consumer_service": [(s.acs_url, BINDING_HTTP_POST)]}
        if s.slo_url:
            endpoints["single_logout_service"] = [
                (s.slo_url, BINDING_HTTP_REDIRECT),
                (s.slo_url, BINDING_HTTP_POST),
            ]
        sp: dict[str, Any] = {
            "endpoints": endpoints,
            "allow_unsolicited": s.allow_unsolicited,
            "authn_requests_signed": s.sign_requests,
            "logout_requests_signed": bool(s.sp_key),
            "want_assertions_signed": s.want_assertions_signed,
            "want_response_signed": s.want_response_signed,
            "want_assertions_or_response_signed": True,
            "only_use_keys_in_metadata": True,
            "allow_unknown_attributes": True,
            "name_id_format_allow_create": False,
        }
        if s.name_id_format:
            sp["name_id_format"] = [s.name_id_format]
        conf: dict[str, Any] = {
            "entityid": s.sp_entity_id,
            **PYSAML2_CONFIG,
            "service": {"sp": sp},
            "metadata": {
                "inline": [_with_next_cert(s.idp_metadata, s.idp_next_cert, s.idp_entity_id)]
            },
            "accepted_time_diff": int(s.clock_skew),
            "signing_algorithm": _SIGN_ALG,
            "digest_algorithm": _DIGEST_ALG,
            "delete_tmpfiles": True,
        }
        if s.sp_key and s.sp_cert:
            conf["key_file"] = s.sp_key
            conf["cert_file"] = s.sp_cert
            conf["encryption_keypairs"] = [{"key_file": s.sp_key, "cert_file": s.sp_cert}]
        config = SPConfig()
        try:
            config.load(conf)
        except Exception as exc:  # pysaml2 raises many kinds here (bad metadata XML, bad key file)
            raise ConfigurationError(
                f"QLIKAUTH SAML: pysaml2 cannot use these settings ({type(exc).__name__}: "
                f"{exc}); check IDP_METADATA, SP_KEY and SP_CERT.",
                key="SAML",
            ) from None
        return config

    def _signing_certs(self) -> list[Any]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        out: list[Any] = []
        for cert in self._client.metadata.certs(self.idp_entity_id, "idpsso", "signing"):
            pem = cert[1] if isinstance(cert, tuple) else cert
            der = base64.b64decode(re.sub(r"-----[^-]+-----|\s+", "", pem))
            cert = x509.load_der_x509_certificate(der)
            fingerprint = cert.fingerprint(hashes.SHA256())
            if all(c.fingerprint(hashes.SHA256()) != fingerprint for c in out):
                out.append(cert)
        return out

    def certificate_warnings(self, now: float | None = None) -> list[str]:
        """A line per IdP signing certificate that has expired or expires within
        ``CERT_EXPIRY_WARNING_DAYS`` (the IdP rolls it: Entra every few years, with notice)."""
        from cryptography.hazmat.primitives import hashes

        when = self._now() if now is None else now
        horizon = self.settings.cert_expiry_warning_days * 86400
        out = []
        for cert in self._idp_x509:
            end = cert.not_valid_after_utc.timestamp()
            fp = cert.fingerprint(hashes.SHA256()).hex()[:16]
            day = cert.not_valid_after_utc.strftime("%Y-%m-%d")
            others = len(self._idp_x509) - 1
            if end <= when:
                out.append(
                    f"QLIKAUTH SAML: the IdP signing certificate (SHA-256 {fp}...) expired on {day}"
                    + (
                        f"; {others} other certificate(s) remain trusted"
                        if others
                        else ": sign-ins signed with it fail. Load the IdP's new metadata into "
                        "IDP_METADATA (or its new certificate into IDP_NEXT_CERT)."
                    )
                )
            elif end - when <= horizon:
                days = int((end - when) // 86400)
                out.append(
                    f"QLIKAUTH SAML: the IdP signing certificate (SHA-256 {fp}...) expires on "
                    f"{day}, in {days} day(s). Get the IdP's next certificate now (Entra: add a "
                    "new certificate, then download the Federation Metadata XML) and give it as "
                    "IDP_NEXT_CERT, or load the new metadata: both are trusted during the "
                    "rollover."
                )
        return out

    def startup_warnings(self) -> list[str]:
        """What the start-up checks should show: certificate expiry, login CSRF exposure."""
        out = self.certificate_warnings()
        if self.settings.allow_unsolicited and self.settings.unsolicited_relay_states is None:
            out.append(
                "QLIKAUTH SAML ALLOW_UNSOLICITED is on without UNSOLICITED_RELAY_STATES: any web "
                "page can post its own IdP response into a visitor's browser and sign them in as "
                "someone else (login CSRF) and send them anywhere the redirect policy allows. "
                "List the RelayState values IdP-initiated sign-in may use, or turn it off."
            )
        return out

    @property
    def client(self) -> Saml2Client:
        """The underlying pysaml2 client (for inspection; the checks here wrap its calls)."""
        return self._client

    # -- metadata -----------------------------------------------------------------
    def metadata(self) -> bytes:
        """The SP's metadata XML (signed with the SP key when one is configured)."""
        descriptor = entity_descriptor(self._config)
        if self.settings.sp_key:
            # signed by the client's in-process security context (create_metadata_string would
            # build a context of its own on the xmlsec1 binary)
            _signed, text = sign_entity_descriptor(
                descriptor, None, self._client.sec, _SIGN_ALG, _DIGEST_ALG
            )
            return text.encode() if isinstance(text, str) else bytes(text)
        return str(descriptor).encode()

    # -- login --------------------------------------------------------------------
    def _browser(self, token: str | None) -> tuple[str, Cookie | None]:
        if token and re.fullmatch(r"[A-Za-z0-9_-]{32,128}", token):
            return token, None
        token = secrets.token_urlsafe(32)
        s = self.settings
        return token, Cookie(
            s.browser_cookie,
            token,
            None,
            "/",
            s.browser_cookie_secure,
            True,
            "None" if s.browser_cookie_secure else "Lax",
        )

    def _vet_target(self, target: str | None) -> str | None:
        if not target:
            return None
        if self.redirect_policy is None:
            if (
                target.startswith("/")
                and not target.startswith("//")
                and "\\" not in target
                and not any(ord(c) < 33 for c in target)
            ):
                return target
            raise _fail("relay_state", "RelayState is not a path on this portal; refused.")
        try:
            return str(self.redirect_policy.check(target))
        except RedirectError as exc:
            raise _fail("relay_state", f"RelayState is not an allowed place to go: {exc}") from None

    def login(
        self, relay_state: str | None = None, browser_token: str | None = None
    ) -> SamlLoginStart:
        """An AuthnRequest over the Redirect binding, bound to this browser (one use).

        ``relay_state`` (where to go after sign-in) is vetted now and again at the ACS.
        """
        target = self._vet_target(relay_state)
        token, cookie = self._browser(browser_token)
        s = self.settings
        kwargs: dict[str, Any] = {}
        if s.name_id_format:
            kwargs["nameid_format"] = s.name_id_format
        req_id, info = self._client.prepare_for_authenticate(
            entityid=self.idp_entity_id,
            relay_state=target or "",
            binding=BINDING_HTTP_REDIRECT,
            sign=s.sign_requests,
            sigalg=_SIGN_ALG if s.sign_requests else None,
            digest_alg=_DIGEST_ALG,
            **kwargs,
        )
        location = dict(info["headers"])["Location"]
        record = {"b": _hash_token(token), "r": target, "t": self._now()}
        self.store.put(f"qlikauth:saml:req:{req_id}", json.dumps(record).encode(), s.request_ttl)
        return SamlLoginStart(Redirect(location), cookie, req_id)

    # -- ACS ----------------------------------------------------------------------
    def acs(self, form: Mapping[str, str], browser_token: str | None) -> SamlAssertion:
        """Verify a POSTed ``SAMLResponse`` (+ ``RelayState``); raises :class:`SamlError`.

        Nothing is consumed until every check passed; then the outstanding request and the
        assertion id are used up, so a second post of the same response is refused. Each
        refusal is logged (logger ``qlikauth.saml``) with its code, never the message.
        """
        try:
            return self._acs(form, browser_token)
        except SamlError as exc:
            log.warning("SAML response refused (%s)", exc.code)
            raise

    def _acs(self, form: Mapping[str, str], browser_token: str | None) -> SamlAssertion:
        s = self.settings
        raw = _b64decode(form.get("SAMLResponse", ""), "SAMLResponse")
        root = _guard_xml(raw, "SAMLResponse")
        _check_structure(root)
        _check_algorithms(root, s.allow_sha1, "SAMLResponse")

        # Destination: pysaml2 hands back an empty response for a wrong one; say so here.
        dest = root.get("Destination")
        if dest is None and s.want_response_signed:
            raise _fail(
                "destination",
                "the Response has no Destination; a signed response must name the ACS.",
            )
        if dest is not None and dest != s.acs_url:
            raise _fail(
                "destination",
                f"the Response is addressed to {dest[:200]!r}, not to this ACS "
                f"({s.acs_url}): check the Reply URL (ACS URL) configured at the IdP.",
            )

        # Issuer: pysaml2 finds no key for an unknown one and says only MissingKey; say who it was.
        for el in (root, root.find(f"{_SAML}Assertion")):
            issuer_el = el.find(f"{_SAML}Issuer") if el is not None else None
            if issuer_el is not None and (issuer_el.text or "").strip() != self.idp_entity_id:
                named = (issuer_el.text or "").strip()[:200]
                raise _fail(
                    "issuer",
                    f"the response was issued by {named!r}, not the configured "
                    f"IdP ({self.idp_entity_id}): check IDP_METADATA and "
                    "IDP_ENTITY_ID.",
                )

        # InResponseTo: an outstanding request of this browser, or (if allowed) none at all.
        irt = root.get("InResponseTo")
        outstanding: dict[str, str] = {}
        request_key = None
        if irt:
            request_key = f"qlikauth:saml:req:{irt}"
            rec_raw = self.store.get(request_key)
            if rec_raw is None and self.store.get(f"qlikauth:saml:used:{irt}") is not None:
                raise _fail(
                    "replayed",
                    "this sign-in response was already used (replay); refused. Start "
                    "the sign-in again from the portal.",
                )
            if rec_raw is None:
                raise _fail(
                    "unknown_request",
                    "the response answers a sign-in request this portal does not "
                    "know (expired, already used, or made elsewhere): start the "
                    "sign-in again from the portal.",
                )
            rec = json.loads(rec_raw)
            if not browser_token or not hmac.compare_digest(
                str(rec.get("b", "")), _hash_token(browser_token)
            ):
                raise _fail(
                    "other_browser",
                    "the response answers a sign-in request made by another browser "
                    "(or the browser lost its qlikauth cookie); refused. Start the "
                    "sign-in again in this browser.",
                )
            outstanding[irt] = str(rec.get("r") or "")
        elif not s.allow_unsolicited:
            raise _fail(
                "unsolicited",
                "the response was not requested by this portal (IdP-initiated sign-in), "
                "and ALLOW_UNSOLICITED is off: start from the portal, or enable it.",
            )
        if not outstanding and not s.allow_unsolicited:  # pragma: no cover - guarded above
            raise _fail("unsolicited", "unsolicited response refused.")

        conv_info = {
            "remote_addr": None,
            "request_uri": s.acs_url,
            "entity_id": s.sp_entity_id,
            "endpoints": {"assertion_consumer_service": [s.acs_url]},
        }
        try:
            resp = self._client.parse_authn_request_response(
                form["SAMLResponse"],
                BINDING_HTTP_POST,
                outstanding=outstanding or None,
                conv_info=conv_info,
            )
        except SamlError:
            raise
        except Exception as exc:  # noqa: BLE001 - pysaml2 raises a dozen unrelated types
            raise self._diagnose(root, exc) from None
        if resp is None or not getattr(resp, "assertion", None):
            raise self._diagnose(root, None)
        assertion = resp.assertion
        if resp.name_id is None or not (resp.name_id.text or "").strip():
            raise _fail("no_subject", "the assertion names no subject (NameID); refused.")
        if self._client.config.entityid is None:  # pragma: no cover
            raise _fail("config", "no SP entity id")

        # Our own checks on what pysaml2 verified (and decrypted).
        if assertion.signature is not None:
            self._check_signature_objects(assertion.signature)
        if resp.response.signature is not None:
            self._check_signature_objects(resp.response.signature)
        issuer = (assertion.issuer.text or "").strip() if assertion.issuer is not None else ""
        if issuer != self.idp_entity_id:
            raise _fail(
                "issuer",
                f"the assertion was issued by {issuer[:200]!r}, not the configured IdP "
                f"({self.idp_entity_id}).",
            )
        if (
            root.find(f"{_SAML}EncryptedAssertion") is None
            and root.find(f"{_SAML}Assertion") is not None
        ):
            raw_id = root.find(f"{_SAML}Assertion").get("ID")  # type: ignore[union-attr]
            if raw_id != assertion.id:
                raise _fail(
                    "structure", "the verified assertion is not the one in the document; refused."
                )
        now = self._now()
        recipients_ok = False
        nooa: float | None = None
        for sc in assertion.subject.subject_confirmation:
            data = sc.subject_confirmation_data
            if sc.method != _BEARER or data is None:
                continue
            if data.recipient != s.acs_url:
                continue
            if data.in_response_to not in (None, irt) or (irt and data.in_response_to != irt):
                raise _fail(
                    "unknown_request",
                    "the assertion's SubjectConfirmationData answers another request.",
                )
            t = _parse_instant(data.not_on_or_after)
            if t is not None and now > t + s.clock_skew:
                raise _fail(
                    "expired",
                    "the assertion's subject confirmation has expired; sign in again "
                    "(or check the portal's and the IdP's clocks).",
                )
            nooa = t
            recipients_ok = True
        if not recipients_ok:
            raise _fail(
                "recipient",
                f"no bearer SubjectConfirmation names this ACS ({s.acs_url}) as "
                "Recipient: check the Reply URL (ACS URL) at the IdP.",
            )
        conditions = assertion.conditions
        cond_end = _parse_instant(conditions.not_on_or_after) if conditions is not None else None
        ttl_until = max(t for t in (cond_end, nooa, now + 300) if t is not None)

        # Used once: the request (atomic take) and the assertion id (replay cache, refuses
        # when full).
        if request_key is not None:
            if self.store.take(request_key) is None:
                raise _fail(
                    "replayed", "this sign-in response was already used; start the sign-in again."
                )
            self.store.put(f"qlikauth:saml:used:{irt}", b"1", s.request_ttl)
        if not self.replay_cache.add(
            "qlikauth:saml:aid:"
            + hashlib.sha256((issuer + chr(0) + assertion.id).encode()).hexdigest(),
            b"1",
            max(60.0, ttl_until - now + s.clock_skew),
        ):
            raise _fail(
                "replayed",
                "this assertion was already used (replay); refused. Start the sign-in again.",
            )

        relay = form.get("RelayState") or None
        if irt:
            target = outstanding[irt] or None
            if relay and relay != (outstanding[irt] or ""):
                raise _fail(
                    "relay_state", "RelayState differs from the one this portal sent; refused."
                )
        else:
            allowed = s.unsolicited_relay_states
            if relay and allowed is not None and relay not in allowed:
                raise _fail(
                    "relay_state",
                    "the IdP-initiated sign-in's RelayState is not one of "
                    "UNSOLICITED_RELAY_STATES; refused.",
                )
            target = self._vet_target(relay)

        claims: dict[str, list[str]] = {}
        for statement in assertion.attribute_statement:
            for attr in statement.attribute:
                values = [(v.text or "") for v in attr.attribute_value]
                claims.setdefault(attr.name, []).extend(values)
        session_index = None
        session_end = None
        for st in assertion.authn_statement:
            session_index = session_index or st.session_index
            if st.session_not_on_or_after:
                session_end = _parse_instant(st.session_not_on_or_after)
        nid = resp.name_id
        return SamlAssertion(
            issuer=issuer,
            name_id=nid.text.strip(),
            name_id_format=nid.format,
            name_qualifier=nid.name_qualifier,
            sp_name_qualifier=nid.sp_name_qualifier,
            session_index=session_index,
            claims=claims,
            assertion_id=assertion.id,
            in_response_to=irt,
            relay_state=target,
            session_not_on_or_after=session_end,
        )

    def _check_signature_objects(self, signature: Any) -> None:
        signed = signature.signed_info
        _check_alg(
            signed.signature_method.algorithm,
            SIGNATURE_ALGORITHMS | (SHA1_ALGORITHMS if self.settings.allow_sha1 else frozenset()),
            self.settings.allow_sha1,
            "assertion",
        )
        for ref in signed.reference:
            _check_alg(
                ref.digest_method.algorithm,
                DIGEST_ALGORITHMS | (SHA1_ALGORITHMS if self.settings.allow_sha1 else frozenset()),
                self.settings.allow_sha1,
                "assertion",
            )

    def _diagnose(self, root: _ET.Element, exc: BaseException | None) -> SamlError:
        """Say which check failed, from the (untrusted, already refused) document and pysaml2's
        error."""
        s = self.settings
        name = type(exc).__name__ if exc is not None else ""
        text = str(exc) if exc is not None else ""
        status = root.find(f"{_SAMLP}Status/{_SAMLP}StatusCode")
        if status is not None and status.get("Value") != _STATUS_SUCCESS:
            inner = status.find(f"{_SAMLP}StatusCode")
            detail = (inner.get("Value") if inner is not None else None) or status.get("Value")
            return _fail("idp_status", f"the IdP refused the sign-in (status {detail}).")
        assertion = root.find(f"{_SAML}Assertion")
        signed = (
            root.find(f"{_DS}Signature") is not None
            or (assertion is not None and assertion.find(f"{_DS}Signature") is not None)
            or (root.find(f"{_SAML}EncryptedAssertion") is not None)
        )  # its signature is inside
        if isinstance(exc, _Pysaml2SignatureError) or name in (
            "SignatureError",
            "IncorrectlySigned",
            "SigverError",
            "CertificateError",
            "XmlsecError",
        ):
            if "saml schema" in text.lower():
                return _fail(
                    "structure",
                    "the SAML response does not follow the SAML schema "
                    "(checked before its signature); refused.",
                )
            if not signed or "missing" in text.lower():
                return _fail(
                    "unsigned",
                    "the SAML response is not signed (or not where required): the IdP "
                    "must sign the assertion (or the response, per WANT_*_SIGNED).",
                )
            return _fail(
                "signature",
                "the signature of the SAML response does not verify with the IdP's "
                "certificate from IDP_METADATA (altered, or signed by another key: "
                "if the IdP rolled its certificate, load its new metadata).",
            )
        if assertion is not None:
            now = self._now()
            cond = assertion.find(f"{_SAML}Conditions")
            if cond is not None:
                nb = _parse_instant(cond.get("NotBefore"))
                na = _parse_instant(cond.get("NotOnOrAfter"))
                if na is not None and now >= na + s.clock_skew:
                    return _fail(
                        "expired",
                        "the assertion has expired (Conditions NotOnOrAfter); sign in "
                        "again, or check the portal's and the IdP's clocks.",
                    )
                if nb is not None and now < nb - s.clock_skew:
                    return _fail(
                        "not_yet_valid",
                        "the assertion is not valid yet (Conditions NotBefore): the "
                        "IdP's clock is ahead of the portal's by more than CLOCK_SKEW.",
                    )
                audiences = [a.text for a in cond.iter(f"{_SAML}Audience")]
                if audiences and s.sp_entity_id not in audiences:
                    return _fail(
                        "audience",
                        f"the assertion is for another service provider (audience "
                        f"{audiences[0]!r}), not {s.sp_entity_id}: check the Identifier "
                        "(Entity ID) configured at the IdP.",
                    )
            subj = assertion.find(f"{_SAML}Subject")
            if subj is None or subj.find(f"{_SAML}NameID") is None:
                if subj is None or subj.find(f"{_SAML}EncryptedID") is None:
                    return _fail("no_subject", "the assertion names no subject (NameID); refused.")
            for data in assertion.iter(f"{_SAML}SubjectConfirmationData"):
                if data.get("Recipient") not in (None, s.acs_url):
                    return _fail(
                        "recipient", f"the assertion's Recipient is not this ACS ({s.acs_url})."
                    )
                na = _parse_instant(data.get("NotOnOrAfter"))
                if na is not None and now >= na + s.clock_skew:
                    return _fail(
                        "expired",
                        "the assertion's subject confirmation has expired; sign in again.",
                    )
        if name in ("UnsolicitedResponse",):
            return _fail(
                "unsolicited", "the response answers no outstanding request of this portal."
            )
        if exc is None:
            return _fail("no_subject", "the SAML response carries no usable assertion; refused.")
        return _fail("invalid", f"the SAML response was refused ({name}).")

    # -- single logout --------------------------------------------------------------
    def _idp_slo(self, binding: str) -> str:
        try:
            srvs = self._client.metadata.single_logout_service(
                self.idp_entity_id, binding, "idpsso"
            )
        except Exception:  # noqa: BLE001 - pysaml2 raises UnsupportedBinding, KeyError...
            srvs = []
        for srv in srvs:
            return str(srv.get("location"))
        raise ConfigurationError(
            "QLIKAUTH SAML: the IdP's metadata has no SingleLogoutService for the "
            "Redirect binding; single logout cannot be sent.",
            key="IDP_METADATA",
        )

    def logout(
        self,
        info: Mapping[str, Any],
        relay_state: str | None = None,
        browser_token: str | None = None,
    ) -> Redirect:
        """An SP-initiated LogoutRequest (Redirect binding, signed when the SP has a key).

        ``info`` is :meth:`SamlAssertion.logout_info` as the portal kept it. End the
        portal's and Qlik's sessions *before* sending the browser: the IdP may never
        answer.
        """
        target = self._vet_target(relay_state)
        destination = self._idp_slo(BINDING_HTTP_REDIRECT)
        name_id = saml_schema.NameID(
            text=str(info["name_id"]),
            format=info.get("format"),
            name_qualifier=info.get("name_qualifier"),
            sp_name_qualifier=info.get("sp_name_qualifier"),
        )
        sign = bool(self.settings.sp_key)
        sessions = [info["session_index"]] if info.get("session_index") else None
        req_id, request = self._client.create_logout_request(
            destination,
            self.idp_entity_id,
            name_id=name_id,
            session_indexes=sessions,
            expire=None,
            sign=False,
        )
        http = self._client.apply_binding(
            BINDING_HTTP_REDIRECT,
            str(request),
            destination,
            relay_state=target or "",
            sign=sign,
            sigalg=_SIGN_ALG if sign else None,
        )
        record = {"b": _hash_token(browser_token) if browser_token else "", "r": target}
        self.store.put(
            f"qlikauth:saml:lo:{req_id}", json.dumps(record).encode(), self.settings.request_ttl
        )
        return Redirect(dict(http["headers"])["Location"])

    def _redirect_message(self, raw_query: str | None, kind: str) -> tuple[str, dict[str, str]]:
        """The Redirect-binding message (``SAMLRequest`` or ``SAMLResponse``) and its RelayState,
        read from the very query pairs whose signature is checked (SAML bindings 3.4.4.1).

        A LogoutRequest must be signed; a LogoutResponse is checked when it carries a
        signature. Names must be plain and appear once: a framework that decodes
        ``SAML%52equest`` or keeps the last of two ``SAMLRequest`` would otherwise read
        another message than the one whose signature was verified.
        """
        if raw_query is None:
            raise _fail(
                "binding",
                "the raw query string is needed to read a Redirect-binding "
                "message (its signature covers those exact octets).",
            )
        pairs = _query_pairs(raw_query)
        present = [k for k in ("SAMLRequest", "SAMLResponse") if k in pairs]
        if len(present) != 1:
            raise _fail(
                "missing" if not present else "structure",
                "the query must carry exactly one SAMLRequest or SAMLResponse.",
            )
        param = present[0]
        what = kind or ("LogoutRequest" if param == "SAMLRequest" else "LogoutResponse")
        if param == "SAMLRequest" or "Signature" in pairs or "SigAlg" in pairs:
            self._verify_redirect_signature(pairs, param, what)
        values = {}
        for k in (param, "RelayState"):
            if k in pairs:
                try:
                    values[k] = unquote_plus(pairs[k], errors="strict")
                except UnicodeDecodeError:
                    raise _fail("encoding", f"the {k} parameter is not UTF-8.") from None
        return param, values

    def _verify_redirect_signature(self, pairs: Mapping[str, str], param: str, kind: str) -> None:
        """Verify a Redirect-binding signature over the exact octets received."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

        if "Signature" not in pairs or "SigAlg" not in pairs:
            raise _fail(
                "logout_unsigned",
                f"the {kind} is not signed; an unsigned LogoutRequest could sign "
                "anyone out, so the IdP must sign it (Redirect binding: SigAlg + "
                "Signature).",
            )
        sigalg = unquote_plus(pairs["SigAlg"])
        allowed = SIGNATURE_ALGORITHMS | (
            SHA1_ALGORITHMS if self.settings.allow_sha1 else frozenset()
        )
        _check_alg(sigalg, allowed, self.settings.allow_sha1, kind)
        order = (param, "RelayState", "SigAlg")
        signed = "&".join(f"{k}={pairs[k]}" for k in order if k in pairs).encode("ascii", "replace")
        try:
            signature = base64.b64decode(unquote_plus(pairs["Signature"]), validate=True)
        except (binascii.Error, ValueError):
            raise _fail("logout_signature", f"the {kind}'s Signature is not base64.") from None
        digest = {
            "sha256": hashes.SHA256(),
            "sha384": hashes.SHA384(),
            "sha512": hashes.SHA512(),
            "sha1": hashes.SHA1(),  # noqa: S303 - only with ALLOW_SHA1
        }[sigalg.rsplit("-", 1)[-1]]
        for key in self._idp_certs:  # every trusted certificate: two during a rollover
            try:
                if isinstance(key, rsa.RSAPublicKey) and "rsa-" in sigalg:
                    key.verify(signature, signed, padding.PKCS1v15(), digest)
                    return
                if isinstance(key, ec.EllipticCurvePublicKey) and "ecdsa-" in sigalg:
                    key.verify(signature, signed, ec.ECDSA(digest))
                    return
            except InvalidSignature:
                continue
        raise _fail(
            "logout_signature",
            f"the {kind}'s signature does not verify with the IdP's certificate "
            "from IDP_METADATA; refused.",
        )

    def _check_logout_common(self, root: _ET.Element, kind: str) -> None:
        s = self.settings
        issuer = root.find(f"{_SAML}Issuer")
        if issuer is None or (issuer.text or "").strip() != self.idp_entity_id:
            raise _fail(
                "issuer",
                f"the {kind} does not come from the configured IdP ({self.idp_entity_id}).",
            )
        dest = root.get("Destination")
        if dest is not None and dest != s.slo_url:
            raise _fail(
                "destination",
                f"the {kind} is addressed to {dest[:200]!r}, not to this portal's "
                f"single logout URL ({s.slo_url}).",
            )
        now = self._now()
        issued = _parse_instant(root.get("IssueInstant"))
        if (
            issued is None
            or now - issued > s.logout_max_age + s.clock_skew
            or issued - now > s.clock_skew
        ):
            raise _fail(
                "logout_old",
                f"the {kind} was issued at {root.get('IssueInstant')}, outside the "
                f"{int(s.logout_max_age)} s (+ clock skew) qlikauth accepts; refused.",
            )
        nooa = _parse_instant(root.get("NotOnOrAfter"))
        if nooa is not None and now >= nooa + s.clock_skew:
            raise _fail("logout_old", f"the {kind} has expired (NotOnOrAfter); refused.")

    def handle_slo(
        self,
        binding: str,
        params: Mapping[str, str] | None = None,
        raw_query: str | None = None,
        browser_token: str | None = None,
    ) -> IdpLogoutRequest | Redirect:
        """A message at the single logout URL: the IdP's LogoutRequest, or its LogoutResponse to
        ours.

        ``binding`` is ``"redirect"`` (GET) or ``"post"`` (form fields in ``params``). For the
        Redirect binding pass ``raw_query``, the query string exactly as received (still
        percent-encoded): the message and its RelayState are read only from those pairs, the
        ones whose signature is checked, and ``params`` is not read; a parameter name that is
        percent-encoded or repeated is refused. A LogoutRequest gives an
        :class:`IdpLogoutRequest` (end the sessions it names, then send ``.response``); a
        LogoutResponse gives the :class:`Redirect` to the place kept at logout.
        """
        try:
            if binding == "redirect":
                param, values = self._redirect_message(raw_query, "")
                if param == "SAMLRequest":
                    return self._logout_request(binding, values[param], values.get("RelayState"))
                return self._logout_response(binding, values[param], browser_token)
            if binding != "post":
                raise _fail("binding", f"unknown SAML binding {binding!r}.")
            form = params or {}
            if "SAMLRequest" in form and "SAMLResponse" in form:
                raise _fail("structure", "the form carries both a SAMLRequest and a SAMLResponse.")
            if "SAMLRequest" in form:
                return self._logout_request(binding, form["SAMLRequest"], form.get("RelayState"))
            if "SAMLResponse" in form:
                return self._logout_response(binding, form["SAMLResponse"], browser_token)
            raise _fail("missing", "no SAMLRequest or SAMLResponse at the single logout URL.")
        except SamlError as exc:
            log.warning("SAML logout message refused (%s)", exc.code)
            raise

    def _logout_request(
        self, binding: str, message: str, relay_state: str | None
    ) -> IdpLogoutRequest:
        s = self.settings
        kind = "LogoutRequest"
        data = _b64decode(message, kind)
        xml = _inflate(data, kind) if binding == "redirect" else data
        root = _guard_xml(xml, kind)
        if root.tag != f"{_SAMLP}LogoutRequest":
            raise _fail("xml", "the SAMLRequest is not a LogoutRequest.")
        _check_algorithms(root, s.allow_sha1, kind)
        if binding == "post":
            sig = root.find(f"{_DS}Signature")
            if sig is None:
                raise _fail(
                    "logout_unsigned",
                    "the LogoutRequest is not signed; an unsigned LogoutRequest could "
                    "sign anyone out, so the IdP must sign it.",
                )
            refs = list(sig.iter(f"{_DS}Reference"))
            if len(refs) != 1 or refs[0].get("URI") != "#" + (root.get("ID") or "\x00"):
                raise _fail(
                    "structure",
                    "the LogoutRequest's signature does not cover the request; refused.",
                )
            try:
                self._client.sec.correctly_signed_logout_request(
                    xml.decode(), must=True, origdoc=xml.decode(), only_valid_cert=False
                )
            except Exception:  # noqa: BLE001 - SignatureError, SigverError, ...
                raise _fail(
                    "logout_signature",
                    "the LogoutRequest's signature does not verify with the IdP's "
                    "certificate from IDP_METADATA; refused.",
                ) from None
        self._check_logout_common(root, kind)
        request = samlp.logout_request_from_string(xml.decode())
        if request is None or request.name_id is None or not (request.name_id.text or "").strip():
            raise _fail(
                "no_subject",
                "the LogoutRequest names no NameID (encrypted NameIDs are not supported).",
            )
        req_id = root.get("ID") or ""
        if not self.replay_cache.add(
            f"qlikauth:saml:lr:{hashlib.sha256(req_id.encode()).hexdigest()}",
            b"1",
            s.logout_max_age + 2 * s.clock_skew,
        ):
            raise _fail("replayed", "this LogoutRequest was already handled; refused.")
        sessions = tuple(
            (si.text or "").strip() for si in request.session_index if (si.text or "").strip()
        )
        destination = self._idp_slo(BINDING_HTTP_REDIRECT)
        response = self._client.create_logout_response(
            request,
            bindings=[BINDING_HTTP_REDIRECT],
            status=samlp.Status(status_code=samlp.StatusCode(value=_STATUS_SUCCESS)),
            sign=False,
        )
        relay = relay_state or ""
        sign = bool(s.sp_key)
        http = self._client.apply_binding(
            BINDING_HTTP_REDIRECT,
            str(response),
            destination,
            relay_state=relay,
            response=True,
            sign=sign,
            sigalg=_SIGN_ALG if sign else None,
        )
        return IdpLogoutRequest(
            issuer=self.idp_entity_id,
            name_id=request.name_id.text.strip(),
            session_indexes=sessions,
            response=Redirect(dict(http["headers"])["Location"]),
            relay_state=relay or None,
        )

    def _logout_response(self, binding: str, message: str, browser_token: str | None) -> Redirect:
        s = self.settings
        kind = "LogoutResponse"
        data = _b64decode(message, kind)
        xml = _inflate(data, kind) if binding == "redirect" else data
        root = _guard_xml(xml, kind)
        if root.tag != f"{_SAMLP}LogoutResponse":
            raise _fail("xml", "the SAMLResponse at the logout URL is not a LogoutResponse.")
        _check_algorithms(root, s.allow_sha1, kind)
        self._check_logout_common(root, kind)
        irt = root.get("InResponseTo") or ""
        key = f"qlikauth:saml:lo:{irt}"
        # Check the browser first and use the pending logout up only then: a LogoutResponse
        # replayed from another browser must not spend the one the right browser comes back with.
        rec_raw = self.store.get(key)
        if rec_raw is None:
            raise _fail(
                "unknown_request",
                "the LogoutResponse answers no logout this portal started (or it "
                "was already used).",
            )
        rec = json.loads(rec_raw)
        if rec.get("b") and not (
            browser_token and hmac.compare_digest(rec["b"], _hash_token(browser_token))
        ):
            raise _fail(
                "other_browser", "the LogoutResponse answers a logout started in another browser."
            )
        if self.store.take(key) is None:
            raise _fail(
                "unknown_request", "the LogoutResponse answers a logout that was already used."
            )
        status = root.find(f"{_SAMLP}Status/{_SAMLP}StatusCode")
        if status is None or status.get("Value") != _STATUS_SUCCESS:
            log.warning(
                "SAML IdP answered the logout with status %s",
                status.get("Value") if status is not None else "none",
            )
        return Redirect(rec.get("r") or "/")


def xmlsec_version() -> str:
    """The XML security libraries in use (security.md: record them): libxmlsec1 in process."""
    check_xml_libraries()
    return library_versions()


def check_request_size(content_length: str | int | None) -> None:
    """Refuse a request whose declared body is larger than :data:`MAX_REQUEST_BYTES`, unread.

    Call it with the ``Content-Length`` header before the framework reads the body (a body
    sent without one must be read through a stream bounded to the same size). Raises
    :class:`~qlikauth.exceptions.SamlError` with code ``too_large``.
    """
    if content_length in (None, ""):
        return
    try:
        size = int(str(content_length).strip())
    except ValueError:
        raise _fail(
            "too_large", "the request's Content-Length is not a number; refused unread."
        ) from None
    if size < 0 or size > MAX_REQUEST_BYTES:
        raise _fail(
            "too_large",
            f"the request body ({size} bytes) is larger than the "
            f"{MAX_REQUEST_BYTES // 1024} KiB a SAML message needs; refused "
            "unread.",
        )


def redirect_query(location: str) -> dict[str, str]:
    """The query parameters of a Redirect-binding URL (tests and IdP peers)."""
    return dict(parse_qsl(urlsplit(location).query))
