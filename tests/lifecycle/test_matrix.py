"""The sign-in lifecycle matrix: every way in x mode x node health x ending, over the HTTP surface.

Ways in: the portal's own password sign-in (Flask-Login, Django ``login()``), ``/qlik/login`` as a
deep link, ``/qlik/module`` (a hub visit without a session), SAML and OpenID Connect. Modes:
ticket and session. Nodes: both healthy, or node 1 answering 500, refusing connections or hanging.
Node 1 is the first of QPS_NODES and holds the user's proxy session in both modes: a failing node
that is asked first and holds the session is the one that can stop an ending before the other
node, or strand a session-mode user. Endings: another user signs in in the same browser, and
every way out: the portal's sign-out, "sign out of Qlik only", SAML single logout (SP-initiated;
IdP-initiated through the browser and over another channel), SAML SessionNotOnOrAfter, OIDC
RP-initiated, back-channel and front-channel logout, and the OIDC idle and absolute caps.

Each case: alice signs in (all nodes healthy) and opens Qlik; in ticket mode she also opens node
2's hub (its module gives her a ticket there), so she has proxy sessions on both nodes; the Flask
portal also gives her a Qlik Cloud access token. Then the node fault, the ending, the fault cleared
and the runtime's ``finish_pending()`` when it has one (what a failing node could not end is kept
as pending and finished once it answers). Then, on every node and in every product:

* no proxy session of alice lives on any node, and none of her old hub cookies opens a hub;
* her portal cookie, copied before the ending, signs nobody in (after "sign out of Qlik only"
  she is still signed in to the portal: that is what it promises);
* her Qlik Cloud access token no longer works at the tenant;
* nothing is orphaned: no ticket minted and never redeemed, no one else's proxy session, no
  proxy session of the next user that his browser does not carry;
* another user: bob is signed in, and Qlik shows bob; with healthy nodes alice's sessions are gone
  the moment bob has signed in (before he opens Qlik);
* after an SSO way out: alice signing in again with the same IdP session (a new browser) does not
  bring the old portal cookie back.

Every check of a case runs; the case fails with the list of what did not hold. The run ends with a
counting summary ("lifecycle matrix": cases run, passed, failed, and how many cases each problem
failed); every case's problems are written to test-artifacts/lifecycle-matrix.json.

Size: 204 cases. password-flask, password-django and qlik-login: 2 modes x 4 node states x 3
endings (24 each); qlik-module: ticket mode only, 12; SAML: 2 x 4 x 7 endings, 56; OIDC: 2 x 4 x 8
endings, 64. The exclusions are spelled out in ``modes_for`` and ``endings_for``. More tests cover
what no ending reaches: a dead node strands nobody (session mode), cross-site navigations mint no
ticket, a user switch works with the shared store down, across ways in (alice by password, bob
by SAML, ...: 12 cases), and the Django portal's SSO sign-ins (SsoBackend; 24 cases, healthy nodes).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from _django_setup import configure_django
from lifecycle_apps import (
    EMAIL,
    HANG_SECONDS,
    OIDC_CAP,
    OIDC_SUB,
    PORTAL,
    QPS_TIMEOUT,
    SAML_BASE,
    Browser,
    World,
    django_settings,
)
from lifecycle_apps import logout_token_claims as token_claims

configure_django()

ALICE, BOB = EMAIL["alice"], EMAIL["bob"]

WAYS = ("password-flask", "password-django", "qlik-login", "qlik-module", "saml", "oidc")
MODES = ("ticket", "session")
NODES = ("healthy", "n1-500", "n1-refused", "n1-hung")
ENDINGS_ALL = ("next-user", "portal-signout", "qlik-logout")
ENDINGS_SAML = ("saml-slo-sp", "saml-slo-idp", "saml-slo-idp-browser", "saml-expiry")
ENDINGS_OIDC = (
    "oidc-rp-logout",
    "oidc-backchannel",
    "oidc-frontchannel",
    "oidc-idle-cap",
    "oidc-absolute-cap",
)


def modes_for(way: str) -> tuple[str, ...]:
    # /qlik/module is a ticket virtual proxy's authentication module: a session virtual proxy has
    # none (the portal sets its cookie), so there is no module way in in session mode.
    return ("ticket",) if way == "qlik-module" else MODES


def endings_for(way: str) -> tuple[str, ...]:
    # A protocol's own ways out (single logout, back-/front-channel logout, RP-initiated logout)
    # end a sign-in of that protocol: without a SAML sign-in there is no SAML session to log out,
    # without an OIDC sign-in no provider session for the provider to end. The caps are the SSO
    # session's: SAML has only an absolute one (SessionNotOnOrAfter), OIDC both; a password
    # sign-in's lifetime is the web framework's own session setting, not qlikauth's.
    if way == "saml":
        return ENDINGS_ALL + ENDINGS_SAML
    if way == "oidc":
        return ENDINGS_ALL + ENDINGS_OIDC
    return ENDINGS_ALL


# The Django portal is here for its own password sign-in (Django's login()/logout() and
# django_qlikauth's signal); its SAML endpoints are the same flows the Flask portal runs.
CASES = [
    pytest.param(way, mode, node, ending, id=f"{way}-{mode}-{node}-{ending}")
    for way in WAYS
    for mode in modes_for(way)
    for node in NODES
    for ending in endings_for(way)
]


@pytest.fixture(scope="module")
def django_users(world: World) -> None:
    from django.contrib.auth.models import User

    for name, email in EMAIL.items():
        user, _ = User.objects.get_or_create(username=email)
        user.set_password(f"{name}-pw")
        user.save()


def _fault(world: World, node: str) -> None:
    n1 = world.nodes[0]
    if node == "n1-500":
        n1.inject("error", port="both", status=500)
    elif node == "n1-refused":
        n1.inject("refuse", port="both")
    elif node == "n1-hung":
        # Dropped (never answered) a little after the portal's QPS timeout: a request to a hung
        # node does not take effect later behind the test's back.
        n1.inject("hang", port="both", seconds=HANG_SECONDS)
    elif node == "store-down":
        world.redis.stop()  # the shared store (Redis); World.clear_faults starts it again


def finish_pending(runtime: Any) -> None:
    """The node answers again: the runtime finishes what it kept pending, when it keeps anything.

    A runtime leaves a node that failed moments ago alone for UNHEALTHY_FOR; its alive check is how
    the portal sees the node answer again (``flask qlikauth check --alive`` does the same).
    """
    finish = getattr(runtime, "finish_pending", None)
    if not callable(finish):
        return
    runtime.qps.alive()
    finish()


class Case:
    """One run: the browser, what was seen before the ending, and what did not hold afterwards."""

    def __init__(
        self,
        world: World,
        way: str,
        mode: str,
        node: str,
        ending: str,
        next_way: str | None = None,
        framework: str | None = None,
    ) -> None:
        self.world, self.way, self.mode, self.node, self.ending = world, way, mode, node, ending
        self.next_way = next_way or way  # how the next user signs in (another user ending)
        self.framework = framework or ("django" if way == "password-django" else "flask")
        self.variant = {"oidc-idle-cap": "idle", "oidc-absolute-cap": "absolute"}.get(ending, "std")
        self.target = world.hub(0, mode) + "stream/matrix"
        self.problems: list[str] = []
        self.browser = self.new_browser()

    def new_browser(self) -> Browser:
        return Browser(self.world, self.framework, self.mode, self.variant)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    # -- ways in --------------------------------------------------------------------------------
    def sign_in(
        self, b: Browser, user: str, target: str | None = None, way: str | None = None, **saml: Any
    ) -> str | None:
        """``user`` signs in by ``way`` (this case's) and opens Qlik (at ``target``, else wherever
        the portal sends the browser); who the hub then shows."""
        way = way or self.way
        if way in ("password-flask", "password-django"):
            b.password(user)
            return b.open_qlik()
        if way == "qlik-login":
            return b.deep_link(user, target)
        if way == "qlik-module":
            return b.module_way(user, target or self.world.hub(0, self.mode))
        if way == "saml":
            return b.saml(user, target, **saml)
        return b.oidc(user, target)

    def next_user_signs_in(self) -> str | None:
        """bob signs in in alice's browser by this case's way; who Qlik then shows him. No target:
        the portal sends him to the hub of the node that signed him in (node 1 may be down)."""
        b, way = self.browser, self.next_way
        if way in ("saml", "oidc"):
            if way == "oidc":
                b.op_session = requests.Session()  # the provider's sign-in page: bob, not alice
            shown = self.sign_in(b, "bob", way=way)
            self.alice_gone_now("bob's SSO sign-in")
            return shown
        if way == "qlik-login":
            # "Not alice? Sign in": the portal's login page with /qlik/login as next
            shown = b.on_hub(b.password("bob", "/qlik/login").location or "/")
            self.alice_gone_now("bob's sign-in through /qlik/login")
            return shown
        b.password("bob")  # the portal's own login; alice's hub tab is still open
        self.alice_gone_now("bob's portal sign-in (before he opens Qlik)")
        return b.open_qlik()

    def alice_gone_now(self, when: str) -> None:
        """With healthy nodes the previous user's sessions end before the next user gets in."""
        if self.node != "healthy":
            return
        still = [c for c in self.hub_evidence if self.world.hub_identity(c) == ALICE]
        if still:
            self.problem(
                f"right after {when}, alice's hub session still answers as alice "
                f"({len(still)} of {len(self.hub_evidence)} hub cookies)"
            )
        elif self.world.sessions_of(ALICE):
            self.problem(
                f"right after {when}, a proxy session of alice lives (made at bob's sign-in?)"
            )

    # -- endings ---------------------------------------------------------------------------------
    def end(self) -> str | None:
        w, b, ending = self.world, self.browser, self.ending
        if ending == "next-user":
            return self.next_user_signs_in()
        if ending == "portal-signout":
            if self.framework == "flask":
                b.post(
                    "/logout", headers={"Origin": PORTAL}
                )  # logout_user() + QlikAuth.end_sessions
            else:
                b.post("/signout")  # django.contrib.auth.logout(): user_logged_out
        elif ending == "qlik-logout":
            b.post("/qlik/logout", data={"next": "/"}, headers={"Origin": PORTAL})
        elif ending == "saml-slo-sp":
            a = b.post("/qlik/saml/logout", data={"next": "/"}, headers={"Origin": PORTAL})
            if a.status == 302 and a.location and a.location.startswith(w.idp.base_url):
                _status, headers, _ = w.idp.handle_slo(urlsplit(a.location).query)
                back = headers.get("Location", "")
                if back.startswith(PORTAL):
                    b.get(back[len(PORTAL) :])
        elif ending == "saml-slo-idp":
            # IdP-initiated, POST binding, over another channel: no cookie of alice's
            # browser comes with it
            form = w.idp.logout_request(self.session_index, SAML_BASE + "slo", binding="post")
            self.new_browser().post("/qlik/saml/slo", data=form)
        elif ending == "saml-slo-idp-browser":
            # IdP-initiated, Redirect binding, through alice's browser (her portal
            # cookie comes with it)
            url = w.idp.logout_request(self.session_index, SAML_BASE + "slo")
            b.get(url[len(PORTAL) :])
        elif ending in ("saml-expiry", "oidc-idle-cap", "oidc-absolute-cap"):
            time.sleep(max(0.0, self.cap_at - time.time()))
            b.get("/")  # the browser's next request to the portal
        elif ending == "oidc-rp-logout":
            b.post("/oidc/logout", data={"next": "/"}, headers={"Origin": PORTAL})
        elif ending in ("oidc-backchannel", "oidc-frontchannel"):
            w.sink.tokens.clear()
            w.op.end_sessions(OIDC_SUB["alice"])  # the provider signs alice out everywhere
            tokens = list(w.sink.tokens)
            if not tokens:
                self.problem("the provider sent no logout_token (test setup)")
            for token in tokens:
                if ending == "oidc-backchannel":
                    self.new_browser().post(
                        "/oidc/backchannel-logout", data={"logout_token": token}
                    )
                else:
                    # the provider's logout page loads the portal's front-channel URI in alice's
                    # browser
                    claims = token_claims(token)
                    b.get(
                        "/oidc/frontchannel-logout?"
                        + urlencode({"iss": claims["iss"], "sid": claims.get("sid", "")})
                    )
        return None

    # -- the case ---------------------------------------------------------------------------------
    def run(self) -> None:
        w, b = self.world, self.browser
        if self.way == "oidc":
            w.end_provider_sessions()
        if self.way == "saml" and self.framework == "django":
            w.trust_sp(
                b.get("/qlik/saml/metadata").text
            )  # the IdP knows the Flask portal's already
        saml: dict[str, Any] = {}
        if self.ending == "saml-expiry":
            saml["not_on_or_after"] = float(int(time.time()) + 3)
            self.cap_at = saml["not_on_or_after"] + 0.2
        # Whatever the last case did to node 1, the portal knows it answers again (its node health).
        b.runtime.qps.alive()
        shown = self.sign_in(b, "alice", self.target, **saml)
        if self.ending in ("oidc-idle-cap", "oidc-absolute-cap"):
            self.cap_at = (
                time.time() + OIDC_CAP + 0.2
            )  # both caps count from the callback, before now
        assert shown == ALICE, f"alice's sign-in ({self.way}) ended on {shown!r}: {b.history[-6:]}"
        if self.mode == "ticket":
            # alice also opens node 2's hub: its authentication module gives her a ticket there
            shown = b.module_way("alice", self.world.hub(1, self.mode) + "stream/other")
            assert shown == ALICE, f"node 2's hub shows {shown!r}: {b.history[-6:]}"
        self.token = b.cloud_token() if self.framework == "flask" else None
        assert self.token is None or w.cloud_token_works(self.token)
        # the evidence: each hub cookie of alice's browser that opens a hub as alice now (session
        # mode's one cookie is the whole site's; only the node holding the session knows it)
        self.hub_evidence = [c for c in b.hub_cookies() if w.hub_identity(c) == ALICE]
        self.portal_cookie = b.portal_cookie()
        assert self.portal_cookie is not None
        copy = self.new_browser()  # the copy works before the ending: the replay checks something
        copy.set_portal_cookie(self.portal_cookie)
        assert copy.whoami().endswith("\\" + ALICE), self.portal_cookie[0]
        self.session_index = w.idp.sessions_of("alice")[-1] if self.way == "saml" else None
        before = {i for i, _ in w.sessions_of(ALICE)}
        assert before == ({0, 1} if self.mode == "ticket" else {0}), before
        assert len(self.hub_evidence) == len(before), (self.hub_evidence, b.hub_cookies())

        _fault(w, self.node)
        try:
            bob_shown = self.end()
        except (AssertionError, requests.RequestException) as exc:
            bob_shown = None
            self.problem(f"the ending did not complete: {type(exc).__name__}: {str(exc)[:300]}")
        if self.node == "n1-hung":
            # the last request the node held was given up QPS_TIMEOUT ago at least: once the node
            # has dropped it (never answered), clearing the fault cannot let it act late
            time.sleep(HANG_SECONDS - QPS_TIMEOUT + 0.1)
        w.clear_faults()
        finish_pending(b.runtime)
        self.check(bob_shown)

    def check(self, bob_shown: str | None) -> None:
        w = self.world
        left = w.sessions_of(ALICE)
        if left:
            nodes = sorted({i + 1 for i, _ in left})
            self.problem(f"{len(left)} proxy session(s) of alice still live on node(s) {nodes}")
        opened = [c for c in self.hub_evidence if w.hub_identity(c) == ALICE]
        if opened:
            self.problem(f"{len(opened)} of alice's old hub cookies still open the hub as alice")
        if self.token is not None and w.cloud_token_works(self.token):
            self.problem("alice's Qlik Cloud access token still works at the tenant")
        unredeemed = w.outstanding_tickets()
        if unredeemed:
            self.problem(f"{unredeemed} ticket(s) minted at QPS and never redeemed")
        expected = {BOB} if self.ending == "next-user" else set()
        others = w.live_users() - expected - {ALICE}
        if others:
            self.problem(f"proxy sessions of {sorted(others)} live on")
        if self.ending == "next-user":
            carried = {c[2] for c in self.browser.hub_cookies()}
            stray = [s for _, s in w.sessions_of(BOB) if s.session_id not in carried]
            if stray:
                self.problem(
                    f"{len(stray)} proxy session(s) of bob that his browser does not carry"
                )
            who = self.browser.whoami()
            if not who.endswith("\\" + BOB):
                self.problem(f"after bob signed in, the portal says {who!r}")
            if bob_shown != BOB:
                self.problem(f"bob opened Qlik and the hub showed {bob_shown!r}")
        if self.ending == "qlik-logout":
            who = self.browser.whoami()
            if not who.endswith("\\" + ALICE):
                self.problem(
                    f"'sign out of Qlik only' also ended the portal session (whoami: {who!r})"
                )
            return
        again = False
        if self.way in ("saml", "oidc") and self.ending != "next-user":
            again = self.sign_in_again()
        # Last, as one who copied alice's portal cookie before the ending would use it: once.
        replay = self.new_browser()
        replay.set_portal_cookie(self.portal_cookie)
        if replay.whoami().endswith("\\" + ALICE):
            self.problem(
                "alice's portal cookie, copied before the ending, still signs her in"
                + (
                    " (after she signed in again elsewhere with the same IdP session)"
                    if again
                    else ""
                )
            )

    def sign_in_again(self) -> bool:
        """alice signs in again in another browser with the same IdP session (SAML: its
        SessionIndex; OIDC: the provider session, when it still lives). True when that worked."""
        again = self.new_browser()
        try:
            if self.way == "saml":
                again.saml("alice", "/", session_index=self.session_index)
            else:
                again.op_session = self.browser.op_session
                again.oidc("alice", "/")
        except AssertionError:
            # a portal may refuse that IdP session for good: the old cookie cannot come back
            # then either
            return False
        return again.whoami().endswith("\\" + ALICE)


