"""Tickets and session ids never reach a log record, an exception message or a repr."""

from __future__ import annotations

import logging

import pytest
import requests

from qlikauth import QlikUser, QpsClient, QpsNotFound, SessionAuthenticator, TicketAuthenticator
from qlikauth.emulator import Emulator, VirtualProxy
from qlikauth.emulator.state import mask as emulator_mask
from qlikauth.qps.models import Ticket, mask


def test_full_flows_log_no_secret(caplog):
    caplog.set_level(logging.DEBUG)  # everything: qlikauth, the emulator, urllib3, requests
    user = QlikUser("ACME", "logged", [("group", "Sales")])
    secrets_seen: list[str] = []
    with (
        Emulator(virtual_proxies=[VirtualProxy("portal")]) as emu,
        QpsClient(emu.qps_url, emu.certs_dir, virtual_proxy="portal") as qps,
    ):
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
    text = "\n".join(
        f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("urllib3")
    )
    assert "qlikauth.emulator" in text and "qlikauth.qps" in text
    assert "QPS POST ticket" in text  # the records were captured at all
    for secret in secrets_seen:
        assert secret not in text
        # No part of one either: a ticket is 16 characters, so even 6 of them narrow a guess.
        leaked = [p for p in pieces(secret) if p in text]
        assert not leaked, f"part of a ticket or session id in the log: {leaked[:3]}"
    # The log still tells the ticket's lines apart: the same fingerprint at issue and redemption.
    assert text.count(mask(ticket)) >= 2


def pieces(secret: str, n: int = 6) -> set[str]:
    """Every run of ``n`` characters of ``secret`` (a log line holding one gives part of it
    away)."""
    return {secret[i : i + n] for i in range(len(secret) - n + 1)}


def test_mask_shows_no_character_of_the_secret():
    ticket = "AbCdEfGhIjKlMnOp"
    shown = mask(ticket)
    assert not any(c.isupper() for c in shown)  # half the ticket's letters are upper case
    assert "AbCd" not in shown and ticket[:8] not in emulator_mask(ticket)
    assert shown == mask(ticket) and shown != mask(ticket[:-1] + "q")  # stable, and distinct
    assert shown.endswith("(16 chars)") and emulator_mask(None) == "-"
    assert ticket not in repr(Ticket(ticket, None, "https://n:4243", QlikUser("D", "u")))


def test_error_messages_carry_no_session_id():
    with Emulator() as emu, QpsClient(emu.qps_url, emu.certs_dir, virtual_proxy="nosuch") as qps:
        sid = "A" * 43
        with pytest.raises(QpsNotFound) as info:
            qps.add_session(QlikUser("ACME", "x"), session_id=sid)
        assert sid not in str(info.value)
        assert info.value.__cause__ is None or sid not in str(info.value.__cause__)
