"""The one sign-in lifecycle (qlikauth.web.lifecycle) without a framework: two emulated nodes, real
TLS, each node fault switched on while the portal signs users in and out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from qlikauth import QlikUser
from qlikauth.store import MemoryStore
from qlikauth.web import build_runtime, flows, lifecycle
from qlikauth.web.flows import RedirectAnswer, WebRequest

ALICE = QlikUser("PORTAL", "alice", [("group", "Sales")])
BOB = QlikUser("PORTAL", "bob")
FAULTS = ("error", "refuse", "hang")


@pytest.fixture(scope="module")
def cluster(certs_dir: Any) -> Iterator[Any]:
    from qlikauth.emulator import EmulatorCluster, VirtualProxy

    with EmulatorCluster(
        nodes=2,
        certs_dir=certs_dir,
        virtual_proxies=[
            VirtualProxy("portal", method="ticket"),
            VirtualProxy("mashup", method="session"),
        ],
    ) as c:
        yield c


@pytest.fixture(autouse=True)
def healthy(cluster: Any) -> Iterator[None]:
    for node in cluster.nodes:
        node.clear_faults()
        node.state.clear()
    yield
    for node in cluster.nodes:
        node.clear_faults()


def runtime_for(cluster: Any, mode: str, store: Any = None) -> Any:
    prefix = "mashup" if mode == "session" else "portal"
    return build_runtime(
        {
            "QPS_NODES": [n.qps_url for n in cluster.nodes],
            "CERTS": str(cluster.nodes[0].certs_dir),
            "VIRTUAL_PROXY": prefix,
            "HUB_URL": cluster.nodes[0].hub_url_for(prefix),
            "MODE": mode,
            "NODE_HUB_URLS": [n.hub_url_for(prefix) for n in cluster.nodes],
            "USER_DIRECTORY": "PORTAL",
            "TIMEOUT": 0.5,
            # every call asks every node, so a node answers again as soon as its fault is cleared
            "UNHEALTHY_FOR": 0,
        },
        store=store if store is not None else MemoryStore(),
        secret="s" * 32,
    )


def session_on(cluster: Any, index: int, prefix: str, user: QlikUser) -> str:
    """A proxy session of ``user`` made on node ``index`` alone (another browser of the user)."""
    from qlikauth import QpsClient

    node = cluster.nodes[index]
    with QpsClient(node.qps_url, node.certs_dir, prefix) as qps:
        return qps.add_session(user).session_id


def live(cluster: Any, user: QlikUser) -> list[Any]:
    return [s for n in cluster.nodes for s in n.state.sessions(user=user)]


class Browser:
    """One browser: its cookies and its portal session, as the frameworks keep them."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.session: dict[str, Any] = {}

    def request(
        self, user: QlikUser | None, method: str = "GET", path: str = "/qlik/login", **kw: Any
    ) -> WebRequest:
        return WebRequest(
            method=method,
            path=path,
            host="portal.example",
            cookies=dict(self.cookies),
            session=self.session,
            user=user,
            **kw,
        )

    def keep(self, cookies: Any) -> None:
        for c in cookies:
            if c.deletes:
                self.cookies.pop(c.name, None)
            else:
                self.cookies[c.name] = c.value


def redeem(cluster: Any, location: str) -> None:
    """What the hub does with the ticket: a proxy session on the node that issued it."""
    import requests

    node = next(n for n in cluster.nodes if location.startswith(n.hub_url))
    requests.get(
        location, verify=str(node.certs_dir / "root.pem"), timeout=5, allow_redirects=False
    )


def open_qlik(cluster: Any, runtime: Any, browser: Browser, user: QlikUser) -> None:
    answer = flows.run(flows.login, browser.request(user), runtime)
    assert isinstance(answer, RedirectAnswer), answer
    browser.keep(answer.cookies)
    if runtime.config.mode == "ticket":
        redeem(cluster, answer.location)


