"""What the emulated tenant remembers: users, sessions, access and refresh tokens, counters."""

from __future__ import annotations

import datetime as _dt
import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CloudUserRecord:
    """A user of the emulated tenant."""

    id: str
    subject: str
    name: str
    email: str
    email_verified: bool = False
    groups: list[str] = field(default_factory=list)
    status: str = "active"
    created_by: str = "jwt"

    def as_json(self, tenant_id: str) -> dict[str, Any]:
        """The user as ``/api/v1/users`` answers it."""
        return {
            "id": self.id,
            "tenantId": tenant_id,
            "subject": self.subject,
            "name": self.name,
            "email": self.email,
            "status": self.status,
            "assignedGroups": [{"id": group_id(g), "name": g} for g in self.groups],
        }


def group_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:24]


@dataclass
class TokenRecord:
    """An access token the tenant issued: its client, user, scope, expiry and id."""

    client_id: str
    user_id: str | None
    scope: str
    expires_at: float
    revoked: bool = False
    id: str = field(default_factory=lambda: secrets.token_hex(12))
    last_used: float | None = None

    def owner(self) -> str:
        """The owning user's id; a client_credentials token belongs to the client's bot user."""
        return self.user_id if self.user_id is not None else bot_user_id(self.client_id)

    def as_json(self, tenant_id: str) -> dict[str, Any]:
        """The token as ``GET /api/v1/oauth-tokens`` answers it (qlik.dev, OAuth tokens API)."""
        out: dict[str, Any] = {
            "id": self.id,
            "userId": self.owner(),
            "tenantId": tenant_id,
            "description": self.client_id,
        }
        if self.last_used is not None:
            out["lastUsed"] = iso_time(self.last_used)
        return out


def bot_user_id(client_id: str) -> str:
    return "bot-" + hashlib.sha256(client_id.encode()).hexdigest()[:20]