@pytest.mark.parametrize("way, mode, node, ending", CASES)
def test_lifecycle(
    fresh: World, django_users: None, way: str, mode: str, node: str, ending: str
) -> None:
    case = Case(fresh, way, mode, node, ending)
    with ExitStack() as stack:
        if case.framework == "django":
            from django.test import override_settings

            stack.enter_context(override_settings(**django_settings(fresh, mode)))
        case.run()
    assert not case.problems, "\n".join(case.problems)


# A sign-out in the browser while the shared store is down: every way out still ends every proxy
# session of alice (an SSO sign-in's are named by the store's registry; without it, all of the
# user's), and her browser is signed out of the portal.
STORE_DOWN = [
    pytest.param(way, mode, ending, id=f"{way}-{mode}-{ending}")
    for way, ending in (
        ("password-flask", "portal-signout"),
        ("saml", "saml-slo-sp"),
        ("oidc", "oidc-rp-logout"),
    )
    for mode in MODES
]


@pytest.mark.parametrize("way, mode, ending", STORE_DOWN)
def test_a_sign_out_with_the_shared_store_down(
    fresh: World, way: str, mode: str, ending: str
) -> None:
    case = Case(fresh, way, mode, "store-down", ending)
    case.run()
    who = case.browser.whoami()
    if who.endswith("\\" + ALICE):
        case.problem(f"the browser is still signed in to the portal ({who!r})")
    assert not case.problems, "\n".join(case.problems)


