"""Several QPS nodes behind nginx: sticky per user, and upstream TLS verified against root.pem."""

from __future__ import annotations

import pytest
import requests
from _support import free_port_number as free_port
from _support import skip_or_fail

from qlikauth.certgen import generate_certificates, issue_server_certificate

from .conftest import HEADER, front_block
from .helpers import Recorder, second_loopback_name
from .test_front import _portal_app, start_wsgi

pytestmark = pytest.mark.nginx

USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]


@pytest.fixture(scope="module")
def portal():
    srv, port = start_wsgi(_portal_app())
    yield port
    srv.shutdown()


def _cookie(pport: int, user: str) -> str:
    s = requests.Session()
    s.get(f"http://localhost:{pport}/login", params={"user": user}, timeout=5).raise_for_status()
    return f"session={s.cookies['session']}"


@pytest.fixture(scope="module")
def second_name():
    return second_loopback_name()


@pytest.fixture(scope="module")
def nodes(certs, second_name, tmp_path_factory):
    d = tmp_path_factory.mktemp("nodes")
    names = ["localhost", "127.0.0.1"] + ([second_name] if second_name else [])
    issue_server_certificate(certs, names, d / "node.pem", d / "node_key.pem")
    rs = [Recorder(d / "node.pem", d / "node_key.pem", HEADER) for _ in range(2)]
    yield rs
    for r in rs:
        r.close()


def _spread(front, certs, pport, nodes, tag):
    seen: dict[str, set[int]] = {}
    for user in USERS:
        cookie = _cookie(pport, user)
        for i in range(3):
            mark = f"{tag}-{user}-{i}"
            r = requests.get(
                f"https://localhost:{front.port}/hdr/hub/?m={mark}",
                headers={"Cookie": cookie},
                verify=str(certs / "root.pem"),
                timeout=5,
            )
            assert r.status_code == 200 and r.text == user
            where = {
                n
                for n, rec in enumerate(nodes)
                if any(f"m={mark}" in h["path"] for h in rec.requests)
            }
            assert len(where) == 1
            seen.setdefault(user, set()).update(where)
    return seen


@pytest.mark.parametrize("mode", ["own-names", "one-upstream"])
def test_each_user_sticks_to_one_node_and_both_nodes_serve(
    certs, portal, nodes, second_name, start_nginx, mode
):
    port = free_port()
    if mode == "own-names":  # each node verified under its own name (split_clients)
        if second_name is None:
            skip_or_fail(
                "no second DNS name for 127.0.0.1 on this machine (e.g. the host name): "
                "add one to /etc/hosts, e.g. '127.0.0.1 qlikauth-node2'"
            )
        qps = [f"https://localhost:{nodes[0].port}", f"https://{second_name}:{nodes[1].port}"]
        kw = {}
    else:  # one name on every certificate: one upstream, hash ... consistent, failover
        qps = [f"https://127.0.0.1:{nodes[0].port}", f"https://127.0.0.1:{nodes[1].port}"]
        kw = {"tls_name": "localhost"}
    front = start_nginx(front_block(certs, portal, qps, port, **kw), port)
    seen = _spread(front, certs, portal, nodes, mode)
    assert all(len(v) == 1 for v in seen.values()), seen
    assert set().union(*seen.values()) == {0, 1}, "both nodes get users"
    for rec in nodes:
        for h in rec.requests:
            if f"m={mode}-" in h["path"]:
                user = h["path"].split(f"m={mode}-")[1].split("-")[0]
                assert h["identity"] == [user]


def _refused_node(certs, portal, start_nginx, node: Recorder):
    """alice's hub request through nginx whose only QPS node is ``node``: nginx answers 502 and
    nothing reaches ``node``. Gives the nginx (for its error log)."""
    port = free_port()
    front = start_nginx(front_block(certs, portal, [f"https://localhost:{node.port}"], port), port)
    r = requests.get(
        f"https://localhost:{front.port}/hdr/hub/",
        headers={"Cookie": _cookie(portal, "alice")},
        verify=str(certs / "root.pem"),
        timeout=5,
    )
    assert r.status_code == 502
    assert node.requests == []
    return front


def test_a_node_with_a_certificate_from_another_ca_gets_nothing(
    certs, portal, tmp_path_factory, start_nginx
):
    other = tmp_path_factory.mktemp("other-ca")
    generate_certificates(other, ["localhost", "127.0.0.1"])
    rogue = Recorder(other / "server.pem", other / "server_key.pem", HEADER)
    try:
        front = _refused_node(certs, portal, start_nginx, rogue)
        assert "certificate verify failed" in front.error_log() or "verify" in front.error_log()
    finally:
        rogue.close()


def test_a_node_whose_certificate_names_another_host_gets_nothing(
    certs, portal, tmp_path_factory, start_nginx
):
    d = tmp_path_factory.mktemp("wrong-name")
    issue_server_certificate(certs, ["qs9.example.com"], d / "s.pem", d / "k.pem")
    rec = Recorder(d / "s.pem", d / "k.pem", HEADER)
    try:
        _refused_node(certs, portal, start_nginx, rec)
    finally:
        rec.close()


def test_a_missing_second_name_fails_under_require_all(monkeypatch):
    monkeypatch.setenv("QLIKAUTH_REQUIRE_ALL", "1")
    with pytest.raises(pytest.fail.Exception, match="QLIKAUTH_REQUIRE_ALL"):
        skip_or_fail("no second DNS name")
    monkeypatch.delenv("QLIKAUTH_REQUIRE_ALL")
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("no second DNS name")
