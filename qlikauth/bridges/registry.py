"""Which Qlik proxy sessions belong to which identity-provider session, so a logout can end them all.

Single logout (SAML ``LogoutRequest``, OIDC back-channel ``logout_token``) names the user by
the IdP's keys: issuer + subject (SAML NameID / OIDC ``sub``) and, optionally, the IdP's
session (SAML ``SessionIndex`` / OIDC ``sid``). :class:`SsoSessionRegistry` remembers, in a
:class:`~qlikauth.store.StateStore` shared by every portal instance, the Qlik user and the
proxy sessions each sign-in made, and :meth:`SsoSessionRegistry.end` ends them on **every**
QPS node (whichever portal instance made them) and marks the IdP session ended, so the
portal instance that holds the browser's session can drop it on the next request
(:meth:`SsoSessionRegistry.is_ended`).

Records are JSON without secrets beyond what QPS itself holds; keys are SHA-256 digests of
the IdP's identifiers, so a store dump does not list who is signed in by name.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import QpsConnectionError, QpsError
from ..identity import QlikUser
from ..store import StateStore
from ..store._keys import digest as _digest

if TYPE_CHECKING:
    from ..qps import QpsClient

__all__ = ["SsoKey", "SsoSessionRegistry", "EndedSso"]

#: How long a record lives when the IdP gives no session end (a working day and a half).
DEFAULT_LIFETIME = 36 * 3600.0


@dataclass(frozen=True)
class SsoKey:
    """An IdP session: ``issuer`` (entity id / OIDC issuer), ``subject``, ``session`` (optional).

    ``session`` is the SAML ``SessionIndex`` or the OIDC ``sid``; None when the IdP sent none.
    """

    issuer: str
    subject: str
    session: str | None = None

    @property
    def subject_id(self) -> str:
        """The digest that names issuer + subject in the store."""
        return _digest("sub", self.issuer, self.subject)

    @property
    def session_id(self) -> str:
        """The digest that names this IdP session in the store."""
        return _digest("sid", self.issuer, self.subject, self.session or "")

    def as_dict(self) -> dict[str, str | None]:
        """A JSON-able form, for the portal's own session."""
        return {"issuer": self.issuer, "subject": self.subject, "session": self.session}

    @classmethod
    def from_dict(cls, data: Any) -> SsoKey | None:
        """The key stored by :meth:`as_dict`, or None when ``data`` is not one."""
        if not isinstance(data, dict):
            return None
        issuer, subject, session = data.get("issuer"), data.get("subject"), data.get("session")
        if not isinstance(issuer, str) or not isinstance(subject, str):
            return None
        return cls(issuer, subject, session if isinstance(session, str) else None)


@dataclass(frozen=True)
class EndedSso:
    """What :meth:`SsoSessionRegistry.end` did: users concerned, proxy sessions ended, errors."""

    users: tuple[QlikUser, ...]
    sessions_ended: int
    errors: tuple[str, ...] = ()


