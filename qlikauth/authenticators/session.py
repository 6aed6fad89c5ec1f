"""Session authentication: create the proxy session ourselves and hand the browser its cookie.

Used when the portal and Qlik share a parent domain (or for mashups): the portal calls
``POST /session`` and sets the virtual proxy's session cookie, so the first request to
Qlik is already signed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from ..exceptions import ConfigurationError, QpsError
from ..identity import QlikUser
from ..qps import ProxySession, QpsClient
from .base import Cookie, check_cookie_name

__all__ = ["SessionAuthenticator", "SessionGrant", "default_cookie_name", "identity_digest"]

log = logging.getLogger("qlikauth.session")


@dataclass(frozen=True)
class SessionGrant:
    """What :meth:`SessionAuthenticator.resume` decided for one signed-in portal user.

    :attr:`record` is JSON-safe (``sid``, ``owner``, ``node``, ``checked``, ``identity``): keep
    it in the
    portal's own server-side session and hand it back next time. :attr:`created` is True
    when a new proxy session was made (one QPS call). Set :attr:`cookie` on the response when
    the session is new or the browser lacks it (:attr:`session_id` is the cookie's value).
    """

    record: dict[str, Any] = field(repr=False)
    created: bool
    _authenticator: SessionAuthenticator = field(repr=False, compare=False)

    @property
    def session_id(self) -> str:
        """The proxy session id: the value the browser's cookie must carry."""
        return str(self.record["sid"])

    @property
    def cookie(self) -> Cookie:
        """The cookie that carries the session (built on demand: page views rarely need it)."""
        return self._authenticator.cookie_for(self.session_id)


def identity_digest(user: QlikUser) -> str:
    """A short digest of what a proxy session carries for ``user``: directory, id and attributes.

    Kept in :attr:`SessionGrant.record`, so a remembered session is reused only while the
    portal maps its user to the same identity (attribute order does not matter). Every page
    view of a session-mode portal compares it, so digests of recent identities are kept
    (keyed by the identity itself, every field compared: a pure function, bounded).
    """
    key = (
        user.user_directory,
        user.user_id,
        user.attributes,
    )  # a plain tuple: hashed and compared in C
    digest = _DIGESTS.get(key)
    if digest is None:
        body = user.to_qps()
        canonical = [
            body["UserDirectory"],
            body["UserId"],
            sorted(sorted(a.items()) for a in body.get("Attributes") or []),
        ]
        digest = hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode()).hexdigest()[:32]
        if len(_DIGESTS) >= _DIGESTS_KEPT:
            _DIGESTS.clear()  # bounded: a very large user base only computes them again
        _DIGESTS[key] = digest
    return digest


_DIGESTS: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
_DIGESTS_KEPT = 4096


def default_cookie_name(virtual_proxy: str) -> str:
    """Qlik's recommended cookie name for a virtual proxy prefix."""
    return f"X-Qlik-Session-{virtual_proxy}" if virtual_proxy else "X-Qlik-Session"