@pytest.mark.parametrize("mode", ["ticket", "session"])
@pytest.mark.parametrize("fault", FAULTS)
def test_a_user_switch_with_a_failing_node_ends_the_previous_user_and_keeps_the_rest_pending(
    cluster: Any, mode: str, fault: str
) -> None:
    """alice has proxy sessions on both nodes; node 2 fails; bob signs in in her browser: bob gets
    in, alice is gone from node 1 now and from node 2 as soon as it answers again."""
    runtime = runtime_for(cluster, mode)
    browser = Browser()
    open_qlik(cluster, runtime, browser, ALICE)
    session_on(cluster, 1, runtime.config.virtual_proxy, ALICE)  # alice elsewhere, on node 2
    cluster.nodes[1].inject(fault)
    # the portal's own sign-in of bob in that browser: no store, no node 2 needed to switch
    cookies = flows.portal_signed_in(browser.request(BOB), runtime, BOB)
    browser.keep(cookies)
    assert [s for s in cluster.nodes[0].state.sessions(user=ALICE)] == []
    open_qlik(cluster, runtime, browser, BOB)
    assert runtime.pending.count() >= 1
    cluster.nodes[1].clear_faults()  # the node answers again
    done = runtime.finish_pending()
    assert done.complete and live(cluster, ALICE) == [] and runtime.pending.count() == 0
    assert live(cluster, BOB)


@pytest.mark.parametrize("way", ["ticket", "session", "session page view"])
def test_a_pending_sign_out_never_ends_the_next_sign_in_of_the_same_user(
    cluster: Any, way: str
) -> None:
    """alice signs out while node 2 fails (her session there stays pending); node 2 answers
    again and alice signs in anew on it: her new proxy session there outlives finishing the
    pending list, her old one does not."""
    mode = way.split()[0]
    runtime = runtime_for(cluster, mode)
    prefix = runtime.config.virtual_proxy
    old = session_on(cluster, 1, prefix, ALICE)
    cluster.nodes[1].inject("refuse")
    assert not lifecycle.sign_out(None, runtime, users=[ALICE], reason="test").complete
    assert runtime.pending.count() == 1
    cluster.nodes[1].clear_faults()
    cluster.nodes[0].inject("refuse")  # so that the new sign-in lands on node 2
    browser = Browser()
    if way == "session page view":
        browser.keep(flows.portal_signed_in(browser.request(ALICE), runtime, ALICE))
        browser.session.pop(flows.SESSION_KEY, None)  # a page view finds no proxy session
        outcome = flows.resume_session(browser.request(ALICE, path="/"), runtime)
        assert outcome.created
    else:
        open_qlik(cluster, runtime, browser, ALICE)
    (new,) = cluster.nodes[1].state.sessions(user=ALICE)
    assert new.session_id != old
    cluster.nodes[0].clear_faults()
    runtime.finish_pending()
    assert [s.session_id for s in live(cluster, ALICE)] == [new.session_id]
    assert runtime.pending.count() == 0


def test_a_pending_sign_out_is_kept_for_a_node_still_down_at_the_next_sign_in(cluster: Any) -> None:
    """The next sign-in cannot end alice's pending session on a node that is still down: it
    stays pending (nothing new is made there) and ends once the node answers."""
    runtime = runtime_for(cluster, "ticket")
    old = session_on(cluster, 1, "portal", ALICE)
    cluster.nodes[1].inject("refuse")
    lifecycle.sign_out(None, runtime, users=[ALICE], reason="test")
    browser = Browser()
    open_qlik(cluster, runtime, browser, ALICE)
    assert runtime.pending.count() == 1
    (new,) = cluster.nodes[0].state.sessions(user=ALICE)
    cluster.nodes[1].clear_faults()
    assert runtime.finish_pending().ended == 1
    assert [s.session_id for s in live(cluster, ALICE)] == [new.session_id] != [old]


