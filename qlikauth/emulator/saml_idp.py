"""A local SAML identity provider (pysaml2's ``saml2.server.Server``) behind a tiny login page.

For demos, the SSO example portal and tests: it signs with libxmlsec1 like a real IdP (SHA-256
by default), sends Entra-ID-shaped claims (e-mail, display name, group object ids), keeps
its own sessions for single logout (SP-initiated and IdP-initiated), and lets a test build
any response it likes: :meth:`SamlIdp.response_xml` with ``mutate=`` edits the unsigned
document and then signs it with the IdP's real key, so a test can show that *one* check
(audience, destination, times...) refuses, not the signature.

Needs the ``saml`` extra. Never use it as a production IdP: its users and passwords are
for demonstrations.

>>> idp = SamlIdp()                      # doctest: +SKIP
>>> idp.start(); idp.add_sp_metadata(sp_metadata_xml); idp.metadata()  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime
import html
import re
import secrets
import ssl
import tempfile
import threading
import xml.etree.ElementTree as ET  # noqa: S405 - parses only documents this IdP made itself
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .threaded import ServedInThread, read_cookie, session_cookie

try:
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, class_name, samlp
    from saml2.config import IdPConfig
    from saml2.metadata import entity_descriptor
    from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_EMAILADDRESS, Assertion, NameID
    from saml2.server import Server

    from ..bridges.saml_xmlsec import PYSAML2_CONFIG, use_in_process_crypto
except ImportError as exc:  # pragma: no cover
    raise ImportError(
        "qlikauth.emulator.saml_idp needs pysaml2: pip install 'qlikauth[saml]'"
    ) from exc

__all__ = ["SamlIdp", "IdpUser", "DEMO_USERS", "ENTRA_CLAIMS", "write_self_signed"]

SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
DIGEST_SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"

#: Entra ID's SAML claim names.
ENTRA_CLAIMS = {
    "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "name": "http://schemas.microsoft.com/identity/claims/displayname",
    "groups": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
    "oid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
}


@dataclass(frozen=True)
class IdpUser:
    """A user of the local IdP: password, NameID and the claims sent for them."""

    password: str
    name_id: str
    claims: Mapping[str, list[str]] = field(default_factory=dict)


#: Demo users (password ``demo``), Entra-shaped: e-mail NameID, group object ids.
DEMO_GROUPS = {
    "Sales": "6b8a5d1e-1c7f-4d3a-9a51-0c2d1e7f9b10",
    "Finance": "0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c",
    "Marketing": "3d2c1b0a-8f7e-4d6c-9b5a-1e2f3a4b5c6d",
}
DEMO_USERS: dict[str, IdpUser] = {
    name: IdpUser(
        "demo",
        f"{name}@example.com",
        {
            ENTRA_CLAIMS["email"]: [f"{name.capitalize()}@Example.com"],
            ENTRA_CLAIMS["name"]: [f"{name.capitalize()} Example"],
            ENTRA_CLAIMS["groups"]: [DEMO_GROUPS[g] for g in groups],
        },
    )
    for name, groups in (("alice", ("Sales", "Finance")), ("bob", ("Marketing",)), ("carol", ()))
}


def write_self_signed(
    directory: Path | str, name: str = "idp", cn: str = "qlikauth local SAML IdP"
) -> tuple[Path, Path]:
    """Write ``name.crt`` / ``name.key`` (RSA 2048, self-signed, 2 years) into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=730))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


@dataclass(frozen=True)
class AuthnInfo:
    """What an AuthnRequest asked for."""

    id: str
    sp_entity_id: str
    acs_url: str
    relay_state: str | None