# -- two promises the matrix's endings do not reach
# --------------------------------------------------
@pytest.mark.parametrize("down", ["node-of-the-session", "the-other-node"])
def test_a_dead_node_strands_nobody(fresh: World, down: str) -> None:
    """Session mode: alice's remembered proxy session is on node 1. When node 1 refuses connections
    (nothing can be sent), opening Qlik gives her a session on node 2 (the old one ends once node 1
    answers again); when only node 2 is down, her session on node 1 is kept and she lands there."""
    w = fresh
    b = Browser(w, "flask", "session")
    b.runtime.qps.alive()
    b.password("alice")
    assert b.open_qlik() == ALICE
    assert {i for i, _ in w.sessions_of(ALICE)} == {0}
    w.nodes[0 if down == "node-of-the-session" else 1].inject("refuse", port="both")
    try:
        shown = b.open_qlik()
    except requests.RequestException as exc:  # sent to a hub that does not answer
        shown = f"no hub ({type(exc).__name__})"
    assert shown == ALICE, f"opening Qlik with {down} down: {shown!r}; {b.history[-3:]}"
    w.clear_faults()
    finish_pending(b.runtime)  # the session on the node that was down ends once it answers
    live = {i for i, _ in w.sessions_of(ALICE)}
    assert live == ({1} if down == "node-of-the-session" else {0}), live


