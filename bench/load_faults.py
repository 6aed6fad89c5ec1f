"""Load with faults: N sign-ins by M browsers through the Flask example portal while a node and
Redis die and come back; counts right sign-ins, clear refusals, hangs, mix-ups and orphans.

    .venv/bin/python bench/load_faults.py --sign-ins 1000 --browsers 50      # both modes, ~2 min
    .venv/bin/python bench/load_faults.py --sign-ins 200 --browsers 20 --modes ticket --json
    out.json

What runs (all on 127.0.0.1, every process started is stopped):

* two emulated QPS nodes + hubs (``EmulatorCluster``, one certificate set, the site-wide
  session count) in their own spawned process, so the load generator never starves them, and
  in that process qlikauth's local OpenID provider (``qlikauth.emulator.oidc_op``, over https
  with a certificate from the cluster's CA; users ``oidcNNN`` with one group each);
* a real ``redis-server`` holding qlikauth's shared state (``STATE_STORE``, sealed with
  ``STORE_KEYS``); the portal sessions are Flask-Session files, so killing Redis takes away
  qlikauth's store only;
* ``examples/flask_portal`` on ``gunicorn -w 3 --threads 8`` (``bench/storm_app.py``: the example
  with bench users ``bench000``..., each in its own group ``GroupNNN``), both nodes configured
  (``QPS_NODES``, ``NODE_HUB_URLS``);
* ``examples/sso_portal`` twice on gunicorn (``bench/saml_storm_app.py``), as ``--protocol saml``
  (virtual proxy ``sso``, every fifth browser) and as ``--protocol oidc`` (virtual proxy
  ``oidc``, the provider above, every fifth browser too);
* M browsers (``requests`` sessions with real cookie jars), each its own thread; every tenth is
  shared by two users who take turns in one cookie jar without signing out (the next one's
  sign-in must end the previous one's proxy sessions).

One sign-in: the login form, ``POST /login`` (next: ``/qlik/login``), ``/qlik/login`` (ticket
mode: the hub redeems the ticket; session mode: the proxy session cookie), then the hub's JSON:
who the hub says this browser is, with which groups. Half of the sign-ins of unshared browsers
end with ``POST /logout``. After a user switch, the previous user's proxy session cookie is shown
to the hub alone: it must not answer as the previous user. One SAML sign-in: ``/qlik/saml/login``,
the IdP's signed response, the ACS, the hub. One OIDC sign-in: ``/oidc/login``, the provider
(its login form, or single sign-on when the browser still has a provider session), the callback,
the hub; its sign-out is ``POST /oidc/logout`` and the provider's end-session URL.

Faults, by progress through the N sign-ins of a mode: at 20% node 1 crashes (``Emulator.crash``:
both ports closed, its tickets and proxy sessions lost), at 40% it restarts (empty), at 60% Redis
is SIGKILLed, at 80% a new ``redis-server`` starts on the same port (empty: no persistence).

Counts: ``right`` (the hub shows the browser's user, directory and group), ``refused`` (an error
status with a page that says what happened: qlikauth's error page), ``unclear`` (an error status
without one, or a 500), ``hung`` (a request that took over ``--hang`` seconds), ``mixups`` (the
hub shows another user), ``previous_alive`` (a previous user's proxy session still answering
after the switch), ``orphans`` (proxy sessions still alive on a node once every browser has
signed out and ``runtime.finish_pending()`` ran), and p50/p99 of the sign-ins per phase (before,
node down, node back, Redis down, Redis back).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import re
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT), str(ROOT / "integrations"), str(ROOT / "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _procs import ChildProcess, Gunicorn, free_port  # noqa: E402

PREFIX = "portal"
SAML_PREFIX = "sso"
OIDC_PREFIX = "oidc"
PHASES = ("before", "node_down", "node_back", "redis_down", "redis_back")
#: Fault points as a share of the mode's sign-ins: (share, action, phase from then on).
SCHEDULE = (
    (0.2, "crash", "node_down"),
    (0.4, "restart", "node_back"),
    (0.6, "kill_redis", "redis_down"),
    (0.8, "start_redis", "redis_back"),
)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# -- the emulator cluster, in its own process -------------------------------------------------
def cluster_main(
    conn: Any,
    module_port: int,
    saml_port: int = 0,
    oidc_port: int = 0,
    op: dict[str, Any] | None = None,
) -> None:
    """Two nodes and the local OpenID provider (``op``: its users and client, served over https
    with a certificate from the cluster's CA); answers ("crash", i), ("restart", i), "sessions",
    "stats" and "stop"."""
    import logging
    import shutil

    logging.disable(logging.CRITICAL)  # the hub logs every redemption at INFO
    from qlikauth.certgen import temporary_server_certificate
    from qlikauth.emulator import EmulatorCluster, VirtualProxy
    from qlikauth.emulator.oidc_op import OidcProvider, OpUser

    vp = VirtualProxy(
        prefix=PREFIX, method="ticket", module_uri=f"http://localhost:{module_port}/qlik/module"
    )
    sso = VirtualProxy(
        prefix=SAML_PREFIX, method="ticket", module_uri=f"http://localhost:{saml_port}/qlik/module"
    )
    oidc = VirtualProxy(
        prefix=OIDC_PREFIX, method="ticket", module_uri=f"http://localhost:{oidc_port}/qlik/module"
    )
    cluster = EmulatorCluster(
        nodes=2, host="localhost", bind="127.0.0.1", virtual_proxies=[vp, sso, oidc]
    )
    provider = tls_dir = None
    try:
        cluster.start()
        if op is not None:
            tls = temporary_server_certificate(cluster.certs_dir, prefix="qlikauth-load-op-")
            tls_dir = Path(tls[0]).parent
            provider = OidcProvider(
                tls=tls,
                ca_bundle=cluster.certs_dir / "root.pem",
                clients=[op["client"]],
                users={n: OpUser("demo", c) for n, c in op["users"].items()},
            ).start()
    except BaseException as exc:  # report instead of hanging the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        cluster.stop()
        return
    conn.send(
        {
            "qps_urls": cluster.qps_urls,
            "hub_urls": [n.hub_url_for(PREFIX) for n in cluster],
            "sso_hub_urls": [n.hub_url_for(SAML_PREFIX) for n in cluster],
            "oidc_hub_urls": [n.hub_url_for(OIDC_PREFIX) for n in cluster],
            "issuer": provider.issuer if provider else None,
            "certs_dir": str(cluster.certs_dir),
            "pid": os.getpid(),
        }
    )
    try:
        while True:
            try:
                cmd = conn.recv()
            except EOFError:
                return
            if cmd == "stop":
                return
            if isinstance(cmd, tuple) and cmd[0] == "crash":
                cluster[cmd[1]].crash()
                conn.send("ok")
            elif isinstance(cmd, tuple) and cmd[0] == "restart":
                cluster[cmd[1]].restart()
                conn.send("ok")
            elif cmd == "sessions":
                conn.send([[s.user.qualified_name for s in n.state.sessions()] for n in cluster])
            elif cmd == "stats":
                conn.send(
                    [
                        {
                            "qps_requests": n.state.qps_requests,
                            "tickets_issued": n.state.tickets_issued,
                            "tickets_redeemed": n.state.tickets_redeemed,
                        }
                        for n in cluster
                    ]
                )
            elif cmd == "op":
                # the provider sessions left, and how the portal answered its back-channel logouts
                conn.send(
                    {
                        "sessions_left": sorted(s.user for s in provider.sessions.values()),
                        "backchannel": dict(Counter(o for _, o in provider.logouts_sent)),
                    }
                    if provider
                    else {"sessions_left": [], "backchannel": {}}
                )
    finally:
        if provider is not None:
            provider.stop()
        if tls_dir is not None:
            shutil.rmtree(tls_dir, ignore_errors=True)
        cluster.stop()


class ClusterProcess(ChildProcess):
    def __init__(
        self, module_port: int, saml_port: int, oidc_port: int, op: dict[str, Any] | None
    ) -> None:
        super().__init__(
            "the emulator cluster", cluster_main, module_port, saml_port, oidc_port, op
        )
        self.qps_urls: list[str] = self.info["qps_urls"]
        self.hub_urls: list[str] = self.info["hub_urls"]
        self.sso_hub_urls: list[str] = self.info["sso_hub_urls"]
        self.oidc_hub_urls: list[str] = self.info["oidc_hub_urls"]
        self.issuer: str | None = self.info["issuer"]
        self.certs_dir = Path(self.info["certs_dir"])
        self._lock = threading.Lock()

    def ask(self, cmd: Any) -> Any:
        with self._lock:
            self._parent.send(cmd)
            return self._parent.recv()


# -- a browser -------------------------------------------------------------------------------
class Hung(Exception):
    """A request took longer than the hang limit."""


class Browser:
    """One cookie jar; ``users`` take turns in it (one user: an unshared browser)."""

    def __init__(self, index: int, users: list[str], portal: str, root: str, hang: float) -> None:
        import requests

        self.index = index
        self.users = users
        self.turn = 0
        self.portal = portal
        self.root = root
        self.hang = hang
        self.http = requests.Session()
        self.http.trust_env = False
        self.current: str | None = None  # who this browser's portal session is signed in as
        self.resent = 0  # requests sent again after the portal closed a kept-alive connection
        self.provider_form = False  # the last OIDC sign-in went through the provider's form

    def _req(self, method: str, url: str, **kw: Any) -> Any:
        import requests

        kw.setdefault("allow_redirects", False)
        if url.startswith("https:"):
            kw.setdefault("verify", self.root)
        t0 = time.perf_counter()
        try:
            try:
                r = self.http.request(method, url, timeout=(self.hang, self.hang), **kw)
            except requests.ConnectionError as exc:
                # gunicorn closes a kept-alive connection after 2 s idle (an SSO browser waits
                # that long at the IdP or the provider under load); when the close crosses the
                # next request, nothing was read and a browser sends it again on a new
                # connection. So does this one, once, at a portal (http here), and counts it.
                if not url.startswith("http:") or "RemoteDisconnected" not in repr(exc):
                    raise
                self.resent += 1
                r = self.http.request(method, url, timeout=(self.hang, self.hang), **kw)
        except requests.Timeout as exc:
            raise Hung(f"{method} {url.split('?')[0]}: no answer within {self.hang} s") from exc
        if time.perf_counter() - t0 > self.hang:
            raise Hung(f"{method} {url.split('?')[0]} took {time.perf_counter() - t0:.1f} s")
        return r

    def proxy_cookie(self) -> str | None:
        for c in self.http.cookies:
            if c.name == f"X-Qlik-Session-{PREFIX}":
                return c.value
        return None

    def sign_in(self, user: str) -> dict[str, Any]:
        """One sign-in; the outcome: kind in right/refused/unclear/mixup/node_gone, seconds."""
        import requests

        r = self._req("GET", f"{self.portal}/login?next=/qlik/login")
        m = _CSRF.search(r.text)
        if r.status_code != 200 or not m:
            return {"kind": "unclear", "detail": f"login form {r.status_code}"}
        t0 = time.perf_counter()
        r = self._req(
            "POST",
            f"{self.portal}/login",
            data={"csrf": m.group(1), "username": user, "password": "demo", "next": "/qlik/login"},
        )
        if r.status_code != 302:
            return self._refusal(r, "POST /login")
        self.current = user
        r = self._req("GET", self.portal + r.headers["Location"])
        if r.status_code != 302:
            return self._refusal(r, "/qlik/login")
        hub = r.headers["Location"]
        try:
            if "qlikTicket=" in hub:
                r = self._req("GET", hub)
                if r.status_code != 200:
                    return self._refusal(r, "hub redeeming the ticket")
            r = self._req("GET", hub.split("?", 1)[0], headers={"Accept": "application/json"})
        except requests.ConnectionError as exc:
            # Sent to a node that crashed between the portal's answer and the browser's visit.
            return {
                "kind": "node_gone",
                "detail": f"hub refused the connection ({exc.__class__.__name__})",
            }
        if r.status_code != 200:
            return self._refusal(r, "hub page")
        who = r.json()
        seconds = time.perf_counter() - t0
        shown = str(who.get("userId"))
        groups = [a.get("group") for a in who.get("attributes", []) if "group" in a]
        if shown != user:
            return {"kind": "mixup", "detail": f"{user} sees {shown}", "seconds": seconds}
        if who.get("userDirectory") != "PORTAL" or groups != [f"Group{user[5:]}"]:
            return {"kind": "mixup", "detail": f"{user}: attributes {groups}", "seconds": seconds}
        return {"kind": "right", "seconds": seconds}

    @staticmethod
    def _refusal(r: Any, step: str) -> dict[str, Any]:
        # qlikauth's error page (and the portal's own 4xx pages) say what happened; a 500 or an
        # empty body does not.
        text = r.text or ""
        clear = r.status_code != 500 and r.status_code >= 400 and len(text.strip()) > 40
        title = re.search(r"<title>([^<]{0,120})</title>", text)
        said = f" ({title.group(1).strip()})" if title else ""
        return {
            "kind": "refused" if clear else "unclear",
            "detail": f"{step}: {r.status_code}{said}",
            "status": r.status_code,
        }

    def saml_sign_in(self, user: str, idp: Any, saml_portal: str) -> dict[str, Any]:
        """A SAML sign-in at the SSO portal: its AuthnRequest, the IdP's signed answer (the
        IdP's work, not timed), the ACS, the hub. ``user`` is the IdP's user name."""

        r = self._req("GET", f"{saml_portal}/qlik/saml/login")
        if r.status_code != 302:
            return self._refusal(r, "SAML login")
        info = idp.parse_authn_request(r.headers["Location"])
        xml = idp.response_xml(
            user, in_response_to=info.id, acs_url=info.acs_url, sp_entity_id=info.sp_entity_id
        )
        form = idp.post_form(xml, info.relay_state)
        t0 = time.perf_counter()
        r = self._req("POST", f"{saml_portal}/qlik/saml/acs", data=form)
        if r.status_code != 302:
            return self._refusal(r, "SAML ACS")
        self.current = user
        where = r.headers["Location"]
        if where.startswith("/"):  # back to the portal: open Qlik from there
            r = self._req("GET", f"{saml_portal}/qlik/login")
            if r.status_code != 302:
                return self._refusal(r, "/qlik/login after SAML")
            where = r.headers["Location"]
        return self._at_hub(where, t0, user, "SSO", f"Group{user[4:]}")

    def _at_hub(
        self, where: str, t0: float, user: str, directory: str, group: str
    ) -> dict[str, Any]:
        """The hub step of an SSO sign-in: who the hub says ``user`` (an e-mail user id) is."""
        import requests

        try:
            if "qlikTicket=" in where:
                r = self._req("GET", where)
                if r.status_code != 200:
                    return self._refusal(r, "hub redeeming the ticket")
            r = self._req("GET", where.split("?", 1)[0], headers={"Accept": "application/json"})
        except requests.ConnectionError as exc:
            return {
                "kind": "node_gone",
                "detail": f"hub refused the connection ({exc.__class__.__name__})",
            }
        if r.status_code != 200:
            return self._refusal(r, "hub page")
        who = r.json()
        seconds = time.perf_counter() - t0
        shown = str(who.get("userId"))
        groups = [a.get("group") for a in who.get("attributes", []) if "group" in a]
        if shown != f"{user}@example.com":
            return {"kind": "mixup", "detail": f"{user} sees {shown}", "seconds": seconds}
        if who.get("userDirectory") != directory or groups != [group]:
            return {"kind": "mixup", "detail": f"{user}: attributes {groups}", "seconds": seconds}
        return {"kind": "right", "seconds": seconds}

    def oidc_sign_in(self, user: str, oidc_portal: str) -> dict[str, Any]:
        """An OpenID Connect sign-in at the OIDC portal: ``/oidc/login``, the provider (its login
        form, or single sign-on with the browser's provider session; not timed), the callback
        (the code redeemed, the id_token checked, the ticket), the hub. ``user``: the
        provider's user name."""
        r = self._req("GET", f"{oidc_portal}/oidc/login")
        if r.status_code != 302:
            return self._refusal(r, "OIDC login")
        r = self._req("GET", r.headers["Location"])
        self.provider_form = r.status_code == 200
        if self.provider_form:  # no provider session in this browser: its login form
            m = re.search(r'action="(/login\?tx=[^"]+)"', r.text)
            if not m:
                return {"kind": "unclear", "detail": "OIDC provider: no login form"}
            op = r.url.split("/auth", 1)[0]
            r = self._req(
                "POST",
                op + m.group(1).replace("&amp;", "&"),
                data={"username": user, "password": "demo"},
            )
        if r.status_code != 302:
            return self._refusal(r, "OIDC provider")
        callback = r.headers["Location"]
        if not callback.startswith(f"{oidc_portal}/oidc/callback?"):
            return {
                "kind": "unclear",
                "detail": f"OIDC provider sent the browser to {callback.split('?')[0]}",
            }
        t0 = time.perf_counter()
        r = self._req("GET", callback)
        if r.status_code != 302:
            return self._refusal(r, "OIDC callback")
        self.current = user
        return self._at_hub(r.headers["Location"], t0, user, "OIDC", f"Group{user[4:]}")

    def oidc_sign_out(self, oidc_portal: str) -> str:
        """The OIDC portal's sign-out (``POST /oidc/logout``: every proxy session ends), then the
        provider's end-session URL it sends the browser to (the provider session ends and the
        provider tells the portal over the back channel); its way back is not followed."""
        r = self._req(
            "POST",
            f"{oidc_portal}/oidc/logout",
            headers={"Origin": oidc_portal},
            data={"next": "/"},
        )
        self.current = None
        if r.status_code not in (302, 303):
            return f"oidc logout {r.status_code}"
        where = r.headers["Location"]
        if where.startswith("https:"):  # the provider's end-session endpoint
            r = self._req("GET", where)
            if r.status_code not in (200, 302):
                return f"provider end-session {r.status_code}"
        return "ok"

    def saml_sign_out(self, saml_portal: str) -> str:
        """The SSO portal's sign-out (``POST /qlik/saml/logout``: every proxy session ends, then
        the browser goes to the IdP, which is not followed here)."""
        r = self._req(
            "POST",
            f"{saml_portal}/qlik/saml/logout",
            headers={"Origin": saml_portal},
            data={"next": "/"},
        )
        self.current = None
        return "ok" if r.status_code in (302, 303) else f"saml logout {r.status_code}"

    def previous_answers_as(self, cookie: str | None, previous: str, hub: str) -> bool:
        """Does the hub still take ``cookie`` (the previous user's proxy session) as them?"""
        import requests

        if not cookie:
            return False
        r = requests.get(
            hub,
            verify=self.root,
            allow_redirects=False,
            timeout=self.hang,
            headers={"Accept": "application/json", "Cookie": f"X-Qlik-Session-{PREFIX}={cookie}"},
        )
        return r.status_code == 200 and str(r.json().get("userId")) == previous

    def sign_out(self) -> str:
        """``POST /logout`` with the page's CSRF token: "ok", or what went wrong."""
        r = self._req("GET", f"{self.portal}/")
        m = _CSRF.search(r.text)
        if not m:
            self.current = None
            return "ok"  # not signed in (the home page has no sign-out form)
        r = self._req("POST", f"{self.portal}/logout", data={"csrf": m.group(1)})
        self.current = None
        return "ok" if r.status_code == 302 else f"logout {r.status_code}"


# -- one mode -------------------------------------------------------------------------------
def run_mode(
    mode: str,
    sign_ins: int,
    browsers: int,
    workers: int,
    hang: float,
    shared_every: int,
    schedule: Any = SCHEDULE,
    think: float = 0.0,
    saml_every: int = 5,
    oidc_every: int = 5,
) -> dict[str, Any]:
    from _redis_server import RedisServer

    from qlikauth.bridges.saml import SamlServiceProvider, SamlSettings
    from qlikauth.emulator.saml_idp import ENTRA_CLAIMS, IdpUser, SamlIdp
    from qlikauth.web.runtime import build_runtime

    port, saml_port, oidc_port = free_port(), free_port(), free_port()
    portal, saml_portal = f"http://localhost:{port}", f"http://localhost:{saml_port}"
    oidc_portal = f"http://localhost:{oidc_port}"
    shared = [i for i in range(browsers) if shared_every and i % shared_every == shared_every - 1]
    saml = [
        i
        for i in range(browsers)
        if saml_every and i % saml_every == saml_every // 2 and i not in shared
    ]
    oidc = [
        i
        for i in range(browsers)
        if oidc_every
        and i % oidc_every == oidc_every // 2 + 1
        and i not in shared
        and i not in saml
    ]
    users_of: dict[int, list[str]] = {}
    n_users = 0
    for i in range(browsers):
        if i in saml:
            users_of[i] = [f"saml{i:03d}"]
            continue
        if i in oidc:
            users_of[i] = [f"oidc{i:03d}"]
            continue
        k = 2 if i in shared else 1
        users_of[i] = [f"bench{n_users + j:03d}" for j in range(k)]
        n_users += k
    guids = {f"saml{i:03d}": f"{i:08x}-0000-4000-8000-{i:012x}" for i in saml}
    idp_users = {
        name: IdpUser(
            "demo",
            f"{name}@example.com",
            {
                ENTRA_CLAIMS["email"]: [f"{name.capitalize()}@Example.com"],
                ENTRA_CLAIMS["groups"]: [guid],
            },
        )
        for name, guid in guids.items()
    }
    # The provider's users: an e-mail in mixed case (the mapping lowers it) and one group each.
    op_secret = secrets.token_urlsafe(32)
    op = {
        "users": {
            f"oidc{i:03d}": {
                "sub": f"sub-{i:03d}",
                "email": f"Oidc{i:03d}@Example.com",
                "email_verified": True,
                "name": f"Oidc {i}",
                "preferred_username": f"oidc{i:03d}",
                "groups": [f"Group{i:03d}"],
            }
            for i in oidc
        },
        "client": {
            "client_id": "load",
            "client_secret": op_secret,
            "redirect_uris": [f"{oidc_portal}/oidc/callback"],
            "post_logout_redirect_uris": [f"{oidc_portal}/oidc/logged-out"],
            "backchannel_logout_uri": f"{oidc_portal}/oidc/backchannel-logout",
        },
    }
    redis = RedisServer().start()
    store_keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    idp_lock = threading.Lock()
    phase = ["before"]
    faults: list[dict[str, Any]] = []
    tmp = tempfile.mkdtemp(prefix="qlikauth-load-")
    idp = SamlIdp(key_dir=os.path.join(tmp, "idp"), users=idp_users)
    try:
        with ClusterProcess(port, saml_port, oidc_port, op) as cluster:
            common = {
                "QPS_NODES": ",".join(cluster.qps_urls),
                "CERTS": str(cluster.certs_dir),
                "MODE": mode,
                "STATE_STORE": redis.url,
                "STORE_KEYS": store_keys,
                "TIMEOUT": "5",
                "CONNECT_TIMEOUT": "2",
                # The portals are plain http here: their cookies (the proxy session's in
                # session mode, qlikauth_seen) must come back to them as over https.
                "COOKIE_SECURE": "false",
            }
            settings = {
                **common,
                "HUB_URL": cluster.hub_urls[0],
                "NODE_HUB_URLS": ",".join(cluster.hub_urls),
                "VIRTUAL_PROXY": PREFIX,
            }
            env = {
                **os.environ,
                **{f"QLIKAUTH_{k}": v for k, v in settings.items()},
                "BENCH_USERS": str(n_users),
                "PORTAL_SECRET_KEY": secrets.token_hex(32),
                "PORTAL_SESSION_DIR": os.path.join(tmp, "sessions"),
            }
            saml_settings = {
                "BASE_URL": f"{saml_portal}/qlik/saml/",
                "IDP_METADATA": idp.metadata(),
                "ALLOW_HTTP": True,
                "BROWSER_COOKIE_SECURE": False,
            }
            idp.add_sp_metadata(
                SamlServiceProvider(SamlSettings.from_settings(saml_settings)).metadata()
            )
            claims = {
                "USER_ID": ENTRA_CLAIMS["email"],
                "USER_ID_TRANSFORMS": ["lower"],
                "USER_DIRECTORY": "SSO",
                "UNKNOWN_GROUPS": "refuse",
                "GROUP_NAMES": {g: f"Group{n[4:]}" for n, g in guids.items()},
            }
            saml_qlik = {
                **common,
                "HUB_URL": cluster.sso_hub_urls[0],
                "NODE_HUB_URLS": ",".join(cluster.sso_hub_urls),
                "VIRTUAL_PROXY": SAML_PREFIX,
            }
            config = Path(tmp) / "saml.json"
            config.write_text(
                json.dumps(
                    {
                        "secret_key": secrets.token_hex(32),
                        "http_portal": True,
                        "protocol": {"QLIKAUTH_SAML": saml_settings, "QLIKAUTH_CLAIMS": claims},
                        "qlik": {f"QLIKAUTH_{k}": v for k, v in saml_qlik.items()},
                    }
                )
            )
            saml_env = {
                **os.environ,
                "BENCH_SAML_CONFIG": str(config),
                "PORTAL_SESSION_DIR": os.path.join(tmp, "sso-sessions"),
            }
            oidc_settings = {
                "ISSUER": cluster.issuer,
                "CLIENT_ID": "load",
                "CLIENT_SECRET": op_secret,
                "REDIRECT_URI": f"{oidc_portal}/oidc/callback",
                "POST_LOGOUT_REDIRECT_URI": f"{oidc_portal}/oidc/logged-out",
                "CA_BUNDLE": str(cluster.certs_dir / "root.pem"),
                "SCOPES": "openid email profile groups",
                # plain http here: the browser-binding cookie cannot be Secure nor __Host-
                "COOKIE_SECURE": False,
                "COOKIE_NAME": "qlikauth-oidc",
                "CLAIMS": {
                    "USER_ID": "email",
                    "USER_ID_TRANSFORMS": ["lower"],
                    "USER_DIRECTORY": "OIDC",
                    "ATTRIBUTES": {"group": "groups"},
                    "REQUIRED": ["email"],
                },
            }
            oidc_qlik = {
                **common,
                "HUB_URL": cluster.oidc_hub_urls[0],
                "NODE_HUB_URLS": ",".join(cluster.oidc_hub_urls),
                "VIRTUAL_PROXY": OIDC_PREFIX,
            }
            oidc_config = Path(tmp) / "oidc.json"
            oidc_config.write_text(
                json.dumps(
                    {
                        "protocol_name": "oidc",
                        "secret_key": secrets.token_hex(32),
                        "http_portal": True,
                        "protocol": {"QLIKAUTH_OIDC": oidc_settings},
                        "qlik": {f"QLIKAUTH_{k}": v for k, v in oidc_qlik.items()},
                    }
                )
            )
            oidc_env = {
                **os.environ,
                "BENCH_SAML_CONFIG": str(oidc_config),
                "PORTAL_SESSION_DIR": os.path.join(tmp, "oidc-sessions"),
            }
            log(
                f"[{mode}] gunicorn -w {workers} --threads 8 on {portal}, SSO portals on "
                f"{saml_portal} (SAML) and {oidc_portal} (OIDC, provider {cluster.issuer}); "
                f"{browsers} browsers ({len(shared)} shared, {len(saml)} SAML, {len(oidc)} "
                f"OIDC), {sign_ins} sign-ins; nodes {cluster.qps_urls}; Redis {redis.url}"
            )
            portals = [
                Gunicorn(
                    "storm_app:app",
                    port,
                    workers=workers,
                    threads=8,
                    env=env,
                    ready_path="/login",
                    timeout=120,
                    ready_within=90,
                ),
                Gunicorn(
                    "saml_storm_app:app",
                    saml_port,
                    workers=2,
                    threads=8,
                    env=saml_env,
                    ready_path="/qlik/saml/metadata",
                    timeout=120,
                    ready_within=90,
                ),
                Gunicorn(
                    "saml_storm_app:app",
                    oidc_port,
                    workers=2,
                    threads=8,
                    env=oidc_env,
                    ready_path="/",
                    timeout=120,
                    ready_within=90,
                ),
            ]
            with contextlib.ExitStack() as running:
                for g in portals:  # booting side by side: the three import the same things
                    running.callback(g.close)
                    g.start()
                # at the end, all three are told to stop before each is waited for
                running.callback(lambda: [g.proc.terminate() for g in portals if g.proc])
                for g in portals:
                    g.wait_ready()
                root = str(cluster.certs_dir / "root.pem")
                started = [0]

                def next_ticket() -> str | None:
                    with lock:
                        if started[0] >= sign_ins:
                            return None
                        started[0] += 1
                        return phase[0]

                class LockedIdp:
                    """The IdP's answers one at a time (pysaml2's server is not shared)."""

                    def __getattr__(self, name: str) -> Any:
                        method = getattr(idp, name)

                        def call(*a: Any, **k: Any) -> Any:
                            with idp_lock:
                                return method(*a, **k)

                        return call

                locked_idp = LockedIdp()

                def browse(i: int) -> None:
                    b = Browser(i, users_of[i], portal, root, hang)
                    way = "saml" if i in saml else "oidc" if i in oidc else "password"

                    def sign_out() -> str:
                        if way == "saml":
                            return b.saml_sign_out(saml_portal)
                        if way == "oidc":
                            return b.oidc_sign_out(oidc_portal)
                        return b.sign_out()

                    rng = random.Random(i)
                    n = 0
                    while (ph := next_ticket()) is not None:
                        user = b.users[b.turn % len(b.users)]
                        b.turn += 1
                        previous = b.current if b.current not in (None, user) else None
                        old_cookie = b.proxy_cookie() if previous else None
                        t0 = time.perf_counter()
                        try:
                            out = (
                                b.saml_sign_in(user, locked_idp, saml_portal)
                                if way == "saml"
                                else b.oidc_sign_in(user, oidc_portal)
                                if way == "oidc"
                                else b.sign_in(user)
                            )
                        except Hung as exc:
                            out = {"kind": "hung", "detail": str(exc)}
                        except Exception as exc:  # counted and shown, never hidden
                            out = {"kind": "unclear", "detail": f"{type(exc).__name__}: {exc}"}
                        out.update(
                            phase=ph,
                            browser=i,
                            user=user,
                            way=way,
                            wall=time.perf_counter() - t0,
                            phase_end=phase[0],
                        )
                        if way == "oidc":
                            out["provider_form"] = b.provider_form
                        if previous and out["kind"] == "right":
                            try:
                                out["previous_alive"] = b.previous_answers_as(
                                    old_cookie, previous, cluster.hub_urls[0]
                                )
                            except Exception:  # the hub of node 1 down: not answering
                                out["previous_alive"] = False
                        with lock:
                            results.append(out)
                        n += 1
                        if think:
                            time.sleep(rng.uniform(0, 2 * think))
                        if len(b.users) == 1 and n % 2 == 0:
                            try:
                                sign_out()
                            except Exception:  # the final sign-out below counts failures
                                pass
                    try:
                        res = sign_out()
                    except Hung as exc:
                        res = f"hung: {exc}"
                    except Exception as exc:
                        res = f"{type(exc).__name__}: {exc}"
                    with lock:
                        final_signouts.append(res)
                        resent[0] += b.resent

                final_signouts: list[str] = []
                resent = [0]
                threads = [
                    threading.Thread(target=browse, args=(i,), daemon=True) for i in range(browsers)
                ]
                t_start = time.perf_counter()
                for t in threads:
                    t.start()
                for share, action, then in schedule:
                    while True:
                        with lock:
                            done = started[0]
                        if done >= share * sign_ins or not any(t.is_alive() for t in threads):
                            break
                        time.sleep(0.05)
                    t_fault = time.perf_counter() - t_start
                    # A fault's phase starts as it is set off and a recovery's once it is done:
                    # a sign-in under way while either happened (a crash, a restart take a
                    # moment) counts before the recovery and says "[by then ...]" in a refusal.
                    if action in ("crash", "kill_redis"):
                        with lock:
                            phase[0] = then
                    if action == "crash":
                        cluster.ask(("crash", 0))
                    elif action == "restart":
                        cluster.ask(("restart", 0))
                    elif action == "kill_redis":
                        assert redis.proc is not None
                        redis.proc.kill()
                        redis.proc.wait(10)
                        redis.proc = None
                    elif action == "start_redis":
                        redis.start()
                    with lock:
                        phase[0] = then
                    faults.append({"at": done, "action": action, "t_s": round(t_fault, 1)})
                    log(f"[{mode}] {action} after {done} sign-ins ({t_fault:.1f} s)")
                for t in threads:
                    t.join(600)
                wall = time.perf_counter() - t_start
                alive_before = cluster.ask("sessions")
                pending: Any = {}
                for name, conf in (("portal", settings), ("sso", saml_qlik), ("oidc", oidc_qlik)):
                    runtime = build_runtime(conf, secret=env["PORTAL_SECRET_KEY"])
                    try:
                        pending[name] = runtime.finish_pending().ended
                    except Exception as exc:  # the store still down: reported, orphans counted
                        pending[name] = f"{type(exc).__name__}"
                remaining = cluster.ask("sessions")
                stats = cluster.ask("stats")
                op_state = cluster.ask("op")
    finally:
        idp.stop()
        redis.cleanup()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return figures(
        mode,
        sign_ins,
        browsers,
        len(shared),
        results,
        final_signouts,
        faults,
        wall,
        alive_before,
        remaining,
        pending,
        stats,
        len(saml),
        len(oidc),
        op_state,
        resent[0],
    )


def figures(
    mode: str,
    sign_ins: int,
    browsers: int,
    shared: int,
    results: list[dict[str, Any]],
    final_signouts: list[str],
    faults: list[dict[str, Any]],
    wall: float,
    alive_before: list[list[str]],
    remaining: list[list[str]],
    pending: Any,
    stats: list[dict[str, Any]],
    saml_browsers: int = 0,
    oidc_browsers: int = 0,
    op_state: dict[str, Any] | None = None,
    resent: int = 0,
) -> dict[str, Any]:
    kinds = Counter(r["kind"] for r in results)
    per_phase: dict[str, Any] = {}
    for ph in PHASES:
        rows = [r for r in results if r["phase"] == ph]
        lat = [r["seconds"] for r in rows if r["kind"] == "right"]
        per_phase[ph] = {
            "sign_ins": len(rows),
            **{
                k: sum(1 for r in rows if r["kind"] == k)
                for k in ("right", "refused", "unclear", "hung", "mixup", "node_gone")
            },
            "p50_ms": round(pct(lat, 50) * 1000),
            "p99_ms": round(pct(lat, 99) * 1000),
            "by_way": {
                way: {
                    k: sum(1 for r in rows if r.get("way") == way and r["kind"] == k)
                    for k in ("right", "refused")
                }
                for way in ("password", "saml", "oidc")
            },
            # a sign-in that started in this phase and ran into the next fault says so
            "refusals": dict(
                Counter(
                    r["detail"]
                    + ("" if r.get("phase_end", ph) == ph else f" [by then {r['phase_end']}]")
                    for r in rows
                    if r["kind"] in ("refused", "unclear")
                ).most_common()
            ),
        }
    switches = [r for r in results if "previous_alive" in r]
    ways = {
        way: {
            k: sum(1 for r in results if r.get("way") == way and r["kind"] == k)
            for k in ("right", "refused", "unclear", "node_gone", "hung", "mixup")
        }
        for way in ("password", "saml", "oidc")
    }
    for way in ways:
        rows = [r for r in results if r.get("way") == way]
        ways[way]["sign_ins"] = len(rows)
        if way == "oidc":  # right ones through the provider's form / single sign-on
            ways[way]["right_by_form_sso"] = [
                sum(1 for r in rows if r["kind"] == "right" and r.get("provider_form") is f)
                for f in (True, False)
            ]
        ways[way]["refused_by_phase"] = dict(
            Counter(r["phase"] for r in rows if r["kind"] == "refused")
        )
    return {
        "mode": mode,
        "sign_ins": len(results),
        "browsers": browsers,
        "shared_browsers": shared,
        "saml_browsers": saml_browsers,
        "oidc_browsers": oidc_browsers,
        "ways": ways,
        "wall_s": round(wall, 1),
        "right": kinds["right"],
        "refused": kinds["refused"],
        "unclear": kinds["unclear"],
        "hung": kinds["hung"],
        "mixups": kinds["mixup"],
        "node_gone": kinds["node_gone"],
        "user_switches": len(switches),
        "previous_alive": sum(1 for r in switches if r["previous_alive"]),
        "final_signouts_failed": [s for s in final_signouts if s != "ok"][:5],
        "sessions_after_signouts": sum(len(n) for n in alive_before),
        "pending_finished": pending,
        "orphans": sum(len(n) for n in remaining),
        "orphan_users": sorted({u for n in remaining for u in n})[:10],
        # every OIDC browser ended with the provider's end-session: none of its sessions is left
        "op_sessions_left": (op_state or {}).get("sessions_left", []),
        "op_backchannel_logouts": (op_state or {}).get("backchannel", {}),
        "resent_after_keepalive_close": resent,
        "faults": faults,
        "phases": per_phase,
        "first_problems": [
            f"{r['phase']}/{r['user']}: {r['kind']}: {r.get('detail')}"
            for r in results
            if r["kind"] in ("unclear", "hung", "mixup")
        ][:5],
        "qps": stats,
    }


def table(res: dict[str, Any]) -> str:
    lines = [
        f"### {res['mode']} mode: {res['sign_ins']} sign-ins, {res['browsers']} browsers "
        f"({res['shared_browsers']} shared by two users, {res['saml_browsers']} signing in "
        f"with SAML, {res.get('oidc_browsers', 0)} with OpenID Connect), {res['wall_s']} s",
        "",
        "| phase | sign-ins | right | refused (clear page) | unclear | sent to a dead hub "
        "| hung | mix-ups | SAML right / refused | OIDC right / refused | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ph, p in res["phases"].items():
        w = p["by_way"]
        lines.append(
            f"| {ph} | {p['sign_ins']} | {p['right']} | {p['refused']} | {p['unclear']} "
            f"| {p['node_gone']} | {p['hung']} | {p['mixup']} "
            f"| {w['saml']['right']} / {w['saml']['refused']} "
            f"| {w['oidc']['right']} / {w['oidc']['refused']} "
            f"| {p['p50_ms']} | {p['p99_ms']} |"
        )
    ways = res["ways"]
    lines.append(
        f"| **all** | {res['sign_ins']} | {res['right']} | {res['refused']} "
        f"| {res['unclear']} | {res['node_gone']} | {res['hung']} | {res['mixups']} "
        f"| {ways['saml']['right']} / {ways['saml']['refused']} "
        f"| {ways['oidc']['right']} / {ways['oidc']['refused']} | | |"
    )
    lines += [
        "",
        f"User switches in shared browsers: {res['user_switches']}, previous user's "
        f"proxy session still answering: {res['previous_alive']}. Proxy sessions alive "
        f"after every browser signed out: {res['sessions_after_signouts']}; after "
        f"`finish_pending()` (ended {res['pending_finished']}): **{res['orphans']} "
        f"orphans**. Final sign-outs that failed: {len(res['final_signouts_failed'])}. "
        f"Provider sessions left: {len(res.get('op_sessions_left', []))}; the portal's "
        f"answers to the provider's back-channel logouts: "
        f"{res.get('op_backchannel_logouts', {})}. Portal requests sent again after "
        f"gunicorn closed the kept-alive connection: {res.get('resent_after_keepalive_close')}.",
    ]
    for way, w in res["ways"].items():
        lines.append(f"- {way}: {w}")
    for ph, p in res["phases"].items():
        if p["refusals"]:
            lines.append(f"- {ph} refusals: {p['refusals']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sign-ins", type=int, default=1000, help="sign-ins per mode")
    ap.add_argument("--browsers", type=int, default=50)
    ap.add_argument("--modes", default="ticket,session")
    ap.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    ap.add_argument("--hang", type=float, default=15.0, help="seconds after which a request hung")
    ap.add_argument("--shared-every", type=int, default=10, help="every n-th browser is shared")
    ap.add_argument(
        "--think",
        type=float,
        default=0.2,
        help="mean seconds a browser pauses between sign-ins (uniform, 0 to twice this)",
    )
    ap.add_argument(
        "--saml-every",
        type=int,
        default=5,
        help="every n-th browser signs in with SAML at the SSO portal (0: none)",
    )
    ap.add_argument(
        "--oidc-every",
        type=int,
        default=5,
        help="every n-th browser signs in with OpenID Connect at the OIDC portal (0: none)",
    )
    ap.add_argument("--no-faults", action="store_true", help="the same load without faults")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--no-assert", action="store_true", help="report, exit 0 regardless")
    args = ap.parse_args(argv)
    out = [
        run_mode(
            m.strip(),
            args.sign_ins,
            args.browsers,
            args.workers,
            args.hang,
            args.shared_every,
            () if args.no_faults else SCHEDULE,
            args.think,
            args.saml_every,
            args.oidc_every,
        )
        for m in args.modes.split(",")
        if m.strip()
    ]
    for res in out:
        print(table(res) + "\n", flush=True)
        if res["first_problems"]:
            print("first problems:", *res["first_problems"], sep="\n  ")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    bad = [f"{r['mode']}: {k}={r[k]}" for r in out for k in ("mixups", "hung", "orphans") if r[k]]
    if bad and not args.no_assert:
        print("FAILED: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