class SamlIdp(ServedInThread):
    """The local IdP (see the module docstring). ``start()`` serves it; it also works unserved."""

    thread_name = "saml-idp"

    def __init__(
        self,
        *,
        host: str = "localhost",
        bind: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[Path | str, Path | str] | None = None,
        users: Mapping[str, IdpUser] | None = None,
        key_dir: Path | str | None = None,
        entity_id: str | None = None,
        sign_alg: str = SHA256,
        digest_alg: str = DIGEST_SHA256,
        sign_response: bool = True,
        sign_assertion: bool = True,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="qlikauth-saml-idp-")
        keys = Path(key_dir) if key_dir else Path(self._tmp.name)
        if not (keys / "idp.key").exists():
            write_self_signed(keys, "idp")
        self.cert_file, self.key_file = keys / "idp.crt", keys / "idp.key"
        self.users = dict(users if users is not None else DEMO_USERS)
        self.sign_alg, self.digest_alg = sign_alg, digest_alg
        self.sign_response, self.sign_assertion = sign_response, sign_assertion
        self._tls = tls
        self._host, self._bind = host, bind
        self._httpd = ThreadingHTTPServer((bind, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.idp = self  # type: ignore[attr-defined]
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.base_url = f"{scheme}://{host}:{self.port}"
        self.entity_id = entity_id or f"{self.base_url}/metadata"
        self._sp_metadata: list[str] = []
        self._lock = threading.Lock()
        #: IdP sessions: session index -> (user name, SP entity id, NameID)
        self.sessions: dict[str, tuple[str, str, str]] = {}
        self.logouts_received: list[str] = []
        #: Browsers signed in at the login page: IdP session cookie value -> user name.
        self.browsers: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self.server = self._make_server()

    # -- configuration --------------------------------------------------------------
    def _make_server(self) -> Server:
        conf = {
            "entityid": self.entity_id,
            **PYSAML2_CONFIG,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(f"{self.base_url}/sso", BINDING_HTTP_REDIRECT)],
                        "single_logout_service": [
                            (f"{self.base_url}/slo", BINDING_HTTP_REDIRECT),
                            (f"{self.base_url}/slo", BINDING_HTTP_POST),
                        ],
                    },
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "name_form": NAME_FORMAT_URI,
                            "attribute_restrictions": None,
                        }
                    },
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "want_authn_requests_signed": False,
                }
            },
            "key_file": str(self.key_file),
            "cert_file": str(self.cert_file),
            "metadata": {"inline": list(self._sp_metadata)} if self._sp_metadata else {},
            "signing_algorithm": self.sign_alg,
            "digest_algorithm": self.digest_alg,
            "accepted_time_diff": 60,
        }
        config = IdPConfig()
        config.load(conf)
        # signs and encrypts with libxmlsec1 in process, as the portal's SP verifies
        return use_in_process_crypto(Server(config=config))

    def add_sp_metadata(self, xml: str | bytes) -> None:
        """Trust a service provider (its metadata XML)."""
        self._sp_metadata.append(xml.decode() if isinstance(xml, bytes) else xml)
        self.server = self._make_server()

    def metadata(self) -> str:
        """The IdP's metadata XML (signing certificate, SSO and SLO endpoints)."""
        return str(entity_descriptor(self.server.config))

    # -- serving --------------------------------------------------------------------
    def stop(self) -> None:
        """Stop serving and remove the generated keys."""
        super().stop()
        self._tmp.cleanup()

    def __enter__(self) -> SamlIdp:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- SSO --------------------------------------------------------------------------
    def parse_authn_request(
        self, location_or_request: str, relay_state: str | None = None
    ) -> AuthnInfo:
        """Read an AuthnRequest (a Redirect-binding URL, or its SAMLRequest value)."""
        if location_or_request.startswith(("http://", "https://")):
            q = dict(parse_qsl(urlsplit(location_or_request).query))
            saml_request, relay_state = q["SAMLRequest"], q.get("RelayState", relay_state)
        else:
            saml_request = location_or_request
        req = self.server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT).message
        acs = req.assertion_consumer_service_url
        if not acs:
            acs = self.server.metadata.assertion_consumer_service(
                req.issuer.text, BINDING_HTTP_POST
            )[0]["location"]
        return AuthnInfo(req.id, req.issuer.text, acs, relay_state or None)

    def response_xml(
        self,
        user: str | IdpUser,
        *,
        in_response_to: str | None,
        acs_url: str,
        sp_entity_id: str,
        sign_response: bool | None = None,
        sign_assertion: bool | None = None,
        mutate: Callable[[ET.Element], Any] | None = None,
        encrypt_cert: str | None = None,
        sign_alg: str | None = None,
        digest_alg: str | None = None,
        key_file: str | Path | None = None,
    ) -> str:
        """A SAML Response for ``user`` (signed with this IdP's key unless told otherwise).

        ``mutate(root)`` edits the unsigned Response element tree before it is signed (so the
        edit is covered by a valid signature); ``key_file`` signs with another key (an attacker's).
        """
        u = self.users[user] if isinstance(user, str) else user
        sign_response = self.sign_response if sign_response is None else sign_response
        sign_assertion = self.sign_assertion if sign_assertion is None else sign_assertion
        sign_alg, digest_alg = sign_alg or self.sign_alg, digest_alg or self.digest_alg
        authn = {
            "class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
            "authn_auth": self.entity_id,
        }
        kwargs: dict[str, Any] = {}
        if encrypt_cert is not None:
            kwargs.update(
                encrypt_assertion=True,
                encrypt_cert_assertion=encrypt_cert,
                encrypt_assertion_self_contained=True,
            )
        needs_resign = mutate is not None or key_file is not None
        resp = self.server.create_authn_response(
            {k: list(v) for k, v in u.claims.items()},
            in_response_to,
            acs_url,
            sp_entity_id,
            userid=u.name_id,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=u.name_id),
            authn=authn,
            sign_response=sign_response and not needs_resign,
            sign_assertion=sign_assertion and not needs_resign and encrypt_cert is None,
            sign_alg=sign_alg,
            digest_alg=digest_alg,
            session_not_on_or_after=None,
            **({} if encrypt_cert is None else kwargs),
        )
        xml = str(resp)
        if needs_resign:
            xml = self._edit_and_sign(
                xml,
                mutate,
                sign_response,
                sign_assertion,
                sign_alg,
                digest_alg,
                str(key_file or self.key_file),
            )
        found = re.search(r'SessionIndex="([^"]+)"', xml)  # pysaml2 names the session itself
        session_index = found.group(1) if found else "_" + secrets.token_hex(16)
        with self._lock:
            self.sessions[session_index] = (
                next((n for n, v in self.users.items() if v is u), u.name_id),
                sp_entity_id,
                u.name_id,
            )
        return xml

    def _edit_and_sign(
        self,
        xml: str,
        mutate: Callable[[ET.Element], Any] | None,
        sign_response: bool,
        sign_assertion: bool,
        sign_alg: str,
        digest_alg: str,
        key_file: str,
    ) -> str:
        from saml2.sigver import pre_signature_part

        for prefix, uri in (
            ("samlp", "urn:oasis:names:tc:SAML:2.0:protocol"),
            ("saml", "urn:oasis:names:tc:SAML:2.0:assertion"),
            ("ds", "http://www.w3.org/2000/09/xmldsig#"),
        ):
            ET.register_namespace(prefix, uri)
        root = ET.fromstring(xml)  # noqa: S314 - our own document
        a_tag = "{urn:oasis:names:tc:SAML:2.0:assertion}Assertion"
        assertion = root.find(a_tag)
        if mutate is not None:
            mutate(root)
            assertion = root.find(a_tag)

        def template(el: ET.Element, number: int) -> None:
            sig = ET.fromstring(  # noqa: S314 - a signature template we build
                str(
                    pre_signature_part(
                        el.get("ID"),
                        None,
                        number,
                        sign_alg=sign_alg,
                        digest_alg=digest_alg,
                    )
                )
            )
            issuer = el.find("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer")
            index = list(el).index(issuer) + 1 if issuer is not None else 0
            el.insert(index, sig)

        if sign_assertion and assertion is not None:
            template(assertion, 1)
        if sign_response:
            template(root, 2)
        text = ET.tostring(root, encoding="unicode")
        if sign_assertion and assertion is not None:
            text = self.server.sec.sign_statement(
                text, class_name(Assertion()), key_file=key_file, node_id=assertion.get("ID")
            )
        if sign_response:
            text = self.server.sec.sign_statement(
                text, class_name(samlp.Response()), key_file=key_file, node_id=root.get("ID")
            )
        return str(text)

    @staticmethod
    def post_form(xml: str, relay_state: str | None = None) -> dict[str, str]:
        """The HTTP-POST binding's form fields for a response."""
        form = {"SAMLResponse": base64.b64encode(xml.encode()).decode()}
        if relay_state:
            form["RelayState"] = relay_state
        return form

    # -- SLO --------------------------------------------------------------------------
    def logout_request(
        self,
        session_index: str,
        destination: str,
        *,
        binding: str = "redirect",
        sign: bool = True,
        sign_alg: str | None = None,
        relay_state: str | None = None,
        issue_instant: str | None = None,
        all_sessions: bool = False,
    ) -> str | dict[str, str]:
        """An IdP-initiated LogoutRequest for IdP session ``session_index`` to an SP's SLO URL.

        ``binding="redirect"`` gives the URL (query-string signature when ``sign``);
        ``"post"`` gives the form fields (enveloped XML signature when ``sign``).
        ``all_sessions`` leaves the SessionIndex out: every session of that user ends.
        """
        user, sp_entity, name_id = self.sessions[session_index]
        alg = sign_alg or self.sign_alg
        req_id, req = self.server.create_logout_request(
            destination,
            sp_entity,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=name_id),
            session_indexes=None if all_sessions else [session_index],
            sign=(sign and binding == "post"),
            sign_alg=alg,
            digest_alg=self.digest_alg,
        )
        xml = str(req)
        if issue_instant is not None:
            xml = re.sub(r'IssueInstant="[^"]*"', f'IssueInstant="{issue_instant}"', xml, count=1)
            if sign and binding == "post":
                xml = self._resign_request(xml, alg)
        if binding == "post":
            form = {"SAMLRequest": base64.b64encode(xml.encode()).decode()}
            if relay_state:
                form["RelayState"] = relay_state
            return form
        return self._redirect(destination, "SAMLRequest", xml, relay_state, sign, alg)

    def _resign_request(self, xml: str, alg: str) -> str:
        root = ET.fromstring(xml)  # noqa: S314 - our own document
        for sig in root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature"):
            root.remove(sig)
        from saml2.sigver import pre_signature_part

        sig = ET.fromstring(  # noqa: S314 - a signature template we build
            str(
                pre_signature_part(
                    root.get("ID"),
                    None,
                    1,
                    sign_alg=alg,
                    digest_alg=self.digest_alg,
                )
            )
        )
        root.insert(1, sig)
        return str(
            self.server.sec.sign_statement(
                ET.tostring(root, encoding="unicode"),
                class_name(samlp.LogoutRequest()),
                key_file=str(self.key_file),
                node_id=root.get("ID"),
            )
        )

    def _redirect(
        self, destination: str, param: str, xml: str, relay_state: str | None, sign: bool, alg: str
    ) -> str:
        deflated = zlib.compress(xml.encode())[2:-4]
        args = [(param, base64.b64encode(deflated).decode())]
        if relay_state:
            args.append(("RelayState", relay_state))
        query = urlencode(args)
        if sign:
            query += "&" + urlencode({"SigAlg": alg})
            query += "&" + urlencode({"Signature": self._sign_bytes(query.encode(), alg)})
        return f"{destination}{'&' if '?' in destination else '?'}{query}"

    def _sign_bytes(self, data: bytes, alg: str) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        # SHA-1 only when a test asks for it, to check that it is refused
        digest = hashes.SHA1() if alg == SHA1 else hashes.SHA256()  # noqa: S303
        return base64.b64encode(key.sign(data, padding.PKCS1v15(), digest)).decode()

    def sessions_of(self, user: str) -> list[str]:
        """The IdP session indexes of ``user`` (newest last)."""
        with self._lock:
            return [si for si, (u, _, _) in self.sessions.items() if u == user]

    def _end_sessions(self, name_id: str) -> None:
        with self._lock:
            for si in [si for si, (_, _, n) in self.sessions.items() if n == name_id]:
                del self.sessions[si]

    def handle_slo(self, query: str) -> tuple[int, dict[str, str], str]:
        """An SP's LogoutRequest (answered with a LogoutResponse) or LogoutResponse, Redirect
        binding."""
        q = dict(parse_qsl(query))
        if "SAMLRequest" in q:
            req = self.server.parse_logout_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT)
            msg = req.message
            self.logouts_received.append(msg.name_id.text)
            self._end_sessions(msg.name_id.text)
            sp = msg.issuer.text
            dest = self.server.metadata.single_logout_service(sp, BINDING_HTTP_REDIRECT, "spsso")[
                0
            ]["location"]
            resp = self.server.create_logout_response(msg, [BINDING_HTTP_REDIRECT], sign=False)
            return (
                302,
                {
                    "Location": self._redirect(
                        dest, "SAMLResponse", str(resp), q.get("RelayState"), True, self.sign_alg
                    )
                },
                "",
            )
        if "SAMLResponse" in q:
            return (
                200,
                {"Content-Type": "text/html; charset=utf-8"},
                _page("Signed out", "<p>You are signed out.</p>"),
            )
        return 400, {"Content-Type": "text/plain"}, "no SAMLRequest or SAMLResponse"

    def sp_slo_urls(self) -> set[str]:
        """The Redirect-binding single logout URLs of the registered service providers."""
        md = self.server.metadata
        urls: set[str] = set()
        for sp in md.with_descriptor("spsso"):
            slo = md.single_logout_service(sp, BINDING_HTTP_REDIRECT, "spsso")
            urls.update(str(e["location"]) for e in slo)
        return urls

    def initiate_logout(self, user: str, sp_slo_url: str) -> str:
        """The URL that sends the browser to the SP with a signed LogoutRequest for ``user``.

        ``sp_slo_url`` must be a registered SP's single logout URL (else ``ValueError``): the
        IdP sends a browser only to a service provider it knows, never to any URL it is given.
        """
        if sp_slo_url not in self.sp_slo_urls():
            raise ValueError("not the single logout URL of a registered service provider")
        sessions = self.sessions_of(user)
        if not sessions:
            raise KeyError(f"{user} has no IdP session")
        url = self.logout_request(sessions[-1], sp_slo_url)
        assert isinstance(url, str)
        self._end_sessions(self.users[user].name_id)
        return url


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:28rem;margin:3rem auto}label{display:block;"
        "margin:.5rem 0}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


class _Handler(BaseHTTPRequestHandler):
    server_version = "qlikauth-saml-idp"

    # quiet: query strings carry SAML messages
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    @property
    def idp(self) -> SamlIdp:
        return self.server.idp  # type: ignore[attr-defined,no-any-return]

    def _send(self, status: int, headers: Mapping[str, str], body: str) -> None:
        data = body.encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        if parts.path == "/metadata":
            self._send(200, {"Content-Type": "application/samlmetadata+xml"}, self.idp.metadata())
        elif parts.path == "/sso":
            q = dict(parse_qsl(parts.query))
            try:
                self.idp.parse_authn_request(q.get("SAMLRequest", ""))
            except Exception:  # noqa: BLE001 - a demo IdP answers 400 to anything unreadable
                self._send(400, {"Content-Type": "text/plain"}, "unreadable AuthnRequest")
                return
            hidden = "".join(
                f"<input type='hidden' name='{k}' value='{html.escape(v, quote=True)}'>"
                for k, v in q.items()
                if k in ("SAMLRequest", "RelayState")
            )
            body = (
                "<form method='post' action='/sso/login'>"
                + hidden
                + "<label>User <input id='username' name='username' autofocus></label>"
                "<label>Password <input id='password' name='password' type='password'></label>"
                "<button id='submit' type='submit'>Sign in</button></form>"
                f"<p>Demo users: {', '.join(sorted(self.idp.users))} (password "
                "<code>demo</code>).</p>"
            )
            self._send(
                200, {"Content-Type": "text/html; charset=utf-8"}, _page("Local SAML IdP", body)
            )
        elif parts.path == "/slo":
            status, headers, body = self.idp.handle_slo(parts.query)
            self._send(status, headers, body)
        elif parts.path == "/logout":
            # IdP-initiated logout ends only the browser's own IdP session (the cookie set at
            # sign-in), and sends it only to a registered SP.
            q = dict(parse_qsl(parts.query))
            handle = self._browser_handle()
            if handle is None or self.idp.browsers.get(handle) != q.get("user"):
                self._send(
                    403,
                    {"Content-Type": "text/plain"},
                    "sign in at this IdP first: a browser ends only its own IdP session",
                )
                return
            try:
                url = self.idp.initiate_logout(q.get("user", ""), q.get("sp_slo", ""))
            except ValueError:
                self._send(
                    400,
                    {"Content-Type": "text/plain"},
                    "sp_slo is not the single logout URL of a registered service provider",
                )
                return
            except KeyError:
                self._send(404, {"Content-Type": "text/plain"}, "no such IdP session")
                return
            self.idp.browsers.pop(handle, None)
            self._send(302, {"Location": url, "Set-Cookie": self._session_cookie("", 0)}, "")
        else:
            self._send(404, {"Content-Type": "text/plain"}, "not found")

    _COOKIE = "qlikauth_idp_session"

    def _browser_handle(self) -> str | None:
        return read_cookie(self.headers.get("Cookie"), self._COOKIE)

    def _session_cookie(self, value: str, max_age: int | None = None) -> str:
        return session_cookie(
            self._COOKIE, value, secure=self.idp.base_url.startswith("https:"), max_age=max_age
        )

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/sso/login":
            self._send(404, {"Content-Type": "text/plain"}, "not found")
            return
        length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        user = self.idp.users.get(form.get("username", ""))
        if user is None or not secrets.compare_digest(user.password, form.get("password", "")):
            self._send(
                401,
                {"Content-Type": "text/html; charset=utf-8"},
                _page("Local SAML IdP", "<p>Wrong user or password.</p>"),
            )
            return
        try:
            info = self.idp.parse_authn_request(form.get("SAMLRequest", ""), form.get("RelayState"))
        except Exception:  # noqa: BLE001
            self._send(400, {"Content-Type": "text/plain"}, "unreadable AuthnRequest")
            return
        xml = self.idp.response_xml(
            form["username"],
            in_response_to=info.id,
            acs_url=info.acs_url,
            sp_entity_id=info.sp_entity_id,
        )
        fields = self.idp.post_form(xml, info.relay_state)
        inputs = "".join(
            f"<input type='hidden' name='{k}' value='{html.escape(v, quote=True)}'>"
            for k, v in fields.items()
        )
        body = (
            "<form id='saml' method='post' "
            f"action='{html.escape(info.acs_url, quote=True)}'>{inputs}"
            "<noscript><button type='submit'>Continue</button></noscript></form>"
            "<script>document.getElementById('saml').submit()</script>"
        )
        handle = secrets.token_urlsafe(32)
        with self.idp._lock:
            if len(self.idp.browsers) >= 10_000:
                self.idp.browsers.clear()  # a demo IdP: bounded, not clever
            self.idp.browsers[handle] = form["username"]
        headers = {
            "Content-Type": "text/html; charset=utf-8",
            "Set-Cookie": self._session_cookie(handle),
        }
        self._send(200, headers, _page("Signing in...", body))