@pytest.mark.parametrize("way", ["qlik-module", "oidc-login", "saml-login"])
def test_cross_site_navigation_mints_nothing(fresh: World, way: str) -> None:
    """Another site navigates a signed-in browser to a URL that would sign it into Qlik (the
    browser says ``Sec-Fetch-Site: cross-site`` along the whole redirect chain): five times. No
    ticket may be minted (five redeemed tickets are five proxy sessions, Qlik's limit per user)."""
    w = fresh
    b = Browser(w, "flask", "ticket")
    cross = {"Sec-Fetch-Site": "cross-site"}
    hub = w.hub(0, "ticket")
    if way == "qlik-module":
        b.password("alice")
    elif way == "oidc-login":
        w.end_provider_sessions()
        assert (
            b.oidc("alice", "/") is None
        )  # signed in to the portal; the provider session lives on
    else:
        assert b.saml("alice", "/") is None
    minted = sum(n.state.tickets_issued for n in w.nodes)
    for i in range(5):
        if way == "qlik-module":
            query = urlencode(
                {
                    "proxyRestUri": w.nodes[0].rest_uri_for("tkt"),
                    "targetId": f"00000000-0000-4000-8000-00000000000{i}",
                }
            )
            b.get("/qlik/module?" + query, headers=cross)
        elif way == "oidc-login":
            a = b.get("/oidc/login?" + urlencode({"target": hub}), headers=cross)
            if a.status == 302 and a.location and a.location.startswith(w.op.issuer):
                got = w.op.sign_in(
                    a.location, "alice", session=b.op_session
                )  # silent: the provider session lives
                parts = urlsplit(got["url"])
                b.get(f"{parts.path}?{parts.query}", headers=cross)
        else:
            a = b.get("/qlik/saml/login?" + urlencode({"next": hub}), headers=cross)
            if a.status == 302 and a.location and a.location.startswith(w.idp.base_url):
                info = w.idp.parse_authn_request(a.location)  # a silent IdP answers at once
                xml = w.idp.response_xml(
                    "alice",
                    in_response_to=info.id,
                    acs_url=info.acs_url,
                    sp_entity_id=info.sp_entity_id,
                )
                b.post(
                    "/qlik/saml/acs",
                    data=w.idp.post_form(xml, info.relay_state),
                    headers={"Origin": w.idp.base_url, **cross},
                )
    minted = sum(n.state.tickets_issued for n in w.nodes) - minted
    assert minted == 0, f"{minted} ticket(s) minted by five cross-site navigations ({way})"


