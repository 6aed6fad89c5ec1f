"""Tickets and session ids never reach a log record, an exception message or a repr."""

from __future__ import annotations

import logging

import pytest
import requests

from qlikauth import QlikUser, QpsClient, QpsNotFound, SessionAuthenticator, TicketAuthenticator
from qlikauth.emulator import Emulator, VirtualProxy


def test_full_flows_log_no_secret(caplog):
    caplog.set_level(logging.DEBUG)  # everything: qlikauth, the emulator, urllib3, requests
    user = QlikUser("ACME", "logged", [("group", "Sales")])
    secrets_seen: list[str] = []
    with Emulator(virtual_proxies=[VirtualProxy("portal")]) as emu, \
         QpsClient(emu.qps_url, emu.certs_dir, virtual_proxy="portal") as qps:
        tickets = TicketAuthenticator(qps, hub_url=emu.hub_url_for("portal"))
        redirect = tickets.login(user)
        ticket = redirect.location.split("qlikTicket=")[1]
        secrets_seen.append(ticket)
        browser = requests.Session()
        browser.trust_env = False
        browser.verify = str(emu.certs_dir / "root.pem")
        assert browser.get(redirect.location).status_code == 200
        sessions = SessionAuthenticator(qps)
        cookie = sessions.login(user)
        secrets_seen.append(cookie.value)
        assert qps.get_session(cookie.value) is not None
        for s in qps.user_sessions(user):
            secrets_seen.append(s.session_id)
            assert s.session_id not in repr(s)
        qps.delete_session(cookie.value)
        qps.logout_user(user)
        assert ticket not in repr(redirect) and cookie.value not in repr(cookie)
    # urllib3's records come from the test's own browser stand-in (requests), which logs the
    # ticket URL it is sent to, as any browser history would; qlikauth's client does not use it.
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("urllib3"))
    assert "qlikauth.emulator" in text and "qlikauth.qps" in text
    assert "QPS POST ticket" in text  # the records were captured at all
    for secret in secrets_seen:
        assert secret not in text


def test_error_messages_carry_no_session_id():
    with Emulator() as emu, QpsClient(emu.qps_url, emu.certs_dir, virtual_proxy="nosuch") as qps:
        sid = "A" * 43
        with pytest.raises(QpsNotFound) as info:
            qps.add_session(QlikUser("ACME", "x"), session_id=sid)
        assert sid not in str(info.value)
        assert info.value.__cause__ is None or sid not in str(info.value.__cause__)