def iso_time(t: float) -> str:
    return (
        _dt.datetime.fromtimestamp(t, _dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class CloudTenantState:
    """Users, sessions, tokens and counters of the emulated tenant (thread-safe), for assertions."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self._lock = threading.Lock()
        self._users: dict[str, CloudUserRecord] = {}
        self._by_subject: dict[str, str] = {}
        self._sessions: dict[str, tuple[str, str]] = {}  # eas.sid -> (user id, csrf token)
        self._tokens: dict[str, TokenRecord] = {}
        self._jtis: dict[str, float] = {}
        self._counters: dict[str, int] = {}
        self._login_times: deque[float] = deque()
        self._rates: dict[str, deque[float]] = {}
        self._refresh: dict[str, tuple[str, str | None, str]] = {}

    # -- counters ------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def counter(self, name: str) -> int:
        """The value of counter ``name`` (``token_requests``, ``jwt_logins``, ...)."""
        with self._lock:
            return self._counters.get(name, 0)

    # -- users ---------------------------------------------------------------------
    def users(self) -> list[CloudUserRecord]:
        """Every user."""
        with self._lock:
            return list(self._users.values())

    def user_by_subject(self, subject: str) -> CloudUserRecord | None:
        """The user with this subject, or None."""
        with self._lock:
            uid = self._by_subject.get(subject)
            return self._users.get(uid) if uid else None

    def user(self, user_id: str) -> CloudUserRecord | None:
        """The user with this id, or None."""
        with self._lock:
            return self._users.get(user_id)

    def upsert_user(
        self,
        subject: str,
        name: str,
        email: str,
        email_verified: bool,
        groups: list[str] | None,
        created_by: str,
    ) -> CloudUserRecord:
        """Create the user, or update its name, e-mail and (when given) groups."""
        with self._lock:
            uid = self._by_subject.get(subject)
            rec = self._users.get(uid) if uid else None
            if rec is None:
                rec = CloudUserRecord(
                    secrets.token_hex(12),
                    subject,
                    name,
                    email,
                    email_verified,
                    list(groups or []),
                    created_by=created_by,
                )
                self._users[rec.id] = rec
                self._by_subject[subject] = rec.id
            else:
                rec.name, rec.email, rec.email_verified = name, email, email_verified
                if groups is not None:
                    rec.groups = list(groups)
            return rec

    # -- one-time jti ----------------------------------------------------------------
    def use_jti(self, scope: str, jti: str, until: float) -> bool:
        """Record ``jti`` until ``until``; False when it was already used."""
        now = time.time()
        with self._lock:
            if len(self._jtis) > 100_000:
                for k in [k for k, t in self._jtis.items() if t < now]:
                    del self._jtis[k]
            key = scope + "\0" + jti
            if key in self._jtis and self._jtis[key] >= now:
                return False
            self._jtis[key] = max(until, now + 60)
            return True

    def login_allowed(self, per_minute: int | None) -> bool:
        """The 100-calls-a-minute limit of /login/jwt-session."""
        if per_minute is None:
            return True
        now = time.monotonic()
        with self._lock:
            while self._login_times and self._login_times[0] < now - 60:
                self._login_times.popleft()
            if len(self._login_times) >= per_minute:
                return False
            self._login_times.append(now)
            return True

    def rate_wait(self, key: str, limit: int | None, window: float) -> float:
        """0 when one more call under ``key`` fits ``limit`` calls per ``window`` seconds
        (the call is counted); else the seconds until one fits (Qlik's ``Retry-After``)."""
        if limit is None:
            return 0.0
        now = time.monotonic()
        with self._lock:
            times = self._rates.setdefault(key, deque())
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                return max(times[0] + window - now, 0.001)
            times.append(now)
            return 0.0

    # -- sessions and tokens ---------------------------------------------------------
    def new_session(self, user_id: str) -> tuple[str, str]:
        """A new session for ``user_id``: (eas.sid, csrf token)."""
        sid, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[sid] = (user_id, csrf)
        return sid, csrf

    def session(self, sid: str) -> tuple[str, str] | None:
        """(user id, csrf token) of a session, or None."""
        with self._lock:
            return self._sessions.get(sid)

    def sessions(self) -> int:
        """How many sessions exist."""
        with self._lock:
            return len(self._sessions)

    def new_token(
        self, client_id: str, user_id: str | None, scope: str, lifetime: float
    ) -> tuple[str, float]:
        """Issue an access token; (token, expires_at)."""
        tok = secrets.token_urlsafe(32)
        exp = time.time() + lifetime
        with self._lock:
            self._tokens[tok] = TokenRecord(client_id, user_id, scope, exp)
        return tok, exp

    def token(self, tok: str) -> TokenRecord | None:
        """A live (unexpired, unrevoked) token, or None."""
        with self._lock:
            t = self._tokens.get(tok)
        if t is None or t.revoked or t.expires_at <= time.time():
            return None
        return t

    def new_refresh(self, client_id: str, user_id: str | None, scope: str) -> str:
        """Issue a refresh token (the scope held ``offline_access``)."""
        rt = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[rt] = (client_id, user_id, scope)
        return rt

    def take_refresh(self, rt: str, client_id: str) -> tuple[str | None, str] | None:
        """Use a refresh token of ``client_id`` once: (user id, scope), or None. A used one
        is gone (the answer carries a new one), as rotating servers do."""
        with self._lock:
            entry = self._refresh.get(rt)
            if entry is None or entry[0] != client_id:
                return None
            del self._refresh[rt]
            return entry[1], entry[2]

    def revoke_refresh(self, rt: str) -> bool:
        """Revoke a refresh token; True when it existed."""
        with self._lock:
            return self._refresh.pop(rt, None) is not None

    def token_valid(self, access_token: str) -> bool:
        """Would the tenant accept ``access_token`` now (issued here, unexpired, unrevoked)?"""
        return self.token(access_token) is not None

    def live_tokens(self, user_id: str | None = None) -> list[TokenRecord]:
        """The unexpired, unrevoked tokens (of one owning user when given), oldest first."""
        now = time.time()
        with self._lock:
            toks = list(self._tokens.values())
        return [
            t
            for t in toks
            if not t.revoked and t.expires_at > now and (user_id is None or t.owner() == user_id)
        ]

    def revoke_id(self, token_id: str) -> bool:
        """Revoke the live token whose id is ``token_id``; True when there was one."""
        now = time.time()
        with self._lock:
            for t in self._tokens.values():
                if t.id == token_id and not t.revoked and t.expires_at > now:
                    t.revoked = True
                    return True
        return False

    def revoke(self, tok: str) -> bool:
        """Revoke a token; True when it existed."""
        with self._lock:
            t = self._tokens.get(tok)
            if t is None:
                return False
            t.revoked = True
            return True

    def expire_tokens(self) -> None:
        """Make every token expire now (for tests of a client's refresh)."""
        with self._lock:
            for t in self._tokens.values():
                t.expires_at = 0.0