def test_user_switch_with_the_shared_store_down(fresh: World) -> None:
    """Ticket mode: alice opened Qlik; the shared store (Redis) goes down; bob signs in at the
    portal in her browser and opens Qlik. The previous user's handle must not need the store: her
    sessions end, bob gets in, and no ticket is minted that is not delivered."""
    w = fresh
    b = Browser(w, "flask", "ticket")
    b.runtime.qps.alive()
    b.password("alice")
    assert b.open_qlik() == ALICE
    w.redis.stop()
    try:
        b.password("bob")
        try:
            shown = b.open_qlik()
        except (AssertionError, requests.RequestException) as exc:
            shown = f"refused: {str(exc)[:200]}"
    finally:
        w.redis.start()
    finish_pending(b.runtime)
    problems = []
    if w.sessions_of(ALICE):
        problems.append(f"{len(w.sessions_of(ALICE))} proxy session(s) of alice still live")
    if w.outstanding_tickets():
        problems.append(f"{w.outstanding_tickets()} ticket(s) minted and never redeemed")
    if shown != BOB:
        problems.append(f"bob opened Qlik with the store down and the hub showed {shown!r}")
    assert not problems, "\n".join(problems)


# alice signs in one way, bob another, in her browser: the previous-user rule holds across ways in
# (the Flask portal offers all of them; healthy nodes: the faults are the matrix's).
SWITCHES = [
    pytest.param(a, b, mode, id=f"{a}-then-{b}-{mode}")
    for a in ("password-flask", "saml", "oidc")
    for b in ("password-flask", "saml", "oidc")
    if a != b
    for mode in MODES
]


