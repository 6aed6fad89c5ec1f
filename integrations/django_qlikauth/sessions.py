"""Proxy sessions for Django users: create once, remember in the Django session, end at logout."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.http import HttpRequest, HttpResponse

from qlikauth.authenticators.base import Cookie
from qlikauth.exceptions import QlikAuthError
from qlikauth.identity import QlikUser

from .conf import get_runtime, qlik_user_for

log = logging.getLogger("django_qlikauth")

#: The Django session key holding the live proxy session (the core's SessionGrant.record).
SESSION_KEY = "_qlikauth_proxy_session"
#: After a failed creation, page views skip QPS until this time (Django session key).
RETRY_KEY = "_qlikauth_retry_after"
RETRY_AFTER_SECONDS = 30.0


def set_cookie(response: HttpResponse, cookie: Cookie) -> None:
    """Turn a qlikauth :class:`Cookie` into Django's ``set_cookie``/``delete_cookie``."""
    if cookie.deletes:
        response.delete_cookie(cookie.name, path=cookie.path, domain=cookie.domain,
                               samesite=cookie.samesite)
        if cookie.secure:
            response.cookies[cookie.name]["secure"] = True
        response.cookies[cookie.name]["httponly"] = cookie.http_only
        return
    response.set_cookie(cookie.name, cookie.value, max_age=cookie.max_age, path=cookie.path,
                        domain=cookie.domain, secure=cookie.secure, httponly=cookie.http_only,
                        samesite=cookie.samesite)


def ensure_proxy_session(request: HttpRequest, response: HttpResponse, *, strict: bool = False) -> bool:
    """Give the signed-in user a proxy session and its cookie; True when one is in place.

    The decision is the core's (:meth:`SessionAuthenticator.resume`): a proxy session
    remembered in the Django session for the same user is reused, so ordinary page views
    make no QPS call (the cookie is only re-set if the browser lacks it); with
    SESSION_RECHECK > 0 it is confirmed with QPS at most that often and replaced when Qlik
    has ended it. ``strict`` (the explicit ``/qlik/login``) always confirms it and raises
    QPS errors; the middleware logs them and leaves QPS alone for a while.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    runtime = get_runtime()
    session = request.session
    uid = f"{user._meta.label_lower}:{user.pk}"  # not type(): request.user is a lazy proxy
    now = time.time()

    def qlik_user() -> QlikUser | None:
        # Called only when a session must be created.
        if not strict and session.get(RETRY_KEY, 0) > now:
            return None  # a recent attempt failed: page views leave QPS alone for a while
        return qlik_user_for(request)

    remembered = session.get(SESSION_KEY)
    try:
        grant = runtime.session.resume(qlik_user, remembered, owner=uid, now=now,
                                       recheck_after=runtime.recheck_after(explicit=strict))
    except QlikAuthError as exc:
        # The portal keeps working; Qlik stays signed out and we try again a little later.
        session[RETRY_KEY] = now + RETRY_AFTER_SECONDS
        if strict:
            raise
        log.warning("qlikauth: no proxy session for %s: %s", user.get_username(), exc)
        return False
    if grant is None:
        return False
    if grant.created:
        session.pop(RETRY_KEY, None)
    if grant.record != remembered:  # write the session only when something changed
        session[SESSION_KEY] = grant.record
    if grant.created or request.COOKIES.get(runtime.session.cookie_name) != grant.session_id:
        set_cookie(response, grant.cookie)
    return True


def end_proxy_sessions(request: HttpRequest, user: Any = None) -> None:
    """End the user's proxy sessions on every node; forget the session; mark the cookie for clearing.

    Local state is cleared first, so a QPS failure never leaves the browser half
    signed-in; the QPS error is then raised.
    """
    runtime = get_runtime()
    request._qlikauth_clear_cookie = True  # type: ignore[attr-defined]
    remembered = None
    if hasattr(request, "session"):
        remembered = request.session.pop(SESSION_KEY, None)
    sids = {request.COOKIES.get(runtime.config.effective_cookie_name), (remembered or {}).get("sid")} - {None, ""}
    qlik_user = None
    if user is not None and user.is_authenticated:
        from .conf import get_user_mapper
        qlik_user = get_user_mapper()(user)
    if qlik_user is not None:
        runtime.qps.logout_user(qlik_user)
    for sid in sids:
        runtime.qps.delete_session(sid)


def on_user_logged_out(sender: Any, request: HttpRequest | None = None, user: Any = None, **_: Any) -> None:
    """``user_logged_out`` receiver: end the user's proxy sessions on every node, clear the cookie."""
    if request is None:
        return
    try:
        end_proxy_sessions(request, user)
    except QlikAuthError as exc:
        log.error("qlikauth: ending the Qlik sessions at logout failed (they end when they time "
                  "out): %s", exc)