class SsoSessionRegistry:
    """IdP session -> the Qlik user and the proxy sessions made for it (see the module docstring).

    ``store`` is shared by every portal instance (memory for one process, Redis or the
    Django cache otherwise). Appends take a short lock in the store (``add``), so two
    instances recording sessions for one IdP session at once keep both.
    """

    def __init__(self, store: StateStore, *, prefix: str = "qlikauth:sso", lifetime: float = DEFAULT_LIFETIME) -> None:
        self.store = store
        self.prefix = prefix
        self.lifetime = float(lifetime)

    # -- keys ---------------------------------------------------------------------
    def _k(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:{kind}:{ident}"

    def _locked(self, ident: str) -> str:
        lock = self._k("lock", ident)
        token = secrets.token_hex(8)
        deadline = time.monotonic() + 2.0
        while not self.store.add(lock, token.encode(), 2.0):
            if time.monotonic() > deadline:
                break  # a crashed holder: the lock expires with its ttl; carry on rather than fail sign-in
            time.sleep(0.005)
        return lock

    def _load(self, key: str) -> dict[str, Any]:
        raw = self.store.get(key)
        if raw is None:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    # -- recording ------------------------------------------------------------------
    def record(self, key: SsoKey, user: QlikUser, session_id: str | None = None, *,
               lifetime: float | None = None) -> None:
        """Remember that ``user`` signed in through IdP session ``key`` (and, in session mode,
        that proxy session ``session_id`` was made for it)."""
        ttl = max(60.0, float(lifetime if lifetime is not None else self.lifetime))
        lock = self._locked(key.subject_id)
        try:
            rec_key = self._k("s", key.session_id)
            rec = self._load(rec_key)
            rec["user"] = user.to_qps()
            sessions = [s for s in rec.get("sessions", []) if isinstance(s, str)]
            if session_id and session_id not in sessions:
                sessions.append(session_id)
            rec["sessions"] = sessions[-50:]
            self.store.put(rec_key, json.dumps(rec).encode(), ttl)
            idx_key = self._k("u", key.subject_id)
            idx = self._load(idx_key)
            ids = [s for s in idx.get("s", []) if isinstance(s, str)]
            if key.session_id not in ids:
                ids.append(key.session_id)
            idx["s"] = ids[-50:]
            self.store.put(idx_key, json.dumps(idx).encode(), ttl)
            self.store.delete(self._k("ended", key.session_id))
        finally:
            self.store.delete(lock)

    def is_ended(self, key: SsoKey | None) -> bool:
        """True once a logout ended IdP session ``key`` (the portal then ends its own session)."""
        if key is None:
            return False
        return self.store.get(self._k("ended", key.session_id)) is not None

    # -- ending ---------------------------------------------------------------------
    def end(self, issuer: str, subject: str, sessions: Iterable[str] | None = None,
            qps: QpsClient | None = None) -> EndedSso:
        """End the IdP sessions ``sessions`` of ``subject`` (all of them when None or empty).

        Every recorded proxy session is deleted on every QPS node; a sign-in recorded with
        no session id (ticket mode: QPS made the session when the ticket was redeemed)
        ends all of that user's proxy sessions on every node. The IdP sessions are marked
        ended for :meth:`is_ended`. Errors from unreachable nodes are collected, not raised:
        a logout must go as far as it can.
        """
        subj = SsoKey(issuer, subject)
        wanted = [SsoKey(issuer, subject, s).session_id for s in (sessions or [])]
        lock = self._locked(subj.subject_id)
        try:
            idx_key = self._k("u", subj.subject_id)
            idx = self._load(idx_key)
            known = [s for s in idx.get("s", []) if isinstance(s, str)]
            targets = [s for s in known if s in wanted] if wanted else known
            records = []
            for sid in targets:
                records.append(self._load(self._k("s", sid)))
                self.store.delete(self._k("s", sid))
                self.store.put(self._k("ended", sid), b"1", self.lifetime)
            for sid in wanted:  # mark asked-for sessions ended even if this instance never saw them
                self.store.put(self._k("ended", sid), b"1", self.lifetime)
            if not wanted:
                self.store.put(self._k("ended", subj.session_id), b"1", self.lifetime)
            remaining = [s for s in known if s not in targets]
            if remaining:
                self.store.put(idx_key, json.dumps({"s": remaining}).encode(), self.lifetime)
            else:
                self.store.delete(idx_key)
        finally:
            self.store.delete(lock)

        users: list[QlikUser] = []
        ended = 0
        errors: list[str] = []
        for rec in records:
            try:
                user = QlikUser.from_qps(rec.get("user") or {})
            except Exception:  # noqa: BLE001,S112 - a damaged record names nobody to log out
                continue
            if not any(u.same_user(user) for u in users):
                users.append(user)
            if qps is None:
                continue
            session_ids = [s for s in rec.get("sessions", []) if isinstance(s, str)]
            try:
                if session_ids:
                    ended += sum(1 for s in session_ids if qps.delete_session(s))
                else:
                    ended += len(qps.logout_user(user))
            except QpsConnectionError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                ended += len(getattr(exc, "partial", []) or [])
            except QpsError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return EndedSso(users=tuple(users), sessions_ended=ended, errors=tuple(errors))
