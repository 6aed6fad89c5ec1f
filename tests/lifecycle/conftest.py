"""The world the lifecycle matrix runs in, started once per module and reset between cases.

* two emulated QPS nodes sharing one certificate set (an :class:`EmulatorCluster`: Qlik counts a
  user's sessions across the site), each with a ticket virtual proxy ``tkt`` (its authentication
  module is the portal's ``/qlik/module``) and a session virtual proxy ``ses``;
* an emulated Qlik Cloud tenant (JWT sign-in for ensure-user, an OAuth client for access tokens);
* the emulator's SAML IdP (pysaml2, unserved: the tests carry its messages like a browser would);
* the real OpenID provider (node ``oidc-provider``, tests/peers/op_peer.py) with one client whose
  back-channel logout URI is a sink of ours: the test hands the provider's logout_token on to the
  portal under test (Flask's test client is not a server the provider could call);
* a real ``redis-server`` as the portals' shared state store (flushed between cases).

:class:`World` is what a case sees; ``world.reset()`` puts everything back between cases.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PEERS = Path(__file__).resolve().parent.parent / "peers"
if str(PEERS) not in sys.path:
    sys.path.insert(0, str(PEERS))

from lifecycle_apps import (  # noqa: E402
    CLOUD_ISSUER,
    OIDC_CLIENT,
    OIDC_SECRET,
    PORTAL,
    World,
)
from op_peer import LogoutSink, OpenIDProvider, node_available  # noqa: E402


@pytest.fixture(scope="module")
def world(
    certs_dir: Path,
    portal_tls: tuple[Path, Path],
    redis_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    from qlikauth.emulator import Emulator, VirtualProxy
    from qlikauth.emulator.cloud import CloudTenant, JwtIdentityProvider, OAuthClientConfig
    from qlikauth.emulator.saml_idp import SamlIdp, write_self_signed
    from qlikauth.emulator.state import SiteSessions
    from qlikauth.jwtkeys import SigningKey

    why = node_available()
    if why:
        from _support import skip_or_fail

        skip_or_fail(why)
    cloud_key = SigningKey.generate("RS256", kid="matrix-portal-key")
    keys = tmp_path_factory.mktemp("matrix-saml")
    write_self_signed(keys, "idp")
    sink = LogoutSink(portal_tls)
    client = {
        "client_id": OIDC_CLIENT,
        "client_secret": OIDC_SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": [f"{PORTAL}/oidc/callback"],
        "post_logout_redirect_uris": [f"{PORTAL}/"],
        "backchannel_logout_uri": sink.url,
        "backchannel_logout_session_required": True,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    vps = [
        VirtualProxy(prefix="tkt", method="ticket", module_uri=f"{PORTAL}/qlik/module"),
        VirtualProxy(prefix="ses", method="session"),
    ]
    # Two nodes of one site (Qlik counts a user's sessions site-wide), on two host names: a browser
    # shares cookies across the ports of one host, so two hubs on one name would share a cookie.
    site = SiteSessions()
    nodes = [
        Emulator(
            certs_dir=certs_dir,
            host=host,
            bind="127.0.0.1",
            virtual_proxies=vps,
            site_sessions=site,
        )
        for host in ("localhost", "127.0.0.1")
    ]
    # The matrix signs in a few hundred times a minute: the tenant's rate limits (Qlik's, 100 a
    # minute) are off, where the emulated tenant has them.
    limits = {
        k: None
        for k in ("jwt_login_rate", "token_rate")
        if k in inspect.signature(CloudTenant).parameters
    }
    with (
        nodes[0],
        nodes[1],
        CloudTenant(
            jwt_idps=[JwtIdentityProvider(CLOUD_ISSUER, {cloud_key.kid: cloud_key.public_key})],
            oauth_clients=[
                OAuthClientConfig(
                    "embed-client",
                    client_secret="embed-secret",
                    allowed_origins=(PORTAL,),
                    scopes=("user_default",),
                )
            ],
            **limits,
        ) as tenant,
    ):
        idp = SamlIdp(key_dir=keys)
        op = OpenIDProvider(certs_dir, clients=[client]).start()
        w = World(
            nodes=nodes,
            tenant=tenant,
            cloud_key=cloud_key,
            idp=idp,
            op=op,
            sink=sink,
            redis=redis_server,
            certs_dir=certs_dir,
        )
        try:
            yield w
        finally:
            w.close()
            op.stop()
            idp.stop()
            sink.close()


@pytest.fixture
def fresh(world: World) -> Iterator[World]:
    """The world, reset before the case (faults cleared, nodes, store and provider sessions
    emptied)."""
    world.reset()
    yield world
    world.clear_faults()


# -- a counting summary of the matrix (no timings: it reads the same on a loaded machine) ----------
_OUTCOMES: dict[str, tuple[str, str]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if "tests/lifecycle/" not in item.nodeid.replace("\\", "/"):
        return
    case = item.nodeid.split("::", 1)[1]
    case = case.split("[", 1)[1].rstrip("]") if case.startswith("test_lifecycle[") else case
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        text = (
            str(report.longrepr.reprcrash.message)
            if report.failed and hasattr(report.longrepr, "reprcrash")
            else ""
        )
        _OUTCOMES[case] = (report.outcome, text)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _OUTCOMES:
        return
    from collections import Counter

    matrix = {c for c in _OUTCOMES if not c.startswith("test_")}
    failed = {c: t for c, (o, t) in _OUTCOMES.items() if o == "failed" and c in matrix}
    write = terminalreporter.write_line
    terminalreporter.section("lifecycle matrix")
    write(f"cases run: {len(matrix)}, passed: {len(matrix) - len(failed)}, failed: {len(failed)}")
    others = {c: o for c, (o, _) in _OUTCOMES.items() if c not in matrix}
    if others:
        bad = sorted(c for c, o in others.items() if o != "passed")
        write(
            f"other lifecycle tests: {len(others)}, passed: {len(others) - len(bad)}, failed: "
            f"{len(bad)}" + "".join(f"\n  failed: {c}" for c in bad)
        )
    kinds: Counter[str] = Counter()
    for text in failed.values():
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith(("assert", "+", "where")):
                continue
            kinds[_kind(line)] += 1
    for kind, n in kinds.most_common():
        write(f"  {n:4d} cases: {kind}")
    # every case's problems, for reading them side by side (test-artifacts/ is not committed)
    import json

    out = Path(__file__).resolve().parents[2] / "test-artifacts" / "lifecycle-matrix.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                c: {
                    "outcome": o,
                    "problems": [
                        ln.strip()
                        for ln in t.splitlines()
                        if ln.strip() and not ln.strip().startswith(("assert", "+"))
                    ],
                }
                for c, (o, t) in sorted(_OUTCOMES.items())
            },
            indent=1,
        )
    )
    write(f"each case's problems: {out}")


def _kind(line: str) -> str:
    """A problem line without its numbers (so equal problems count together)."""
    import re

    line = line.removeprefix("AssertionError: ")
    return re.sub(r"\[[0-9, ]+\]|\b\d+\b", "N", line)[:140]
