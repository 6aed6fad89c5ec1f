"""The portals the lifecycle matrix drives, written the way an integrator would, and a browser.

* :func:`make_flask_app`: one Flask portal with every way in: its own password sign-in
  (Flask-Login ``login_user``/``logout_user``, server-side sessions with Flask-Session as the
  example portals keep them), flask_qlikauth (``/qlik/login``, ``/qlik/module``, ``/qlik/logout``,
  SAML), ``flask_qlikauth.oidc.QlikOidc`` and the Qlik Cloud endpoints
  (``flask_qlikauth.cloud.cloud_blueprint``), so every way out is also checked for the user's
  Qlik Cloud access token.
* the Django portal: ``lifecycle_django_urls`` (Django's ``login()``/``logout()``, django_qlikauth's
  URLs and middleware), settings from :func:`django_settings`.
* :class:`Browser`: one browser = the framework's test client for the portal (cookies kept) + a
  ``requests`` session for the Qlik hubs (real TLS, verified against the site's root.pem), with
  the redirects between them followed as a browser would.

The two QPS nodes run on different host names (``localhost`` and ``127.0.0.1``, both in the
server certificate): browsers share cookies across the ports of one host, so two hubs on one host
name would overwrite each other's session cookie.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit

import requests

PORTAL = "https://portal.test"
SAML_BASE = PORTAL + "/qlik/saml/"
CLOUD_ISSUER = "https://portal.test"
OIDC_CLIENT = "matrix-web"
OIDC_SECRET = "matrix-secret-" + "m" * 40
PASSWORDS = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}
EMAIL = {"alice": "alice@example.com", "bob": "bob@example.com"}
#: The OpenID provider's subject of each test user (tests/peers/op_peer.py DEFAULT_ACCOUNTS).
OIDC_SUB = {"alice": "a1b2c3-alice", "bob": "d4e5f6-bob"}
#: The QPS timeout of the portals: small, so a hung node costs little; the emulator drops a hung
#: request a little later (never answers it), so a late answer cannot end a session behind the
#: test's back.
QPS_TIMEOUT = 0.3
HANG_SECONDS = 0.45
#: The OIDC session caps of the "idle" and "absolute" portal variants (seconds).
OIDC_CAP = 2.0


def saml_claims() -> dict[str, Any]:
    from qlikauth.emulator.saml_idp import DEMO_GROUPS, ENTRA_CLAIMS

    return {
        "USER_ID": ENTRA_CLAIMS["email"],
        "USER_ID_TRANSFORMS": ["lower"],
        "USER_DIRECTORY": "AZURE",
        "GROUP_NAMES": {guid: name for name, guid in DEMO_GROUPS.items()},
        "UNKNOWN_GROUPS": "refuse",
        "REQUIRED": [ENTRA_CLAIMS["email"]],
        "IDP": "the matrix IdP",
    }


@dataclass
class World:
    """Everything a case runs against (built by the ``world`` fixture in conftest.py)."""

    nodes: list[Any]
    tenant: Any
    cloud_key: Any
    idp: Any
    op: Any
    sink: Any
    redis: Any
    certs_dir: Any
    _flask: dict[tuple[str, str], Any] = field(default_factory=dict)
    _saml_sp_known: set[str] = field(default_factory=set)
    _django: dict[str, dict[str, Any]] = field(default_factory=dict)
    _probe: Any = None

    # -- between cases --------------------------------------------------------------------
    def clear_faults(self) -> None:
        for node in self.nodes:
            node.clear_faults("both")
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            self.redis.start()

    def reset(self) -> None:
        """Faults off, no tickets or sessions on any node, the shared store empty."""
        self.clear_faults()
        for node in self.nodes:
            node.state.clear()
        self.redis.flush()
        self.sink.tokens.clear()

    def end_provider_sessions(self) -> None:
        """The provider forgets alice's and bob's sessions (what reached the sink is dropped)."""
        for sub in OIDC_SUB.values():
            self.op.end_sessions(sub)
        self.sink.tokens.clear()

    def close(self) -> None:
        for app in self._flask.values():
            app.extensions["qlikauth"].runtime.close()

    # -- the nodes ------------------------------------------------------------------------
    def prefix(self, mode: str) -> str:
        return "tkt" if mode == "ticket" else "ses"

    def hub(self, node: int, mode: str) -> str:
        return self.nodes[node].hub_url_for(self.prefix(mode))

    def qlik_settings(self, mode: str) -> dict[str, Any]:
        prefix = self.prefix(mode)
        return {
            "QPS_NODES": ",".join(n.qps_url for n in self.nodes),
            "CERTS": str(self.certs_dir),
            "VIRTUAL_PROXY": prefix,
            "HUB_URL": self.nodes[0].hub_url_for(prefix),
            "NODE_HUB_URLS": ",".join(n.hub_url_for(prefix) for n in self.nodes),
            "MODE": mode,
            "TIMEOUT": QPS_TIMEOUT,
            "STATE_STORE": self.redis.url,
            "USER_DIRECTORY": "PORTAL",
        }

    def sessions_of(self, email: str) -> list[tuple[int, Any]]:
        """Every live proxy session of ``email`` (any directory, any virtual proxy) as (node,
        record)."""
        return [
            (i, s)
            for i, n in enumerate(self.nodes)
            for s in n.state.sessions()
            if s.user.user_id.lower() == email
        ]

    def live_users(self) -> set[str]:
        return {s.user.user_id.lower() for n in self.nodes for s in n.state.sessions()}

    def outstanding_tickets(self) -> int:
        return sum(n.state.outstanding_tickets for n in self.nodes)

    def hub_identity(self, cookie: tuple[str, str, str]) -> str | None:
        """Who the hub of the cookie's host says is signed in with only that cookie, or None."""
        domain, name, value = cookie
        node = next(n for n in self.nodes if host_of(n.hub_url) == domain)
        if self._probe is None:
            # One client that keeps no cookie of its own (each probe sends exactly one), so its
            # TLS connections are reused from probe to probe.
            from http.cookiejar import DefaultCookiePolicy

            self._probe = plain_session(self.certs_dir)
            self._probe.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        prefix = name.removeprefix("X-Qlik-Session-")
        r = self._probe.get(
            node.hub_url_for(prefix),
            headers={"Accept": "application/json", "Cookie": f"{name}={value}"},
            allow_redirects=False,
            timeout=10,
        )
        return r.json().get("userId", "").lower() if r.status_code == 200 else None

    # -- Qlik Cloud -----------------------------------------------------------------------
    def cloud_token_works(self, token: str) -> bool:
        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.tenant.root_pem)
        r = s.get(
            f"{self.tenant.url}/api/v1/users/me",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if r.status_code not in (200, 401):
            raise AssertionError(f"the tenant answered {r.status_code} to /users/me")
        return r.status_code == 200

    # -- the portals ----------------------------------------------------------------------
    def flask_app(self, mode: str, variant: str = "std") -> Any:
        key = (mode, variant)
        if key not in self._flask:
            self._flask[key] = make_flask_app(self, mode, variant)
        return self._flask[key]

    def oidc_settings(self, variant: str) -> dict[str, Any]:
        caps = {"std": (8 * 3600.0, 1800.0), "idle": (3600.0, OIDC_CAP), "absolute": (OIDC_CAP, 0)}[
            variant
        ]
        return {
            "ISSUER": self.op.issuer,
            "CLIENT_ID": OIDC_CLIENT,
            "CLIENT_SECRET": OIDC_SECRET,
            "REDIRECT_URI": f"{PORTAL}/oidc/callback",
            "CA_BUNDLE": self.op.ca_bundle,
            "SCOPES": "openid email profile groups",
            "POST_LOGOUT_REDIRECT_URI": f"{PORTAL}/",
            "FRONTCHANNEL_LOGOUT": True,
            "SESSION_MAX_AGE": caps[0],
            "SESSION_IDLE_TIMEOUT": caps[1],
            "CLAIMS": {"USER_ID": "email", "USER_DIRECTORY": "OIDC", "REQUIRED": ["email"]},
        }

    def trust_sp(self, metadata: str) -> None:
        if metadata not in self._saml_sp_known:
            self._saml_sp_known.add(metadata)
            self.idp.add_sp_metadata(metadata)


def host_of(url: str) -> str:
    return str(urlsplit(url).hostname)


def jar_domain(host: str) -> str:
    """The domain Python's cookie jar files a host-only cookie of ``host`` under (it adds
    ``.local`` to dotless names, and only sends such a cookie when it is filed that way)."""
    return host if "." in host else host + ".local"


def plain_session(certs_dir: Any) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would replace root.pem
    s.verify = str(certs_dir / "root.pem")
    return s


# -- the Flask portal -----------------------------------------------------------------------
def make_flask_app(world: World, mode: str, variant: str) -> Any:
    """The Flask portal (see the module docstring) for ``mode``; ``variant`` picks the OIDC caps."""
    from cachelib import SimpleCache
    from flask import Flask, redirect, request, session
    from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
    from flask_qlikauth import QlikAuth
    from flask_qlikauth.cloud import cloud_blueprint
    from flask_qlikauth.oidc import QlikOidc
    from flask_session import Session

    from qlikauth import QlikUser
    from qlikauth.cloud import (
        AccessTokenCache,
        CloudAccess,
        CloudJwtIssuer,
        OAuthClient,
        QlikCloud,
        UserProvisioner,
    )
    from qlikauth.web.cloud import CloudPortal
    from qlikauth.web.saml import saml_user

    app = Flask(f"lifecycle_{mode}_{variant}")
    app.config.update(
        SECRET_KEY="matrix-" + "s" * 40,
        TESTING=True,
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=SimpleCache(threshold=100_000),
        SESSION_PERMANENT=False,
        SESSION_COOKIE_NAME="portal_session",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        QLIKAUTH_LOGIN_URL="/login",
        QLIKAUTH_SAML={"BASE_URL": SAML_BASE, "IDP_METADATA": world.idp.metadata()},
        QLIKAUTH_CLAIMS=saml_claims(),
        QLIKAUTH_OIDC=world.oidc_settings(variant),
    )
    app.config.update({f"QLIKAUTH_{k}": v for k, v in world.qlik_settings(mode).items()})
    Session(app)

    class Account(UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    logins = LoginManager(app)
    sso_accounts: set[str] = set()

    @logins.user_loader
    def load_account(user_id: str) -> Account | None:
        return Account(user_id) if user_id in PASSWORDS or user_id in sso_accounts else None

    def portal_user(qlik_user: QlikUser) -> Account:
        # docs/flask.md, "SSO sign-in as a Flask-Login sign-in": the portal's own user for
        # an SSO sign-in
        sso_accounts.add(qlik_user.qualified_name)
        return Account(qlik_user.qualified_name)

    # Where flask_qlikauth can make an SSO sign-in a Flask-Login sign-in, this portal lets it.
    sso_login = (
        {"login_user_with": portal_user}
        if "login_user_with" in inspect.signature(QlikAuth).parameters
        else {}
    )
    qlik = QlikAuth(**sso_login)

    @qlik.user_loader
    def qlik_user() -> QlikUser | None:
        # Whoever signed in here: with SAML or OpenID Connect (the IdP's identity, as docs/flask.md
        # asks), else with the portal's password.
        sso = saml_user(session, qlik.runtime) or QlikOidc.current_user()
        if sso is not None:
            return sso
        if current_user.is_authenticated and current_user.id in PASSWORDS:
            return QlikUser("PORTAL", current_user.id, [("group", "Staff")])
        return None

    qlik.init_app(app)
    QlikOidc(app, **sso_login)
    cloud = QlikCloud(world.tenant.url, verify=world.tenant.root_pem)
    tokens = AccessTokenCache(cloud, OAuthClient("embed-client", client_secret="embed-secret"))
    issuer = CloudJwtIssuer(world.cloud_key, CLOUD_ISSUER)
    app.register_blueprint(
        cloud_blueprint(
            CloudPortal(
                access=CloudAccess(
                    tokens, UserProvisioner(cloud, issuer=issuer, store=tokens.store)
                )
            )
        )
    )

    @app.get("/")
    def home() -> str:
        return "home"

    @app.get("/whoami")
    def whoami() -> str:
        user = qlik.current_user()
        return user.qualified_name if user is not None else "nobody"

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        next_url = qlik.runtime.local_redirect(request.values.get("next"), "/")
        if request.method == "GET":
            return "the portal's login page"
        email = request.form.get("username", "").lower()
        if PASSWORDS.get(email) != request.form.get("password"):
            return "Unknown user or wrong password.", 401
        # Against session fixation: nothing from before survives, the session gets a new id.
        session.clear()
        login_user(Account(email))
        app.session_interface.regenerate(session)  # type: ignore[attr-defined]
        response = redirect(next_url)
        if qlik.runtime.config.mode == "session":
            response = qlik.start_session(response)  # docs/flask.md: right after your own login
        return response

    @app.post("/logout")
    def logout() -> Any:
        # The portal's own sign-out, as examples/flask_portal writes it.
        response = redirect("/login")
        try:
            qlik.end_sessions(response)
        finally:
            logout_user()
            session.clear()
        return response

    with app.test_client() as client:
        world.trust_sp(client.get("/qlik/saml/metadata", base_url=PORTAL).get_data(as_text=True))
    app.qlik = qlik  # type: ignore[attr-defined]
    return app


def django_settings(world: World, mode: str, sso: bool = False) -> dict[str, Any]:
    """The Django settings of the portal in ``mode`` (one QLIKAUTH object per portal:
    django_qlikauth
    keeps its runtime while the setting is the same object). ``sso``: SAML and OpenID Connect
    sign-ins are Django sign-ins too (``SsoBackend`` and its middleware)."""
    key = f"{mode}-sso" if sso else mode
    if key not in world._django:
        from django.conf import settings

        qlikauth = world.qlik_settings(mode)
        values: dict[str, Any] = {
            "ROOT_URLCONF": "lifecycle_django_urls",
            "LOGIN_URL": "/accounts/login/",
            "ALLOWED_HOSTS": ["portal.test"],
        }
        if sso:
            qlikauth.update(
                SAML={"BASE_URL": SAML_BASE, "IDP_METADATA": world.idp.metadata()},
                CLAIMS=saml_claims(),
                OIDC=world.oidc_settings("std"),
            )
            middleware = list(settings.MIDDLEWARE)
            middleware.insert(
                middleware.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
                "django_qlikauth.oidc.OidcSessionMiddleware",
            )
            middleware.insert(
                middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
                "django_qlikauth.middleware.SsoLoginMiddleware",
            )
            values.update(
                MIDDLEWARE=middleware,
                AUTHENTICATION_BACKENDS=[
                    "django_qlikauth.backends.SsoBackend",
                    "django.contrib.auth.backends.ModelBackend",
                ],
            )
        values["QLIKAUTH"] = qlikauth
        world._django[key] = values
    return world._django[key]


# -- one browser ------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    location: str | None
    set_cookies: list[str]
    text: str


class Browser:
    """One browser: the portal's test client and the hubs' cookie jar (see the module docstring)."""

    def __init__(self, world: World, framework: str, mode: str, variant: str = "std") -> None:
        self.world, self.framework, self.mode = world, framework, mode
        self.hub = plain_session(world.certs_dir)
        self.op_session = requests.Session()  # the browser's cookies at the OpenID provider
        self.history: list[str] = []
        if framework == "flask":
            self.app = world.flask_app(mode, variant)
            self.client = self.app.test_client()
        else:
            from django.test import Client

            self.app = None
            self.client = Client(HTTP_HOST="portal.test")

    # -- the portal -------------------------------------------------------------------------
    @property
    def runtime(self) -> Any:
        if self.app is not None:
            return self.app.extensions["qlikauth"].runtime
        from django_qlikauth.conf import get_runtime

        return get_runtime()

    def _answer(self, r: Any) -> Answer:
        if self.framework == "flask":
            a = Answer(
                r.status_code,
                r.headers.get("Location"),
                r.headers.getlist("Set-Cookie"),
                r.get_data(as_text=True),
            )
        else:
            cookies = [m.output(header="").strip() for m in r.cookies.values()]
            a = Answer(
                r.status_code, r.get("Location"), cookies, r.content.decode(errors="replace")
            )
        self._mirror(a.set_cookies)
        return a

    def _mirror(self, set_cookies: list[str]) -> None:
        """A proxy session cookie the portal sets is the hubs' (a site-wide cookie in
        production)."""
        for line in set_cookies:
            name, _, rest = line.partition("=")
            name = name.strip()
            if not name.startswith("X-Qlik-Session"):
                continue
            value = rest.split(";", 1)[0].strip().strip('"')
            for c in [c for c in self.hub.cookies if c.name == name]:
                self.hub.cookies.clear(c.domain, c.path, c.name)
            cleared = not value or "max-age=0" in rest.lower().replace(" ", "")
            if not cleared:
                for node in self.world.nodes:
                    self.hub.cookies.set(
                        name, value, domain=jar_domain(host_of(node.hub_url)), path="/"
                    )

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        self.history.append(f"GET {path.split('?')[0]}")
        if self.framework == "flask":
            return self._answer(self.client.get(path, base_url=PORTAL, headers=headers or {}))
        return self._answer(self.client.get(path, secure=True, headers=headers or {}))

    def post(
        self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        self.history.append(f"POST {path.split('?')[0]}")
        if self.framework == "flask":
            return self._answer(
                self.client.post(path, base_url=PORTAL, data=data or {}, headers=headers or {})
            )
        return self._answer(
            self.client.post(path, data=data or {}, secure=True, headers=headers or {})
        )

    def portal_cookie(self) -> tuple[str, str] | None:
        """The portal session cookie (name, value), or None."""
        name = "portal_session" if self.framework == "flask" else "sessionid"
        if self.framework == "flask":
            c = self.client.get_cookie(name, domain="portal.test")
            return (name, c.value) if c is not None else None
        morsel = self.client.cookies.get(name)
        return (name, morsel.value) if morsel is not None and morsel.value else None

    def set_portal_cookie(self, cookie: tuple[str, str]) -> None:
        if self.framework == "flask":
            self.client.set_cookie(cookie[0], cookie[1], domain="portal.test")
        else:
            self.client.cookies[cookie[0]] = cookie[1]

    def whoami(self) -> str:
        a = self.get("/whoami")
        assert a.status == 200, (a.status, a.text[:300])
        return a.text.strip().lower()

    # -- following redirects across the portal, the hubs and the module -----------------------
    def is_hub(self, url: str) -> bool:
        return any(url.startswith(n.hub_url) for n in self.world.nodes)

    def follow(self, location: str, hops: int = 10) -> tuple[str, Any]:
        """Follow ``location`` through the portal and the hubs; stop at an answer that is not a
        redirect, or at a redirect to anywhere else (an IdP). Returns (where, answer): ``hub`` with
        the hub's JSON identity answer (a requests response), ``portal`` with an :class:`Answer`,
        or ``away`` with the URL."""
        url = location
        for _ in range(hops):
            if url.startswith("/") or url.startswith(PORTAL):
                path = url[len(PORTAL) :] if url.startswith(PORTAL) else url
                a = self.get(path)
                if a.status in (301, 302, 303, 307) and a.location:
                    url = urljoin(PORTAL + path, a.location)
                    continue
                return "portal", a
            if self.is_hub(url):
                self.history.append(f"HUB {urlsplit(url).netloc}{urlsplit(url).path}")
                r = self.hub.get(
                    url, headers={"Accept": "application/json"}, allow_redirects=False, timeout=10
                )
                if r.is_redirect:
                    url = urljoin(url, r.headers["location"])
                    continue
                return "hub", r
            return "away", url
        raise AssertionError(f"too many redirects from {location}")

    def on_hub(self, location: str) -> str | None:
        """Follow ``location``; the user the hub then shows (lower case), or None (not on a hub)."""
        where, answer = self.follow(location)
        if where == "hub" and answer.status_code == 200:
            assert "json" in answer.headers.get("content-type", ""), (answer.url, answer.text[:300])
            return str(answer.json()["userId"]).lower()
        return None

    def hub_cookies(self) -> list[tuple[str, str, str]]:
        """The proxy session cookies this browser holds for the hubs (domain, name, value)."""
        return [
            (c.domain.removesuffix(".local"), c.name, c.value)
            for c in self.hub.cookies
            if c.name.startswith("X-Qlik-Session")
        ]

    # -- ways in ------------------------------------------------------------------------------
    def password(self, user: str, next_url: str | None = None) -> Answer:
        path = "/login" if self.framework == "flask" else "/accounts/login/"
        form = {"username": EMAIL[user], "password": PASSWORDS[EMAIL[user]]}
        if next_url:
            form["next"] = next_url
        a = self.post(path, data=form)
        assert a.status == 302, (a.status, a.text[:300])
        return a

    def open_qlik(self) -> str | None:
        """The portal's "Open Qlik Sense" link: ``/qlik/login``; who the hub shows afterwards."""
        return self.on_hub("/qlik/login")

    def deep_link(self, user: str, target: str | None) -> str | None:
        """``/qlik/login?target=...`` while signed out: the portal's login page, then the target."""
        a = self.get("/qlik/login" + ("?" + urlencode({"target": target}) if target else ""))
        assert a.status == 302 and a.location, (a.status, a.text[:300])
        nxt = dict(parse_qsl(urlsplit(a.location).query)).get("next")
        assert nxt, a.location
        return self.on_hub(self.password(user, nxt).location or "/")

    def module_way(self, user: str, hub: str) -> str | None:
        """A hub visit without a session: the hub's module redirect, the portal's login,
        the ticket."""
        url = hub
        for _ in range(10):
            if self.is_hub(url):
                r = self.hub.get(
                    url, headers={"Accept": "application/json"}, allow_redirects=False, timeout=10
                )
                self.history.append(f"HUB {urlsplit(url).netloc}{urlsplit(url).path}")
                if not r.is_redirect:
                    return str(r.json()["userId"]).lower() if r.status_code == 200 else None
                url = urljoin(url, r.headers["location"])
                continue
            path = url[len(PORTAL) :] if url.startswith(PORTAL) else url
            a = self.get(path)
            if a.status == 302 and a.location and urlsplit(a.location).path == "/login":
                nxt = dict(parse_qsl(urlsplit(a.location).query))["next"]
                a = self.password(user, nxt)
            assert a.status == 302 and a.location, (path, a.status, a.text[:300])
            url = urljoin(PORTAL + path, a.location)
        raise AssertionError("too many redirects in the module way in")

    def saml(
        self,
        user: str,
        target: str | None,
        session_index: str | None = None,
        not_on_or_after: float | None = None,
    ) -> str | None:
        """SAML sign-in through the IdP to ``target``; ``session_index`` reuses an IdP session,
        ``not_on_or_after`` sets SessionNotOnOrAfter (epoch seconds)."""
        idp = self.world.idp
        a = self.get("/qlik/saml/login" + ("?" + urlencode({"next": target}) if target else ""))
        assert a.status == 302 and a.location, (a.status, a.text[:300])
        info = idp.parse_authn_request(a.location)
        mutate = None
        if session_index is not None or not_on_or_after is not None:
            mutate = _authn_statement(session_index, not_on_or_after)
        xml = idp.response_xml(
            user,
            in_response_to=info.id,
            acs_url=info.acs_url,
            sp_entity_id=info.sp_entity_id,
            mutate=mutate,
        )
        a = self.post(
            "/qlik/saml/acs",
            data=idp.post_form(xml, info.relay_state),
            headers={"Origin": idp.base_url},
        )
        assert a.status == 302 and a.location, (a.status, a.text[:500])
        return self.on_hub(a.location)

    def oidc(self, user: str, target: str | None) -> str | None:
        """OpenID Connect sign-in at the real provider (this browser's provider cookies), to
        ``target``."""
        query = {"next" if target.startswith("/") else "target": target} if target else {}
        a = self.get("/oidc/login" + ("?" + urlencode(query) if query else ""))
        assert a.status == 302 and a.location, (a.status, a.text[:300])
        got = self.world.op.sign_in(a.location, user, session=self.op_session)
        parts = urlsplit(got["url"])
        assert not got.get("form_post"), got
        a = self.get(parts.path + ("?" + parts.query if parts.query else ""))
        assert a.status == 302 and a.location, (a.status, a.text[:500])
        return self.on_hub(a.location)

    def cloud_token(self) -> str:
        a = self.post(
            "/qlik/cloud/access-token", headers={"Origin": PORTAL, "Sec-Fetch-Site": "same-origin"}
        )
        assert a.status == 200, (a.status, a.text[:300])
        return a.text


def _authn_statement(session_index: str | None, not_on_or_after: float | None) -> Any:
    def mutate(root: Any) -> None:
        for el in root.iter("{urn:oasis:names:tc:SAML:2.0:assertion}AuthnStatement"):
            if session_index is not None:
                el.set("SessionIndex", session_index)
            if not_on_or_after is not None:
                el.set(
                    "SessionNotOnOrAfter",
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_on_or_after)),
                )

    return mutate


def logout_token_claims(token: str) -> dict[str, Any]:
    """The claims of a logout_token the provider sent (read only for iss and sid: the portal
    verifies)."""
    import base64

    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


__all__ = [
    "World",
    "Browser",
    "Answer",
    "make_flask_app",
    "django_settings",
    "logout_token_claims",
    "PORTAL",
    "SAML_BASE",
    "EMAIL",
    "OIDC_SUB",
    "OIDC_CAP",
    "HANG_SECONDS",
    "quote",
]
