"""What one emulated QPS node remembers: tickets, proxy sessions, module targets, a header log.

Everything lives in this node's memory, as in Qlik (a ticket only redeems on the node
that issued it). All access goes through one lock; tests read it for assertions.
"""

from __future__ import annotations

import math
import os
import secrets
import string
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..identity import QlikUser
from ..qps.models import mask as _mask

__all__ = [
    "EmulatorState",
    "TicketRecord",
    "SessionRecord",
    "HeaderRecord",
    "TooManySessions",
    "SiteSessions",
]

#: How long a module redirect's targetId stays resolvable.
TARGET_TTL = 600.0
#: A bound on outstanding tickets/targets whatever the TTL, so memory stays flat.
MAX_OUTSTANDING = 200_000


_ALNUM = string.ascii_letters + string.digits
# Random bytes 0..247 map to the 62 characters 4 times each (uniform); 248..255 are dropped.
_TO_ALNUM = bytes(ord(_ALNUM[i % 62]) for i in range(248)) + bytes(8)
_REJECTED = bytes(range(248, 256))


def new_ticket() -> str:
    """A ticket as Qlik makes them: 16 random alphanumeric characters (about 95 bits).

    One ``os.urandom`` draw mapped by ``bytes.translate`` (rejection sampling, so every
    character is equally likely): 16 ``secrets.choice`` calls cost ~20 us a ticket.
    """
    out = os.urandom(24).translate(_TO_ALNUM, _REJECTED)  # what secrets.token_bytes does
    while len(out) < 16:  # more than 8 of the 24 bytes were dropped (rare)
        out += os.urandom(24).translate(_TO_ALNUM, _REJECTED)
    return out[:16].decode("ascii")


def new_guid() -> str:
    """A random GUID, the shape of Qlik's targetId and of the session ids Qlik makes itself."""
    return str(uuid.uuid4())


def mask(secret: str | None) -> str:
    """A ticket or session id as the emulator logs it: no character of it (half a 16-character
    ticket narrows a guess to 48 bits), a keyed fingerprint that ties one node's lines about it
    together (:func:`qlikauth.qps.models.mask`)."""
    return _mask(secret) if secret else "-"