class SessionAuthenticator:
    """Sign users in by creating proxy sessions and returning the cookie to set.

    :param cookie_name: the virtual proxy's *session cookie header name* (QMC); defaults
        to ``X-Qlik-Session-<prefix>``.
    :param cookie_domain: the domain the cookie is set for; ``None`` for the portal's own
        host. It must cover the Qlik proxy's host or the browser will not send it there.
    :param secure, samesite: ``Lax`` by default: the cookie travels on the portal's links
        and redirects to Qlik and on same-site embedding (subdomains of one registrable
        domain; ports do not count), not on requests another site makes. ``"None"`` (requires
        ``Secure``) only for mashups embedded from *another* site.
    :param max_age: ``None`` (default) makes a browser-session cookie; only set it on
        purpose: a persistent cookie keeps a shared workstation signed in.
    """

    def __init__(
        self,
        qps: QpsClient,
        cookie_name: str | None = None,
        cookie_domain: str | None = None,
        secure: bool = True,
        samesite: str | None = "Lax",
        *,
        path: str = "/",
        http_only: bool = True,
        max_age: int | None = None,
    ) -> None:
        self.qps = qps
        self.cookie_name = check_cookie_name(cookie_name or default_cookie_name(qps.virtual_proxy))
        if max_age is not None and max_age <= 0:
            raise ConfigurationError("max_age must be a positive number of seconds, or None.")
        self._template = Cookie(
            self.cookie_name, "", cookie_domain, path, secure, http_only, samesite, max_age
        )

    def create(self, user: QlikUser) -> tuple[ProxySession, Cookie]:
        """Create a proxy session; return it and the cookie that carries it."""
        session = self.qps.add_session(user)
        return session, self.cookie_for(session.session_id)

    def login(self, user: QlikUser) -> Cookie:
        """Create a proxy session for ``user`` and return the cookie to set."""
        return self.create(user)[1]

    def cookie_for(self, session_id: str) -> Cookie:
        """The cookie that carries an existing proxy session id (no QPS call)."""
        t = self._template
        return Cookie(
            t.name, session_id, t.domain, t.path, t.secure, t.http_only, t.samesite, t.max_age
        )

    def reusable(
        self,
        remembered: Mapping[str, Any] | None,
        user: QlikUser,
        *,
        owner: str,
        now: float,
        recheck_after: float | None = None,
    ) -> bool:
        """Can ``remembered`` be reused as it is, with no QPS call and nothing to write back?

        True only when :meth:`resume` would hand back the same record untouched: it belongs to
        ``owner``, was made for exactly ``user``'s identity (directory, id, attributes) and
        needs no recheck yet. The page-view path asks this first (a few look-ups); anything
        else goes through :meth:`resume`.
        """
        if not remembered:
            return False
        sid = remembered.get("sid")
        return (
            type(sid) is str
            and sid != ""
            and remembered.get("owner") == owner
            and remembered.get("identity") == identity_digest(user)
            and (
                recheck_after is None or now - float(remembered.get("checked") or 0) < recheck_after
            )
        )

    @overload
    def resume(
        self,
        user: QlikUser,
        remembered: Mapping[str, Any] | None,
        *,
        owner: str | None = None,
        recheck_after: float | None = None,
        now: float | None = None,
        create: bool = True,
        end_replaced: Callable[[Sequence[str]], Any] | None = None,
        before_create: Callable[[QlikUser], Any] | None = None,
    ) -> SessionGrant: ...

    @overload
    def resume(
        self,
        user: Callable[[], QlikUser | None],
        remembered: Mapping[str, Any] | None,
        *,
        owner: str | None = None,
        recheck_after: float | None = None,
        now: float | None = None,
        create: bool = True,
        end_replaced: Callable[[Sequence[str]], Any] | None = None,
        before_create: Callable[[QlikUser], Any] | None = None,
    ) -> SessionGrant | None: ...

    def resume(
        self,
        user: QlikUser | Callable[[], QlikUser | None],
        remembered: Mapping[str, Any] | None,
        *,
        owner: str | None = None,
        recheck_after: float | None = None,
        now: float | None = None,
        create: bool = True,
        end_replaced: Callable[[Sequence[str]], Any] | None = None,
        before_create: Callable[[QlikUser], Any] | None = None,
    ) -> SessionGrant | None:
        """Reuse the proxy session a portal remembers for this user, or create one.

        :param user: the Qlik user, or a callable that returns it (or None: no Qlik access),
            called once per call (a callable lets the portal map its user only when asked).
        :param remembered: the :attr:`SessionGrant.record` returned last time (kept in the
            portal's session), or None. It is reused only when it belongs to ``owner`` *and*
            was made for the same Qlik identity: same directory, id and attributes (a digest
            of them is in the record). When the portal now maps the user differently (a group
            removed, so Section Access must change), the old proxy session is ended and a new
            one made: two QPS calls, only when something changed. When the user now maps to
            None, the old session is ended and None returned.
        :param owner: who the portal says is signed in (e.g. its own user id); defaults to
            the Qlik user (required when ``user`` is a callable). A record of another owner
            is never reused.
        :param recheck_after: seconds. When the record was last confirmed longer ago, QPS is
            asked (one GET) whether the session still exists, and a new one is made if Qlik
            has ended it (timeout, logout in Qlik). ``None``: never ask, so page views cost no
            QPS call; ``0``: ask every time (an explicit "open Qlik" click). When the node
            holding it cannot be reached, it counts as gone (a new one is made on a node that
            answers); when QPS cannot tell otherwise, it is kept.
        :param create: False: reuse only, never create (a portal backing off after a failure,
            or a user who signed out of Qlik).
        :param end_replaced: called with the ids of proxy sessions this call gives up (a
            changed identity, a node that cannot be reached); default: end them on every node
            now, logging a failure. The web layer passes its one ending, which keeps what a
            failing node could not end and finishes it later.
        :param before_create: called with the Qlik user just before a new proxy session is
            made (never when one is reused). The web layer ends there what an earlier sign-out
            left pending for the user, so finishing it later cannot end the new session.
        :returns: the grant, or None when ``user`` returned None or nothing may be created.

        Errors creating a session are raised (:class:`~qlikauth.QpsError`); a failure to end a
        replaced session is logged (it ends when Qlik times it out).
        """
        now = time.time() if now is None else now
        end = end_replaced if end_replaced is not None else self._end_quietly
        if owner is None:
            if not isinstance(user, QlikUser):
                raise ConfigurationError("resume(): pass owner= when user is a callable.")
            owner = "\\".join(user.key)
        # The remembered record itself while nothing changes (page views); a changed one is a copy.
        record: dict[str, Any] | None = (
            (remembered if type(remembered) is dict else dict(remembered)) if remembered else None
        )
        if record is not None and (
            record.get("owner") != owner
            or not isinstance(record.get("sid"), str)
            or not record["sid"]
        ):
            record = None
        qlik_user: QlikUser | None = None
        if record is not None:
            qlik_user = user if isinstance(user, QlikUser) else user()
            if qlik_user is None or record.get("identity") != identity_digest(qlik_user):
                log.info(
                    "the portal user's Qlik identity changed (or was withdrawn); ending the "
                    "remembered proxy session"
                )
                end([str(record["sid"])])
                if qlik_user is None:
                    return None
                record = None
        if (
            record is not None
            and recheck_after is not None
            and now - float(record.get("checked") or 0) >= recheck_after
        ):
            node = record.get("node") if record.get("node") in self.qps.nodes else None
            try:
                alive = self.qps.get_session(record["sid"], node=node) is not None
            except QpsError as exc:
                if node is not None and (
                    getattr(exc, "sent", True) is False or self.qps.is_down(node)
                ):
                    # The node holding it cannot be reached: the browser cannot use that session
                    # either. It is ended when the node answers again; the user gets a new one.
                    log.info(
                        "the node holding the remembered proxy session cannot be reached; "
                        "making a new session on a node that answers"
                    )
                    end([str(record["sid"])])
                    alive = False
                else:
                    log.warning("could not check the remembered proxy session, keeping it: %s", exc)
                    alive = True
            if alive:
                record = {**record, "checked": now}
            else:
                log.info("the remembered proxy session has ended in Qlik; creating a new one")
                record = None
        if record is not None:
            return SessionGrant(record, False, self)
        if not create:
            return None
        if qlik_user is None:
            qlik_user = user if isinstance(user, QlikUser) else user()
        if qlik_user is None:
            return None
        if before_create is not None:
            before_create(qlik_user)
        session = self.qps.add_session(qlik_user)
        record = {
            "sid": session.session_id,
            "owner": owner,
            "node": session.node,
            "checked": now,
            "identity": identity_digest(qlik_user),
        }
        return SessionGrant(record, True, self)

    def _end_quietly(self, session_ids: Sequence[str]) -> None:
        report = self.qps.end_everywhere(session_ids=session_ids)
        for failure in report.failed:
            log.warning(
                "could not end a replaced proxy session on %s (%s); it ends when Qlik times it out",
                failure.node,
                failure.reason,
            )

    def session_id_from(self, cookies: Mapping[str, str]) -> str | None:
        """The proxy session id in a request's cookies, if any."""
        value = cookies.get(self.cookie_name)
        return value or None

    def logout(self, session_id: str | None) -> Cookie:
        """End the proxy session (on every node) and return the cookie that clears it."""
        if session_id:
            self.qps.delete_session(session_id)
        return self._template.cleared()

    def logout_user(self, user: QlikUser) -> Cookie:
        """End all of ``user``'s proxy sessions on every node; return the clearing cookie."""
        self.qps.logout_user(user)
        return self._template.cleared()

    def clear_cookie(self) -> Cookie:
        """The cookie that clears the proxy session cookie, without any QPS call."""
        return self._template.cleared()