@pytest.mark.parametrize("fault", FAULTS)
def test_sign_out_goes_past_a_failing_node(cluster: Any, fault: str) -> None:
    """A node answering 5xx, refusing or hanging does not stop the sign-out on the others."""
    runtime = runtime_for(cluster, "ticket")
    session_on(cluster, 0, "portal", ALICE)
    session_on(cluster, 1, "portal", ALICE)
    cluster.nodes[0].inject(fault)  # the FIRST node fails: the second must still be asked
    done = lifecycle.sign_out(None, runtime, users=[ALICE], reason="test")
    assert not done.complete and [f.node for f in done.report.failed] == [cluster.nodes[0].qps_url]
    assert cluster.nodes[1].state.sessions(user=ALICE) == []
    cluster.nodes[0].clear_faults()
    # (a hung node may still act on the delete it held once it is released: either way it ends)
    assert runtime.finish_pending().complete and live(cluster, ALICE) == []
    assert runtime.pending.count() == 0


def test_a_remembered_session_on_a_dead_node_is_replaced_on_one_that_answers(cluster: Any) -> None:
    runtime = runtime_for(cluster, "session")
    browser = Browser()
    open_qlik(cluster, runtime, browser, ALICE)
    first = browser.session[flows.SESSION_KEY]
    holder = next(n for n in cluster.nodes if n.qps_url == first["node"])
    holder.inject("refuse")
    open_qlik(cluster, runtime, browser, ALICE)  # /qlik/login confirms the session
    second = browser.session[flows.SESSION_KEY]
    assert second["sid"] != first["sid"] and second["node"] != first["node"]
    assert browser.cookies[runtime.session.cookie_name] == second["sid"]
    holder.clear_faults()
    runtime.finish_pending()
    assert [s.session_id for s in live(cluster, ALICE)] == [second["sid"]]


