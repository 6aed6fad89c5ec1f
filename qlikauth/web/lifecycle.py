"""The one sign-in lifecycle: every way in completes in :func:`sign_in`, every way out in
:func:`sign_out`.

Every way in (the portal's own login on Flask and Django, ``/qlik/login``, ``/qlik/module``, a
SAML assertion, an OIDC id_token) turns its verified sign-in into a :class:`VerifiedLogin` and
hands it to :func:`sign_in`, which applies the rules every sign-in must keep, in one place:

1. **The next person never lands in the previous person's session.** The browser's previous
   user is read from three places that need no shared store: the portal session's sign-in
   record, the proxy session cookie the browser carries, and :data:`SEEN_COOKIE`, an encrypted
   browser-session cookie naming who last signed in here (it survives the portal session being
   flushed or replaced). When the new user is someone else, the previous user's proxy sessions
   end on every node, and their Qlik Cloud token is revoked, *before* anything is minted for the
   new one; a node that fails does not stop the switch (what it could not end is kept as
   pending work, :class:`PendingEndings`).
2. **Nothing is minted that cannot be delivered.** What the sign-in will need afterwards (the
   SSO registry in the shared store) is written before QPS is asked, so a store that is down
   refuses the sign-in before a ticket or a proxy session exists.
3. **One record per sign-in.** The portal session holds :data:`SIGNIN_KEY`: a random sign-in
   id, the Qlik user, the way in, the IdP session and when it ends. :func:`sign_out` revokes the
   id in the shared store for as long as a portal session carrying it could live, so a copy of
   the portal cookie taken before sign-out never works again (:func:`current_sign_in`).

Every way out (portal sign-out, "sign out of Qlik only", SAML single logout both ways, OIDC
RP-initiated, back-channel and front-channel logout, the session caps, Django's
``user_logged_out``, Flask-Login's ``logout_user``) goes through :func:`sign_out`: the proxy
sessions on every node (:meth:`~qlikauth.qps.QpsClient.end_everywhere`, which goes on past a
failing node), the runtime's sign-out participants (a hybrid portal's Qlik Cloud tokens), the
revocation of the sign-in, and the portal session's qlikauth state.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..authenticators.base import Cookie
from ..exceptions import QlikAuthError, StoreUnavailable
from ..identity import QlikUser
from ..qps.models import EndReport, NodeFailure
from ..store._keys import digest

if TYPE_CHECKING:
    from ..bridges.registry import SsoKey
    from .flows import WebRequest
    from .runtime import QlikAuthRuntime

__all__ = [
    "VerifiedLogin",
    "SignedIn",
    "SignedOut",
    "PendingEndings",
    "sign_in",
    "sign_out",
    "end_previous_user",
    "current_sign_in",
    "registry",
    "clear_portal_state",
    "register_portal_key",
    "seen_user",
    "seen_cookie",
    "SIGNIN_KEY",
    "SESSION_KEY",
    "SEEN_COOKIE",
    "PORTAL_STATE_KEYS",
]

log = logging.getLogger("qlikauth.lifecycle")

#: The portal session's record of the current sign-in (a JSON-safe dict, see the module docstring).
SIGNIN_KEY = "_qlikauth_signin"
#: Where the live proxy session is remembered in the portal session (the core's
#: SessionGrant.record).
SESSION_KEY = "_qlikauth_proxy_session"
#: The browser-session cookie naming, encrypted, who last signed in in this browser.
SEEN_COOKIE = "qlikauth_seen"
#: Every key qlikauth keeps in the portal session; a sign-out removes them all.
PORTAL_STATE_KEYS: list[str] = [
    SIGNIN_KEY,
    SESSION_KEY,
    "_qlikauth_retry_after",
    "_qlikauth_signed_out",
]

_REVOKED = "qlikauth:revoked:"
_PENDING = "qlikauth:pending:"
_PENDING_TTL = 24 * 3600.0
#: How long a node's pending list stays locked while it is ended there (a node that hangs takes
#: the QPS timeout, the lock is given back long before this).
_PENDING_LOCK_TTL = 30.0
_SEEN_MAX = 512


@dataclass(frozen=True)
class VerifiedLogin:
    """A sign-in the portal has verified, whatever the protocol: who, how, and until when.

    :param user: the Qlik user (already mapped from the claims, or the portal's own user).
    :param via: ``"portal"`` (the portal's own login, ``/qlik/login``, ``/qlik/module``),
        ``"saml"`` or ``"oidc"``.
    :param owner: who the portal says is signed in (Django ``"auth.user:42"``); default the
        Qlik user's ``DIRECTORY\\id``. A remembered proxy session is reused only for the same owner.
    :param sso: the IdP session (issuer, subject, SAML ``SessionIndex`` / OIDC ``sid``), for
        single logout; None for the portal's own sign-in.
    :param expires: when the IdP says the sign-in ends (SAML ``SessionNotOnOrAfter``), epoch
        seconds, or None.
    """

    user: QlikUser
    via: str = "portal"
    owner: str | None = None
    sso: SsoKey | None = None
    expires: float | None = None

    @property
    def owner_id(self) -> str:
        """``owner``, or the Qlik user's ``DIRECTORY\\id``."""
        return self.owner if self.owner is not None else "\\".join(self.user.key)


@dataclass(frozen=True)
class SignedIn:
    """What :func:`sign_in` made: where the browser goes (None: the caller decides), the cookies
    to set, the QPS node holding the new proxy session, and the sign-in id."""

    location: str | None
    cookies: tuple[Cookie, ...]
    node: str | None
    signin_id: str


@dataclass(frozen=True)
class SignedOut:
    """What :func:`sign_out` did: the QPS report (which nodes did not answer, kept as pending),
    the users ended, and the cookies the browser must receive."""

    report: EndReport
    users: tuple[QlikUser, ...] = ()
    cookies: tuple[Cookie, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """Everything ended now (nothing left pending, every participant finished)."""
        return self.report.complete and not self.problems


# -- the previous-user cookie ---------------------------------------------------------------
# It must work when the shared store is down and when the portal session was flushed (Django's
# login() over another user's session, an expired portal session): so it is a cookie of its own,
# browser-session, HttpOnly, encrypted and authenticated with a key derived from the portal's
# secret (a shared workstation's next user can neither read the previous name nor forge one).
def _seen_key(runtime: QlikAuthRuntime) -> AESGCM:
    cached = getattr(runtime, "_qlikauth_seen_aead", None)
    if cached is None:
        material = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"qlikauth previous-user cookie v1",
        ).derive(runtime.secret)
        cached = AESGCM(material)
        runtime._qlikauth_seen_aead = cached  # type: ignore[attr-defined]
    return cached


def _seen_value(runtime: QlikAuthRuntime, user: QlikUser) -> str:
    nonce = secrets.token_bytes(12)
    body = json.dumps([user.user_directory, user.user_id], ensure_ascii=False).encode("utf-8")
    sealed = _seen_key(runtime).encrypt(nonce, body, SEEN_COOKIE.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def seen_user(runtime: QlikAuthRuntime, value: str | None) -> QlikUser | None:
    """The user a :data:`SEEN_COOKIE` value names, or None (absent, forged, damaged)."""
    if not value or len(value) > _SEEN_MAX:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        body = _seen_key(runtime).decrypt(raw[:12], raw[12:], SEEN_COOKIE.encode())
        directory, user_id = json.loads(body)
        return QlikUser(str(directory), str(user_id))
    except (ValueError, TypeError, InvalidTag, QlikAuthError):
        return None


def seen_cookie(
    runtime: QlikAuthRuntime, user: QlikUser | None, *, scheme: str = "https"
) -> Cookie:
    """The :data:`SEEN_COOKIE` naming ``user`` (host-only, HttpOnly, ``SameSite=Lax``,
    browser-session); ``None`` clears it.

    ``Secure`` as ``COOKIE_SECURE`` says, except on a portal served over plain http (a
    development portal on another host than localhost), where a browser would drop a ``Secure``
    cookie without a word and the previous-user rule would silently do nothing.
    """
    value = _seen_value(runtime, user) if user is not None else ""
    secure = runtime.config.cookie_secure and scheme != "http"
    return Cookie(
        SEEN_COOKIE, value, None, "/", secure, True, "Lax", max_age=None if user is not None else 0
    )


# -- revocation ------------------------------------------------------------------------
def _revoke(runtime: QlikAuthRuntime, signin_ids: Iterable[str]) -> list[str]:
    problems = []
    for signin_id in {s for s in signin_ids if s}:
        try:
            runtime.store.put(_REVOKED + digest("signin", signin_id), b"1", runtime.revocation_ttl)
        except QlikAuthError as exc:
            problems.append(f"could not record the sign-out in the state store ({exc})")
    return problems


def current_sign_in(
    session: MutableMapping[str, Any] | None, runtime: QlikAuthRuntime, *, now: float | None = None
) -> dict[str, Any] | None:
    """The portal session's live sign-in record, or None; an ended one is removed first.

    A sign-in has ended when :func:`sign_out` revoked it (from any portal process), when its
    IdP session was ended by single logout or back-channel logout after it began, or when the
    IdP's end (``expires``) has passed. Then every qlikauth key of the portal session is removed
    and None returned: the caller treats the browser as signed out (its proxy sessions were
    ended by the way out that revoked it; an expired one is ended here).

    One store read per call (two for an SSO sign-in). When the store cannot be read, an SSO
    sign-in is refused (it cannot be told from a revoked one) and every proxy session of its
    user ended; a portal sign-in is kept (the portal's own session is its authority), with a
    warning.
    """
    record = session.get(SIGNIN_KEY) if session is not None else None
    if not isinstance(record, dict):
        return None
    assert session is not None
    now = time.time() if now is None else now
    reason = None
    try:
        if runtime.store.get(_REVOKED + digest("signin", str(record.get("id")))) is not None:
            reason = "signed out"
        elif record.get("sso") is not None:
            ended_at = registry(runtime).ended_at(_sso_key(record))
            if ended_at is not None and ended_at >= float(record.get("started") or 0):
                reason = "logged out at the identity provider"
    except StoreUnavailable as exc:
        if record.get("via") != "portal":
            log.warning(
                "qlikauth: cannot tell whether the SSO sign-in was ended (%s); treating "
                "it as ended",
                exc,
            )
            reason = "state store unavailable"
        else:
            log.warning("qlikauth: cannot check the sign-in against the state store (%s)", exc)
    if reason == "state store unavailable":
        # Ended here, so ended in Qlik too: which proxy sessions its IdP session made is in the
        # store, so every one of the user's ends (they sign in again once the store answers).
        sign_out(
            None,
            runtime,
            users=_record_users(record),
            signin_ids=[str(record.get("id"))],
            reason="an SSO sign-in the state store could not confirm",
        )
    if reason is None and record.get("expires") is not None and now >= float(record["expires"]):
        reason = "the identity provider's session ended (SessionNotOnOrAfter)"
        sign_out(
            None,
            runtime,
            users=_record_users(record),
            signin_ids=[str(record.get("id"))],
            reason=reason,
        )
    if reason is None:
        return record
    log.info("qlikauth: the portal's sign-in ended: %s", reason)
    clear_portal_state(session)
    return None


def _record_users(record: Mapping[str, Any]) -> list[QlikUser]:
    try:
        return [QlikUser.from_qps(record.get("user") or {})]
    except QlikAuthError:
        return []


def _sso_key(record: Mapping[str, Any]) -> SsoKey | None:
    from ..bridges.registry import SsoKey

    return SsoKey.from_dict(record.get("sso"))


def registry(runtime: QlikAuthRuntime) -> Any:
    """The runtime's :class:`~qlikauth.bridges.registry.SsoSessionRegistry` (one for SAML
    and OIDC)."""
    from ..bridges.registry import SsoSessionRegistry

    made = getattr(runtime, "_qlikauth_registry", None)
    if made is None:
        made = SsoSessionRegistry(runtime.sealed_store, lifetime=runtime.revocation_ttl)
        runtime._qlikauth_registry = made  # type: ignore[attr-defined]
    return made


def sign_out_sso(
    request: WebRequest | None, runtime: QlikAuthRuntime, key: Any, *, reason: str
) -> SignedOut:
    """End an SSO sign-in (SAML or OIDC): what the registry recorded for its IdP session
    (``key``, an :class:`~qlikauth.bridges.registry.SsoKey`, or None), through :func:`sign_out`.

    A shared store that does not answer never stops it. Which proxy sessions the IdP session
    made is kept there, so every proxy session of ``request``'s signed-in user ends instead:
    more than the IdP session's (the same person's other browsers sign in again through the
    IdP), never less.
    """
    from ..bridges.registry import EndedSso

    found = EndedSso(users=())
    if key is not None:
        try:
            found = registry(runtime).take(
                key.issuer, key.subject, [key.session] if key.session else None
            )
        except QlikAuthError as exc:
            session = request.session if request is not None else None
            record = session.get(SIGNIN_KEY) if session is not None else None
            if isinstance(record, dict):
                found = EndedSso(users=(), end_users=tuple(_record_users(record)))
            log.warning(
                "qlikauth: sign-out (%s): the shared store did not answer (%s); ending every "
                "proxy session of the signed-in user instead",
                reason,
                exc,
            )
    return sign_out_found(request, runtime, found, reason=reason)


def sign_out_found(
    request: WebRequest | None, runtime: QlikAuthRuntime, found: Any, *, reason: str
) -> SignedOut:
    """:func:`sign_out` of what the SSO registry found for an IdP session (an
    :class:`~qlikauth.bridges.registry.EndedSso`): its users by user where no proxy session was
    recorded, its recorded proxy sessions by id, its sign-ins revoked, its people's Qlik Cloud
    tokens revoked."""
    return sign_out(
        request,
        runtime,
        users=found.end_users,
        session_ids=found.session_ids,
        signin_ids=found.signin_ids,
        people=found.users,
        reason=reason,
    )


def clear_portal_state(session: MutableMapping[str, Any] | None) -> None:
    """Remove every key qlikauth keeps in the portal session (:data:`PORTAL_STATE_KEYS`)."""
    if session is None:
        return
    for key in PORTAL_STATE_KEYS:
        session.pop(key, None)


def register_portal_key(key: str) -> None:
    """A protocol's own portal-session key (SAML's, OIDC's): cleared by every sign-out."""
    if key not in PORTAL_STATE_KEYS:
        PORTAL_STATE_KEYS.append(key)


# -- pending endings ---------------------------------------------------------------------
class PendingEndings:
    """What a failing node could not end, kept in the shared store until the node answers.

    One list per node (users to log out, proxy session ids to delete). :meth:`finish` asks each
    node that is not known to be down to end its list; what fails again stays. Every sign-out
    finishes what it can; :meth:`~qlikauth.web.runtime.QlikAuthRuntime.finish_pending` does it
    on demand (a scheduled job, ``qlikauth`` doctor).
    """

    def __init__(self, runtime: QlikAuthRuntime) -> None:
        self.runtime = runtime
        self._local = threading.Lock()

    def _key(self, node: str) -> str:
        # Per node and virtual proxy: portals of other virtual proxies may share the store, and
        # a list taken by one of them would be ended on its own virtual proxy, not this one's.
        return _PENDING + digest("node", node, self.runtime.qps.virtual_proxy)

    def add(self, failures: Sequence[NodeFailure]) -> list[str]:
        """Keep ``failures``' unfinished work; returns problems (the store could not keep it)."""
        problems = []
        for failure in failures:
            if not failure.users and not failure.session_ids:
                continue
            try:
                self._merge(failure.node, failure.users, failure.session_ids)
            except QlikAuthError as exc:
                problems.append(
                    f"could not keep the sign-out pending for {failure.node} ({exc}); "
                    "those proxy sessions end when Qlik times them out"
                )
        return problems

    def _merge(self, node: str, users: Sequence[QlikUser], session_ids: Sequence[str]) -> None:
        store = self.runtime.sealed_store
        key = self._key(node)
        # a holder that outlives the lock only risks a lost merge, never a wrong one: carry on
        with self._local, store.lock(key + ":lock", ttl=5.0, wait=5.0):
            data = _load(store.get(key))
            known_users = [u for u in data.get("users", []) if isinstance(u, dict)]
            for user in users:
                body = user.to_qps()
                if not any(
                    u.get("UserDirectory") == body["UserDirectory"]
                    and u.get("UserId") == body["UserId"]
                    for u in known_users
                ):
                    known_users.append(
                        {"UserDirectory": body["UserDirectory"], "UserId": body["UserId"]}
                    )
            ids = [s for s in data.get("sessions", []) if isinstance(s, str)]
            ids += [s for s in session_ids if s not in ids]
            store.put(
                key,
                json.dumps({"users": known_users[-1000:], "sessions": ids[-5000:]}).encode(),
                _PENDING_TTL,
            )

    def count(self) -> int:
        """How many users and proxy sessions are still to be ended, over every node."""
        total = 0
        for node in self.runtime.qps.nodes:
            data = _load(self.runtime.sealed_store.get(self._key(node)))
            total += len(data.get("users", [])) + len(data.get("sessions", []))
        return total

    def finish(self) -> EndReport:
        """End what is pending on every node; a node known to be down is first asked (/qps/alive,
        briefly, only when work waits for it) whether it is back. What fails again is kept.

        A node's list is taken and ended under its lock, the one :meth:`settle` takes: a user
        signing in again meanwhile waits, so their new proxy session is never ended as pending.
        A list another process holds is left to it (never waited for).
        """
        qps = self.runtime.qps
        store = self.runtime.sealed_store
        report = EndReport()
        for node in qps.nodes:
            key = self._key(node)
            if not store.get(key):
                continue
            if qps.is_down(node) and not qps.alive([node])[node]:
                continue  # still down (asked once, briefly, only when work waits for it)
            with store.lock(key + ":lock", ttl=_PENDING_LOCK_TTL) as held:
                if not held:
                    continue  # another process is ending or settling this list right now
                data = _load(store.take(key))
                ids = [s for s in data.get("sessions", []) if isinstance(s, str)]
                done = qps.end_everywhere(_pending_users(data), ids, nodes=[node])
            report = report.merged(done)
            for problem in self.add(done.failed):
                log.error("qlikauth: %s", problem)
        if report.ended:
            log.info(
                "qlikauth: ended %d proxy session(s) left over from earlier sign-outs", report.ended
            )
        return report

    def settle(self, user: QlikUser) -> None:
        """Before ``user`` is signed in to Qlik again: end now what is pending for them on a node
        that answers, and take them off its list, so that finishing the list later cannot end
        the proxy session this sign-in is about to make there. A node still down keeps them
        (nothing is made there while it is down). Never raises: the store or a node failing
        leaves the list as it was."""
        qps = self.runtime.qps
        store = self.runtime.sealed_store
        for node in qps.nodes:
            key = self._key(node)
            try:
                if not _names(_load(store.get(key)), user):
                    continue
                with store.lock(key + ":lock", ttl=_PENDING_LOCK_TTL, wait=_PENDING_LOCK_TTL):
                    data = _load(store.get(key))
                    if not _names(data, user):
                        continue  # finished meanwhile
                    if qps.end_everywhere([user], nodes=[node]).failed:
                        continue  # kept: the node does not answer
                    data["users"] = [
                        {"UserDirectory": u.user_directory, "UserId": u.user_id}
                        for u in _pending_users(data)
                        if u.key != user.key
                    ]
                    if data["users"] or data.get("sessions"):
                        store.put(key, json.dumps(data).encode(), _PENDING_TTL)
                    else:
                        store.delete(key)
            except QlikAuthError as exc:
                log.warning(
                    "qlikauth: could not settle the pending sign-out of %s on %s (%s)",
                    user.qualified_name,
                    node,
                    exc,
                )


def _pending_users(data: dict[str, Any]) -> list[QlikUser]:
    users = []
    for body in data.get("users", []):
        try:
            users.append(QlikUser.from_qps(body))
        except QlikAuthError:
            continue
    return users


def _names(data: dict[str, Any], user: QlikUser) -> bool:
    return any(u.key == user.key for u in _pending_users(data))


def _load(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# -- the one way out ---------------------------------------------------------------------
def sign_out(
    request: WebRequest | None,
    runtime: QlikAuthRuntime,
    *,
    reason: str,
    users: Iterable[QlikUser] = (),
    session_ids: Iterable[str] = (),
    signin_ids: Iterable[str] = (),
    people: Iterable[QlikUser] = (),
    this_browser: bool = True,
    portal: bool = True,
) -> SignedOut:
    """End a sign-in everywhere; never raises for a node, the store or Qlik Cloud failing.

    :param request: the browser's request when the sign-out happens in it (its portal session's
        sign-in, remembered proxy session and cookies are ended and cleared too); None for a
        sign-out without a browser (back-channel logout, a SAML LogoutRequest's other sessions,
        an expired sign-in found later).
    :param users: Qlik users whose proxy sessions end on every node (all of them: qlikauth cannot
        tell which belong to this browser, and on a shared workstation that is what is wanted).
    :param session_ids: proxy sessions to end on every node.
    :param signin_ids: sign-ins to revoke (their portal-session copies never work again).
    :param people: the users being signed out whose proxy sessions are named by id (an SSO
        sign-in in session mode): their Qlik Cloud tokens are revoked too.
    :param this_browser: False when ``request`` is another user's browser (the previous user at
        a user switch): its portal state and cookies are left to the sign-in that follows.
    :param portal: False for "sign out of Qlik only": the proxy sessions and Qlik Cloud tokens
        end, the portal sign-in stays (not revoked, its record kept).

    Order: the portal state first (so a failure later never leaves the browser half signed
    in), the revocation, then every node (:meth:`~qlikauth.qps.QpsClient.end_everywhere`; what a
    node could not end is kept in :class:`PendingEndings`), then the sign-out participants (a
    hybrid portal's Qlik Cloud token) for every user. Everything that failed is logged and
    reported in :attr:`SignedOut.problems`; nothing secret is.
    """
    users = list(users)
    everyone = list(people)
    ids = [s for s in session_ids if s]
    signins = [s for s in signin_ids if s]
    cookies: tuple[Cookie, ...] = ()
    if request is not None and this_browser:
        session = request.session
        record = session.get(SIGNIN_KEY) if session is not None else None
        remembered = session.get(SESSION_KEY) if session is not None else None
        if isinstance(record, dict):
            if portal:
                signins.append(str(record.get("id")))
            if record.get("sso") is None:
                # A portal sign-in: every proxy session of the user. An SSO sign-in's are named
                # by the registry (one IdP session's, not the same person's in another browser).
                users += _record_users(record)
            else:
                everyone += _record_users(record)
        if isinstance(remembered, dict) and isinstance(remembered.get("sid"), str):
            ids.append(remembered["sid"])
        cookie_sid = request.cookies.get(runtime.config.effective_cookie_name)
        if cookie_sid:
            ids.append(cookie_sid)
        if portal:
            clear_portal_state(session)
        elif session is not None:
            session.pop(SESSION_KEY, None)
        cookies = (runtime.clear_cookie(), seen_cookie(runtime, None, scheme=request.scheme))
    unique = _unique(users)
    signed_out = _unique(users + everyone)
    problems = _revoke(runtime, signins)
    report = runtime.qps.end_everywhere(unique, ids)
    problems += runtime.pending.add(report.failed)
    for participant in runtime.sign_outs:
        for user in signed_out:
            try:
                participant.sign_out(request, user)
            except QlikAuthError as exc:
                problems.append(f"{type(participant).__name__} could not finish ({exc})")
    if report.complete:
        _finish_pending_now_and_then(runtime)
    for failure in report.failed:
        problems.append(f"{failure.node} did not answer ({failure.reason}); kept as pending")
    for problem in problems:
        log.warning("qlikauth: sign-out (%s): %s", reason, problem)
    log.info(
        "qlikauth: sign-out (%s): %d user(s), %d proxy session(s) ended%s",
        reason,
        len(signed_out),
        report.ended,
        "" if report.complete else ", some left pending",
    )
    return SignedOut(report, tuple(signed_out), cookies, tuple(problems))


def _unique(users: Iterable[QlikUser]) -> list[QlikUser]:
    out: list[QlikUser] = []
    for user in users:
        if not any(u.key == user.key for u in out):
            out.append(user)
    return out


_FINISH_EVERY = 30.0
_last_finish: dict[int, float] = {}


def _finish_pending_now_and_then(runtime: QlikAuthRuntime) -> None:
    """Finish pending endings at most every 30 s per process (a store read per node)."""
    now = time.monotonic()
    if now - _last_finish.get(id(runtime), -_FINISH_EVERY) < _FINISH_EVERY:
        return
    _last_finish[id(runtime)] = now
    try:
        runtime.pending.finish()
    except QlikAuthError as exc:
        log.warning("qlikauth: could not finish pending sign-outs now (%s)", exc)


# -- the one way in ----------------------------------------------------------------------
def end_previous_user(
    request: WebRequest,
    runtime: QlikAuthRuntime,
    user: QlikUser | None,
    *,
    keep_session_id: str | None = None,
) -> None:
    """Before ``user`` gets anything in this browser: end whoever signed in here before.

    The previous user is whoever the portal session's sign-in record, the :data:`SEEN_COOKIE`
    or the remembered proxy session names, when that is not ``user``; a proxy session the
    browser carries that is not ``keep_session_id`` (nor this user's remembered one) ends too.
    Never raises: a node that fails keeps its part as pending and the new sign-in goes on.
    """
    session = request.session
    record = session.get(SIGNIN_KEY) if session is not None else None
    previous: list[QlikUser] = []
    signins: list[str] = []
    if isinstance(record, dict):
        for old in _record_users(record):
            if user is None or old.key != user.key:
                previous.append(old)
                signins.append(str(record.get("id")))
    seen = seen_user(runtime, request.cookies.get(SEEN_COOKIE))
    if seen is not None and (user is None or seen.key != user.key):
        previous.append(seen)
    ids = []
    remembered = session.get(SESSION_KEY) if session is not None else None
    own_sid = remembered.get("sid") if isinstance(remembered, dict) else None
    if previous and own_sid:
        ids.append(str(own_sid))
    carried = request.cookies.get(runtime.config.effective_cookie_name)
    if carried and carried != keep_session_id and (previous or carried != own_sid):
        ids.append(carried)
    if not previous and not ids:
        return
    if previous:
        log.info(
            "qlikauth: another user signs in in this browser: ending %s's sessions first",
            ", ".join("\\".join(p.key) for p in previous),
        )
        if session is not None:
            clear_portal_state(session)
    sign_out(
        request,
        runtime,
        users=previous,
        session_ids=ids,
        signin_ids=signins,
        reason="another user signs in in this browser",
        this_browser=False,
    )


def sign_in(
    request: WebRequest,
    runtime: QlikAuthRuntime,
    login: VerifiedLogin,
    *,
    open_qlik: bool,
    target: str | None = None,
    module: tuple[str, str] | None = None,
    verify: bool = True,
) -> SignedIn:
    """Complete ``login``: the previous-user rule, the SSO registry, the Qlik sign-in, the record.

    :param open_qlik: the browser goes to Qlik now. Ticket mode then mints a ticket (to
        ``target``, a checked Qlik URL, or the hub of the node that issued it); with ``module``
        (``proxyRestUri``, ``targetId``, both checked) the ticket comes from that node for the
        virtual proxy's authentication module. False (the portal's own login, an SSO sign-in
        going back to a portal page): ticket mode mints nothing yet.
    :param verify: session mode confirms a remembered proxy session with QPS (an explicit
        "open Qlik"); page views use :func:`qlikauth.web.flows.resume_session` instead.

    Session mode always makes sure a proxy session exists (reused when the portal session
    remembers one of the same user and identity) and returns its cookie.

    Errors are raised (:class:`~qlikauth.QlikAuthError`); nothing is minted before the checks
    that could refuse the sign-in, and a proxy session made for a sign-in that then fails is
    ended again.
    """
    user = login.user
    session = request.session
    now = time.time()
    record = session.get(SIGNIN_KEY) if session is not None else None
    prior = _record_users(record) if isinstance(record, dict) else []
    same = bool(prior) and prior[0].key == user.key
    remembered = session.get(SESSION_KEY) if session is not None else None
    keep = remembered.get("sid") if isinstance(remembered, dict) else None
    end_previous_user(request, runtime, user, keep_session_id=keep)
    remembered = session.get(SESSION_KEY) if session is not None else None
    # A remembered session of another owner is not resume()'s to replace: it ends here.
    old_sid = (
        remembered.get("sid")
        if isinstance(remembered, dict) and remembered.get("owner") != login.owner_id
        else None
    )
    if isinstance(record, dict) and same and login.via == "portal" and login.sso is None:
        signin_id = str(record.get("id"))  # the same portal sign-in opening Qlik again
        sso_record = record.get("sso")
        expires = record.get("expires")
        started = float(record.get("started") or now)
        via = str(record.get("via") or "portal")
    else:
        if same and isinstance(record, dict):
            # The same user signing in again replaces the sign-in: a copy of the old portal
            # cookie must not outlive it.
            for problem in _revoke(runtime, [str(record.get("id"))]):
                log.warning("qlikauth: %s", problem)
        signin_id = secrets.token_urlsafe(18)
        sso_record = login.sso.as_dict() if login.sso is not None else None
        expires = login.expires
        started = now
        via = login.via
    reg = registry(runtime) if login.sso is not None else None
    if reg is not None:
        # Before QPS: a sign-in the store cannot record would be one single logout cannot end.
        lifetime = None if login.expires is None else max(60.0, login.expires - now)
        reg.record(login.sso, user, None, signin_id=signin_id, lifetime=lifetime)
    cookies: list[Cookie] = []
    location: str | None = None
    node: str | None = None
    if runtime.config.mode == "ticket" and open_qlik:
        # An ending still pending for this user from an earlier sign-out must not end the proxy
        # session the ticket makes: it is done now, or kept for a node that is down.
        runtime.pending.settle(user)
    if runtime.config.mode == "session":
        from .flows import RETRY_KEY, SIGNED_OUT_KEY

        store: MutableMapping[str, Any] = session if session is not None else {}
        store.pop(SIGNED_OUT_KEY, None)
        grant = runtime.session.resume(
            user,
            store.get(SESSION_KEY),
            owner=login.owner_id,
            now=now,
            recheck_after=runtime.recheck_after(explicit=verify),
            end_replaced=runtime.end_sessions,
            before_create=runtime.pending.settle,
        )
        if reg is not None and grant.created:
            try:
                reg.record(
                    login.sso,
                    user,
                    grant.session_id,
                    signin_id=signin_id,
                    lifetime=None if login.expires is None else max(60.0, login.expires - now),
                )
            except QlikAuthError:
                runtime.end_sessions([grant.session_id])
                raise
        store.pop(RETRY_KEY, None)
        if old_sid and old_sid != grant.session_id:
            runtime.end_sessions([str(old_sid)])  # made for another owner or identity: replaced
        if grant.record != store.get(SESSION_KEY):
            store[SESSION_KEY] = grant.record
        if grant.created or request.cookies.get(runtime.session.cookie_name) != grant.session_id:
            cookies.append(grant.cookie)
        node = grant.record.get("node")
        if open_qlik:
            location = target or runtime.hub_for_node(node)
    elif open_qlik:
        if module is not None:
            location = runtime.ticket.module_login(user, module[0], module[1]).location
        else:
            location = runtime.ticket.login(user, target).location
    if session is not None:
        session[SIGNIN_KEY] = {
            "id": signin_id,
            "user": user.to_qps(),
            "via": via,
            "sso": sso_record,
            "started": started,
            "expires": expires,
            "owner": login.owner_id,
        }
    cookies.append(seen_cookie(runtime, user, scheme=request.scheme))
    return SignedIn(location, tuple(cookies), node, signin_id)
