"""What the QPS API hands back: tickets and proxy sessions, and the ids qlikauth makes for them."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from ..identity import QlikUser

__all__ = [
    "Ticket",
    "ProxySession",
    "NodeFailure",
    "EndReport",
    "new_session_id",
    "mask",
    "TARGET_ID_RE",
    "SESSION_ID_RE",
]

#: What a ``targetId`` from Qlik may look like (a GUID; we allow a little more, nothing unsafe).
TARGET_ID_RE = re.compile(r"[A-Za-z0-9._~-]{1,128}\Z")
#: What a proxy session id we accept may look like (ours are 43 URL-safe characters).
SESSION_ID_RE = re.compile(r"[A-Za-z0-9._~-]{22,128}\Z")


def new_session_id() -> str:
    """A proxy session id: 256 random bits from :mod:`secrets`, as 64 lower-case hex digits.

    Hex rather than base64url: an id is URL- and cookie-safe either way, but a base64url id
    starts with ``-`` one time in 64, and ``qlikauth session get -Xy...`` then reads it as an
    option (and so does any other command line an operator pastes it into).
    """
    return secrets.token_hex(32)


#: Keys :func:`mask`'s fingerprints; new in every process, so a fingerprint cannot be checked
#: against a guessed value anywhere else.
_MASK_KEY = secrets.token_bytes(32)


def mask(secret: str | None) -> str:
    """A stand-in for a secret in logs and reprs: ``#`` and 8 hex digits of a keyed hash, and
    its length. No character of the secret: a prefix would narrow a guess (4 of a ticket's 16
    characters are a quarter of it); the fingerprint still tells one process's lines about the
    same ticket or proxy session apart from the others."""
    if not secret:
        return "''"
    raw = secret.encode("utf-8", "surrogatepass")
    return f"#{hmac.new(_MASK_KEY, raw, hashlib.sha256).hexdigest()[:8]}({len(secret)} chars)"


@dataclass(frozen=True)
class Ticket:
    """A one-time, one-minute QPS ticket; redeem it at :attr:`node`'s proxy."""

    ticket: str = field(repr=False)
    target_uri: str | None
    node: str
    user: QlikUser

    def __repr__(self) -> str:
        return (
            f"Ticket(ticket={mask(self.ticket)}, node={self.node!r}, "
            f"user={self.user.qualified_name!r})"
        )


@dataclass(frozen=True)
class ProxySession:
    """A proxy session on one QPS node; the browser carries :attr:`session_id` as a cookie."""

    session_id: str = field(repr=False)
    user: QlikUser
    node: str

    def __repr__(self) -> str:
        return (
            f"ProxySession(session_id={mask(self.session_id)}, node={self.node!r}, "
            f"user={self.user.qualified_name!r})"
        )


@dataclass(frozen=True)
class NodeFailure:
    """A node that did not finish an ending: which node, why (no secret in it), and what is left.

    ``users`` and ``session_ids`` are what is still to be ended there; the caller keeps them
    (the web layer as pending work in the shared store) and ends them when the node answers.
    """

    node: str
    reason: str
    users: tuple[QlikUser, ...] = ()
    session_ids: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class EndReport:
    """What :meth:`~qlikauth.qps.QpsClient.end_everywhere` did on every node.

    :attr:`ended` counts the proxy sessions that existed and were ended; :attr:`failed` lists
    the nodes that did not answer (refused, hung, an error status, an unreadable answer), each
    with what is still to be ended there. :attr:`complete` is True when every node answered.
    """

    ended: int = 0
    failed: tuple[NodeFailure, ...] = ()

    @property
    def complete(self) -> bool:
        """Every node answered every call."""
        return not self.failed

    def merged(self, other: EndReport) -> EndReport:
        """Both reports as one."""
        return EndReport(self.ended + other.ended, self.failed + other.failed)