@pytest.mark.parametrize("first, then, mode", SWITCHES)
def test_user_switch_across_ways_in(fresh: World, first: str, then: str, mode: str) -> None:
    case = Case(fresh, first, mode, "healthy", "next-user", next_way=then)
    if "oidc" in (first, then) and first != "oidc":
        fresh.end_provider_sessions()
    case.run()
    assert not case.problems, "\n".join(case.problems)


# The Django portal's SSO sign-ins (SsoBackend: a SAML or OIDC sign-in is a Django sign-in, Django's
# logout() its portal sign-out) with healthy nodes: the node faults are the Flask portal's matrix
# (the same flows); the caps are left to it too (their waits would double).
DJANGO_SSO = [
    pytest.param(way, mode, ending, id=f"django-{way}-{mode}-{ending}")
    for way in ("saml", "oidc")
    for mode in MODES
    for ending in endings_for(way)
    if ending not in ("saml-expiry", "oidc-idle-cap", "oidc-absolute-cap")
]


@pytest.mark.parametrize("way, mode, ending", DJANGO_SSO)
def test_django_sso_lifecycle(
    fresh: World, django_users: None, way: str, mode: str, ending: str
) -> None:
    from django.test import override_settings

    case = Case(fresh, way, mode, "healthy", ending, framework="django")
    with override_settings(**django_settings(fresh, mode, sso=True)):
        case.run()
    assert not case.problems, "\n".join(case.problems)
