"""Which Qlik proxy sessions belong to which identity-provider session, so a logout can end them
all.

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
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..exceptions import QlikAuthError
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
    """What :meth:`SsoSessionRegistry.take` found (and :meth:`SsoSessionRegistry.end` did).

    :attr:`users`: the Qlik users of the ended IdP sessions; :attr:`session_ids`: the proxy
    sessions recorded for them (session mode); :attr:`signin_ids`: the portal sign-ins they
    made (to revoke); :attr:`sessions_ended` and :attr:`errors` only from :meth:`end`.
    """

    users: tuple[QlikUser, ...]
    sessions_ended: int = 0
    errors: tuple[str, ...] = ()
    session_ids: tuple[str, ...] = field(default=(), repr=False)
    signin_ids: tuple[str, ...] = field(default=(), repr=False)
    #: The users whose sign-ins recorded no proxy session (ticket mode: QPS made it when the
    #: ticket was redeemed): they are ended by user, every proxy session of theirs.
    end_users: tuple[QlikUser, ...] = ()


class SsoSessionRegistry:
    """IdP session -> the Qlik user, proxy sessions and portal sign-ins made for it.

    ``store`` is shared by every portal instance (memory for one process, Redis or the
    Django cache otherwise). Appends take a short lock in the store (``add``), so two
    instances recording sessions for one IdP session at once keep both.

    An ended IdP session is marked with the time it ended, and a new sign-in with the same
    IdP session id does not remove the mark: a portal sign-in that began before the mark stays
    ended (:meth:`ended_at`), one that begins after it is a new sign-in.
    """

    def __init__(
        self, store: StateStore, *, prefix: str = "qlikauth:sso", lifetime: float = DEFAULT_LIFETIME
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.lifetime = float(lifetime)

    # -- keys ---------------------------------------------------------------------
    def _k(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:{kind}:{ident}"

    def _locked(self, ident: str) -> Any:
        # Owner-checked: a holder slower than the ttl never releases the next holder's lock. A
        # lock not had within the wait (a crashed holder's lapses with its ttl) does not stop a
        # sign-in or a logout: the worst case is one lost append, never a wrong one.
        return self.store.lock(self._k("lock", ident), ttl=2.0, wait=2.0)

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
    def record(
        self,
        key: SsoKey,
        user: QlikUser,
        session_id: str | None = None,
        *,
        signin_id: str | None = None,
        lifetime: float | None = None,
    ) -> None:
        """Remember that ``user`` signed in through IdP session ``key`` (portal sign-in
        ``signin_id``; in session mode, that proxy session ``session_id`` was made for it)."""
        ttl = max(60.0, float(lifetime if lifetime is not None else self.lifetime))
        with self._locked(key.subject_id):
            rec_key = self._k("s", key.session_id)
            rec = self._load(rec_key)
            rec["user"] = user.to_qps()
            sessions = [s for s in rec.get("sessions", []) if isinstance(s, str)]
            if session_id and session_id not in sessions:
                sessions.append(session_id)
            rec["sessions"] = sessions[-50:]
            signins = [s for s in rec.get("signins", []) if isinstance(s, str)]
            if signin_id and signin_id not in signins:
                signins.append(signin_id)
            rec["signins"] = signins[-50:]
            self.store.put(rec_key, json.dumps(rec).encode(), ttl)
            idx_key = self._k("u", key.subject_id)
            idx = self._load(idx_key)
            ids = [s for s in idx.get("s", []) if isinstance(s, str)]
            if key.session_id not in ids:
                ids.append(key.session_id)
            idx["s"] = ids[-50:]
            self.store.put(idx_key, json.dumps(idx).encode(), ttl)

    def ended_at(self, key: SsoKey | None) -> float | None:
        """When a logout ended IdP session ``key`` (or every session of its subject), or None."""
        if key is None:
            return None
        times = []
        for ident in {key.session_id, SsoKey(key.issuer, key.subject).session_id}:
            raw = self.store.get(self._k("ended", ident))
            if raw is not None:
                try:
                    times.append(float(raw))
                except ValueError:
                    times.append(float("inf"))  # unreadable: ended, to be safe
        return max(times) if times else None

    def is_ended(self, key: SsoKey | None) -> bool:
        """True once a logout ended IdP session ``key``."""
        return self.ended_at(key) is not None

    # -- ending ---------------------------------------------------------------------
    def take(self, issuer: str, subject: str, sessions: Iterable[str] | None = None) -> EndedSso:
        """Forget the IdP sessions ``sessions`` of ``subject`` (all of them when None or empty),
        mark them ended now, and return what they made, for the one ending to end.

        The caller ends the recorded proxy sessions, and every proxy session of
        :attr:`EndedSso.end_users` (a ticket-mode sign-in records no session id: QPS made the
        session at redemption).
        """
        subj = SsoKey(issuer, subject)
        wanted = [SsoKey(issuer, subject, s).session_id for s in (sessions or [])]
        now = str(time.time()).encode()
        with self._locked(subj.subject_id):
            idx_key = self._k("u", subj.subject_id)
            idx = self._load(idx_key)
            known = [s for s in idx.get("s", []) if isinstance(s, str)]
            targets = [s for s in known if s in wanted] if wanted else known
            records = []
            for sid in targets:
                records.append(self._load(self._k("s", sid)))
                self.store.delete(self._k("s", sid))
            # asked-for sessions are marked even when this store never saw them
            for sid in set(targets) | set(wanted) | (set() if wanted else {subj.session_id}):
                self.store.put(self._k("ended", sid), now, self.lifetime)
            remaining = [s for s in known if s not in targets]
            if remaining:
                self.store.put(idx_key, json.dumps({"s": remaining}).encode(), self.lifetime)
            else:
                self.store.delete(idx_key)
        users: list[QlikUser] = []
        by_user: list[QlikUser] = []
        session_ids: list[str] = []
        signin_ids: list[str] = []
        for rec in records:
            try:
                user = QlikUser.from_qps(rec.get("user") or {})
            except QlikAuthError:
                continue  # a damaged record names nobody to log out
            if not any(u.same_user(user) for u in users):
                users.append(user)
            recorded = [s for s in rec.get("sessions", []) if isinstance(s, str)]
            session_ids += recorded
            if not recorded and not any(u.same_user(user) for u in by_user):
                by_user.append(user)
            signin_ids += [s for s in rec.get("signins", []) if isinstance(s, str)]
        return EndedSso(
            users=tuple(users),
            session_ids=tuple(session_ids),
            signin_ids=tuple(signin_ids),
            end_users=tuple(by_user),
        )

    def end(
        self,
        issuer: str,
        subject: str,
        sessions: Iterable[str] | None = None,
        qps: QpsClient | None = None,
    ) -> EndedSso:
        """:meth:`take`, then end what it found on every QPS node (``qps``), going on past a node
        that fails; for use without the web layer (which ends them through its one sign-out)."""
        found = self.take(issuer, subject, sessions)
        if qps is None:
            return found
        report = qps.end_everywhere(found.end_users, found.session_ids)
        errors = tuple(f"{f.node}: {f.reason}" for f in report.failed)
        return EndedSso(
            found.users, report.ended, errors, found.session_ids, found.signin_ids, found.end_users
        )