class SiteSessions:
    """Every node's sessions per user: Qlik's parallel-session limit counts across the site.

    An :class:`~qlikauth.emulator.EmulatorCluster` gives all its nodes one of these.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[tuple[str, str], set[tuple[int, str]]] = {}

    def count(self, key: tuple[str, str]) -> int:
        """How many sessions the user has on any node."""
        with self._lock:
            return len(self._by_user.get(key, ()))

    def add(self, key: tuple[str, str], entry: tuple[int, str]) -> None:
        """Count one more session of the user."""
        with self._lock:
            self._by_user.setdefault(key, set()).add(entry)

    def discard(self, key: tuple[str, str], entry: tuple[int, str]) -> None:
        """Forget one session of the user."""
        with self._lock:
            ids = self._by_user.get(key)
            if ids is not None:
                ids.discard(entry)
                if not ids:
                    del self._by_user[key]


class NodeDown(RuntimeError):
    """A ticket, session or target was to be made on a node that has crashed."""


class TooManySessions(Exception):
    """The user already has ``max_sessions_per_user`` sessions on this node."""


@dataclass(slots=True)
class TicketRecord:
    """An outstanding ticket (single use, valid until ``expires`` on the monotonic clock)."""

    ticket: str
    user: QlikUser
    prefix: str
    target_uri: str | None
    expires: float


@dataclass(slots=True)
class SessionRecord:
    """A proxy session on one virtual proxy; ``origin`` is "api", "ticket" or "header"."""

    session_id: str
    user: QlikUser
    prefix: str
    origin: str
    created: float
    last_seen: float
    on_end: list[Callable[[], None]] = field(default_factory=list)
    #: What ``GET /{prefix}/qps/csrftoken`` answers for this session (the engine websocket
    #: needs it).
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: Why it ended: "timeout", "logout", "closed" (set before the ``on_end`` callbacks run)
    #: or "crash" (the node died: no callback runs).
    end_reason: str = ""
    #: Seconds of inactivity after which it ends: its virtual proxy's inactivity timeout.
    timeout: float = 1800.0

    def expired(self, now: float) -> bool:
        """Whether the inactivity timeout has passed since the last activity."""
        return now - self.last_seen > self.timeout

    def to_qps(self) -> dict[str, object]:
        """The session as the QPS API answers it (PascalCase)."""
        return {**self.user.to_qps(), "UserName": self.user.user_id, "SessionId": self.session_id}


@dataclass(frozen=True, slots=True)
class HeaderRecord:
    """One request seen by a header virtual proxy.

    ``identity`` is ``DIRECTORY\\userid`` when the header named a valid user, else None;
    ``values`` are the raw header values the request carried (empty when none).
    """

    prefix: str
    method: str
    path: str
    identity: str | None
    values: tuple[str, ...]
    user: QlikUser | None = None


class EmulatorState:
    """Thread-safe state of one emulated node; read it in tests.

    Counters: ``qps_requests`` (API requests served), ``connections_accepted`` (TLS
    connections accepted on the QPS port: pooled clients keep this at 1),
    ``hub_connections_accepted``, ``tickets_issued``, ``tickets_redeemed``.
    """

    def __init__(
        self,
        *,
        ticket_ttl: float = 60.0,
        session_timeout: float = 1800.0,
        max_sessions_per_user: int = 5,
        clock: Callable[[], float] = time.monotonic,
        site: SiteSessions | None = None,
    ) -> None:
        self.ticket_ttl = float(ticket_ttl)
        self.session_timeout = float(session_timeout)
        #: The inactivity timeout of a virtual proxy's sessions, by prefix (Qlik sets it per
        #: virtual proxy); None: ``session_timeout`` for all. The Emulator sets it on start.
        self.timeout_for: Callable[[str], float] | None = None
        self.max_sessions_per_user = int(max_sessions_per_user)
        self._clock = clock
        #: Sessions counted across the site (a cluster); None: this node alone.
        self.site = site
        self.lock = threading.RLock()
        self._tickets: OrderedDict[str, TicketRecord] = OrderedDict()
        self._targets: OrderedDict[str, tuple[str, str, float]] = OrderedDict()
        #: No ticket or target expires before this (the earliest front expiry, or earlier).
        self._purge_at = math.inf
        self._sessions: dict[str, SessionRecord] = {}
        self._by_user: dict[tuple[str, str], set[str]] = {}
        self._last_sweep = clock()
        #: Every request a header virtual proxy saw, in order.
        self.header_log: list[HeaderRecord] = []
        self.qps_requests = 0
        self.connections_accepted = 0
        self.hub_connections_accepted = 0
        self.tickets_issued = 0
        self.tickets_redeemed = 0
        #: True from :meth:`lose` until :meth:`revive`: the node is dead, nothing is made.
        self.down = False

    # -- counters ---------------------------------------------------------------------
    def count(self, name: str) -> None:
        """Add one to counter ``name``."""
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    # -- tickets ----------------------------------------------------------------------
    def add_ticket(self, user: QlikUser, prefix: str, target_uri: str | None) -> TicketRecord:
        """Issue a random single-use ticket valid ``ticket_ttl`` seconds."""
        now = self._clock()
        expires = now + self.ticket_ttl
        rec = TicketRecord(new_ticket(), user, prefix, target_uri, expires)
        with self.lock:
            self._alive()
            t = self._tickets
            if now >= self._purge_at or len(t) >= MAX_OUTSTANDING:
                self._purge_tickets(now)
            t[rec.ticket] = rec
            if expires < self._purge_at:
                self._purge_at = expires
            self.tickets_issued += 1
        return rec

    def _purge_tickets(self, now: float) -> None:
        # Tickets are issued in expiry order (one TTL), so expired ones sit at the front.
        t = self._tickets
        while t and (next(iter(t.values())).expires <= now or len(t) >= MAX_OUTSTANDING):
            t.popitem(last=False)
        g = self._targets
        while g and (next(iter(g.values()))[2] <= now or len(g) >= MAX_OUTSTANDING):
            g.popitem(last=False)
        # Nothing at the front expires before this: until then, adding a ticket needs no purge.
        self._purge_at = min(
            next(iter(t.values())).expires if t else math.inf,
            next(iter(g.values()))[2] if g else math.inf,
        )

    def take_ticket(self, ticket: str, prefix: str) -> TicketRecord | None:
        """Consume a ticket: the record when valid for ``prefix``, else None. Single use."""
        now = self._clock()
        with self.lock:
            rec = self._tickets.get(ticket)
            if rec is None or rec.prefix != prefix:
                return None
            del self._tickets[ticket]
            if rec.expires <= now:
                return None
            self.tickets_redeemed += 1
            return rec

    @property
    def outstanding_tickets(self) -> int:
        """How many tickets are issued and neither used nor purged."""
        with self.lock:
            self._purge_tickets(self._clock())
            return len(self._tickets)

    # -- module targets -----------------------------------------------------------------
    def add_target(self, prefix: str, url: str) -> str:
        """Remember the URL a browser wanted; the id goes to the module as ``targetId``."""
        tid = new_guid()
        now = self._clock()
        with self.lock:
            self._alive()
            self._purge_tickets(now)
            self._targets[tid] = (prefix, url, now + TARGET_TTL)
            self._purge_at = min(self._purge_at, now + TARGET_TTL)
        return tid

    def target(self, prefix: str, target_id: str) -> str | None:
        """The URL stored for ``target_id`` on ``prefix``, or None."""
        with self.lock:
            entry = self._targets.get(target_id)
        if entry is None or entry[0] != prefix or entry[2] <= self._clock():
            return None
        return entry[1]

    # -- sessions ---------------------------------------------------------------------
    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        for sid in [s.session_id for s in self._sessions.values() if s.expired(now)]:
            self._end(sid, "timeout")

    def _end(self, sid: str, reason: str = "closed") -> SessionRecord | None:
        rec = self._sessions.pop(sid, None)
        if rec is not None:
            rec.end_reason = reason
            ids = self._by_user.get(rec.user.key)
            if ids is not None:
                ids.discard(sid)
                if not ids:
                    del self._by_user[rec.user.key]
            if self.site is not None:
                self.site.discard(rec.user.key, (id(self), sid))
            for cb in rec.on_end:
                try:
                    cb()
                except Exception:  # noqa: S110 - a closed websocket must not stop a logout
                    pass
        return rec

    def add_session(
        self, user: QlikUser, prefix: str, origin: str, session_id: str | None = None
    ) -> tuple[SessionRecord, bool]:
        """Create a session; return it and whether the user is new on this node.

        Raises :class:`TooManySessions` when the user already has the maximum.
        """
        now = self._clock()
        sid = session_id or new_guid()
        with self.lock:
            self._alive()
            self._sweep(now)
            active = self._by_user.get(user.key, set())
            count = self.site.count(user.key) if self.site is not None else len(active)
            if count >= self.max_sessions_per_user:
                raise TooManySessions(
                    f"{user.qualified_name} has too many sessions active in parallel "
                    f"(limit {self.max_sessions_per_user})."
                )
            timeout = (
                self.timeout_for(prefix) if self.timeout_for is not None else self.session_timeout
            )
            rec = SessionRecord(sid, user, prefix, origin, now, now, timeout=timeout)
            self._sessions[sid] = rec
            self._by_user.setdefault(user.key, set()).add(sid)
            if self.site is not None:
                self.site.add(user.key, (id(self), sid))
            return rec, not active

    def session(
        self, session_id: str, prefix: str | None = None, *, touch: bool = False
    ) -> SessionRecord | None:
        """The live session ``session_id`` (on ``prefix`` when given), or None."""
        now = self._clock()
        with self.lock:
            rec = self._sessions.get(session_id)
            if rec is None:
                return None
            if rec.expired(now):
                self._end(session_id, "timeout")
                return None
            if prefix is not None and rec.prefix != prefix:
                return None
            if touch:
                rec.last_seen = now
            return rec

    def end_session(
        self, session_id: str, prefix: str | None = None
    ) -> tuple[SessionRecord, bool] | None:
        """End a session; return it and whether it was the user's last one, or None."""
        with self.lock:
            rec = self.session(session_id, prefix)
            if rec is None:
                return None
            self._end(session_id, "logout")
            return rec, rec.user.key not in self._by_user

    def sessions(
        self, prefix: str | None = None, user: QlikUser | None = None
    ) -> list[SessionRecord]:
        """Live sessions, filtered by virtual proxy prefix and/or user (case-insensitive)."""
        now = self._clock()
        with self.lock:
            self._sweep(now)
            if user is not None:
                recs = [self._sessions[s] for s in self._by_user.get(user.key, ())]
            else:
                recs = list(self._sessions.values())
            recs = [r for r in recs if not r.expired(now)]
            if prefix is not None:
                recs = [r for r in recs if r.prefix == prefix]
            return sorted(recs, key=lambda r: r.created)

    def end_user(self, user: QlikUser, prefix: str | None = None) -> list[SessionRecord]:
        """End every session of ``user`` (on ``prefix`` when given); return them."""
        with self.lock:
            recs = self.sessions(prefix, user)
            for r in recs:
                self._end(r.session_id, "logout")
            return recs

    # -- header log -------------------------------------------------------------------
    def record_header(self, rec: HeaderRecord) -> None:
        """Append to :attr:`header_log`."""
        with self.lock:
            self.header_log.append(rec)

    def header_log_for(self, prefix: str) -> list[HeaderRecord]:
        """The header log entries of one virtual proxy."""
        with self.lock:
            return [r for r in self.header_log if r.prefix == prefix]

    def lose(self) -> int:
        """What a crash does: forget every ticket, session and module target at once.

        No session ends cleanly (no ``on_end`` callback runs: a dead process tells no one);
        the header log and counters stay, for assertions. Until :meth:`revive`, nothing new is
        made: a request already under way when the node died fails instead of leaving a ticket
        or session that would outlive the crash. Returns how many sessions were lost.
        """
        with self.lock:
            self.down = True
            lost = list(self._sessions.values())
            self._sessions.clear()
            self._by_user.clear()
            if self.site is not None:
                for rec in lost:
                    self.site.discard(rec.user.key, (id(self), rec.session_id))
            for rec in lost:
                rec.end_reason = "crash"
                rec.on_end.clear()
            self._tickets.clear()
            self._targets.clear()
            self._purge_at = math.inf
            return len(lost)

    def revive(self) -> None:
        """The node starts again after :meth:`lose` (empty)."""
        with self.lock:
            self.down = False

    def _alive(self) -> None:
        if self.down:
            raise NodeDown("the emulated node has crashed")

    def clear(self) -> None:
        """Forget tickets, sessions, targets and the header log (counters are kept)."""
        with self.lock:
            for sid in list(self._sessions):
                self._end(sid)
            self._tickets.clear()
            self._targets.clear()
            self._purge_at = math.inf
            self.header_log.clear()