def test_the_previous_user_cookie_needs_no_store_and_cannot_be_forged(cluster: Any) -> None:
    from qlikauth.exceptions import StoreUnavailable

    class DownStore(MemoryStore):
        """A store that cannot be reached (Redis down), for every call."""

        def _down(self, *args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("the test's store is down")

        get = put = add = take = delete = _down  # type: ignore[assignment]

    runtime = runtime_for(cluster, "ticket", store=DownStore())
    browser = Browser()
    open_qlik(cluster, runtime, browser, ALICE)
    assert live(cluster, ALICE)
    open_qlik(cluster, runtime, browser, BOB)  # the store is down: the switch works all the same
    assert live(cluster, ALICE) == [] and live(cluster, BOB)
    # a cookie another secret sealed, or a damaged one, names nobody
    other = runtime_for(cluster, "ticket")
    other.secret = b"x" * 32
    assert lifecycle.seen_user(other, browser.cookies[lifecycle.SEEN_COOKIE]) is None
    assert lifecycle.seen_user(runtime, browser.cookies[lifecycle.SEEN_COOKIE][:-2] + "AA") is None
    assert lifecycle.seen_user(runtime, browser.cookies[lifecycle.SEEN_COOKIE]).key == BOB.key


def test_an_sso_sign_out_with_the_store_down_ends_every_proxy_session_of_the_user(
    cluster: Any,
) -> None:
    """Which proxy sessions an IdP session made is in the store: with the store down, the SSO
    sign-out ends every proxy session of the browser's user instead, on every node."""
    from qlikauth.bridges.registry import SsoKey
    from qlikauth.exceptions import StoreUnavailable

    class RegistryDown(MemoryStore):
        """The registry's reads fail; the rest of the store answers."""

        def take(self, *args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("the test's store is down")

        get = take  # type: ignore[assignment]

    runtime = runtime_for(cluster, "ticket", store=RegistryDown())
    for index in (0, 1):
        session_on(cluster, index, "portal", ALICE)
    key = SsoKey("https://idp.example", "alice-subject", "s1")
    browser = Browser()
    browser.session[lifecycle.SIGNIN_KEY] = {
        "id": "x",
        "user": ALICE.to_qps(),
        "via": "saml",
        "sso": {"issuer": key.issuer, "subject": key.subject, "session": key.session},
    }
    done = lifecycle.sign_out_sso(browser.request(ALICE), runtime, key, reason="test")
    assert done.report.complete and live(cluster, ALICE) == []
    assert lifecycle.SIGNIN_KEY not in browser.session


def test_a_revoked_sign_in_never_comes_back(cluster: Any) -> None:
    """A copy of the portal session taken before sign-out is refused, in another process too,
    and a new sign-in of the same person does not revive it."""
    store = MemoryStore()
    runtime = runtime_for(cluster, "ticket", store=store)
    browser = Browser()
    flows.portal_signed_in(browser.request(ALICE), runtime, ALICE)
    copied = dict(browser.session)
    flows.portal_signed_out(browser.request(ALICE), runtime, ALICE)
    assert lifecycle.SIGNIN_KEY not in browser.session
    flows.portal_signed_in(browser.request(ALICE), runtime, ALICE)  # the same person again
    elsewhere = runtime_for(cluster, "ticket", store=store)  # another portal process
    assert lifecycle.current_sign_in(copied, elsewhere) is None and copied == {}
    assert lifecycle.current_sign_in(browser.session, elsewhere) is not None
    answer = flows.run(
        flows.login,
        WebRequest("GET", "/qlik/login", session=dict(copied), user=ALICE, host="portal.example"),
        runtime,
    )
    assert isinstance(answer, RedirectAnswer)  # no record: a fresh sign-in, not the revoked one


def test_an_idp_session_end_is_kept(cluster: Any) -> None:
    """SessionNotOnOrAfter passed: the sign-in ends (and its Qlik sessions) at the next look."""
    import time

    from qlikauth.bridges.registry import SsoKey

    runtime = runtime_for(cluster, "ticket")
    browser = Browser()
    login = lifecycle.VerifiedLogin(
        ALICE, via="saml", sso=SsoKey("https://idp", "alice", "_s1"), expires=time.time() + 60
    )
    signed = lifecycle.sign_in(browser.request(ALICE), runtime, login, open_qlik=True)
    redeem(cluster, str(signed.location))
    assert live(cluster, ALICE)
    assert lifecycle.current_sign_in(browser.session, runtime) is not None
    assert lifecycle.current_sign_in(browser.session, runtime, now=time.time() + 61) is None
    assert live(cluster, ALICE) == []


def test_the_previous_user_cookie_works_on_an_http_development_portal(cluster: Any) -> None:
    """Over plain http a browser drops a Secure cookie silently: the cookie is not Secure there,
    and is Secure over https as COOKIE_SECURE says."""
    runtime = runtime_for(cluster, "ticket")
    for scheme, secure in (("http", False), ("https", True)):
        request = WebRequest(
            "GET", "/qlik/login", host="portal.test", scheme=scheme, session={}, user=ALICE
        )
        answer = flows.run(flows.login, request, runtime)
        [seen] = [c for c in answer.cookies if c.name == lifecycle.SEEN_COOKIE]
        assert seen.secure is secure and seen.http_only and seen.samesite == "Lax"


def test_two_portals_sharing_a_store_each_finish_their_own_pending_endings(cluster: Any) -> None:
    # Two portals (two virtual proxies of the same nodes) share one store, as one Redis for a
    # site. Node 1 is down while the ticket portal signs alice out: her session there is kept
    # pending. The session-mode portal's scheduled finish_pending() runs first once the node is
    # back: it must not take (and lose) the ticket portal's pending work.
    store = MemoryStore()
    tickets, sessions = (
        runtime_for(cluster, "ticket", store),
        runtime_for(cluster, "session", store),
    )
    session_on(cluster, 0, "portal", ALICE)
    cluster.nodes[0].inject("refuse")
    done = lifecycle.sign_out(None, tickets, users=[ALICE], reason="test")
    assert not done.complete and tickets.pending.count() == 1
    cluster.nodes[0].clear_faults()
    sessions.finish_pending()  # the other portal's job, on its own virtual proxy ("mashup")
    tickets.finish_pending()
    assert live(cluster, ALICE) == [], "alice's proxy session on node 1 was orphaned"
