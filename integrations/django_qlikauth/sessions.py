"""Proxy sessions for Django users: create once, remember in the Django session, end at logout."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.http import HttpRequest, HttpResponse

from qlikauth.authenticators.base import Cookie
from qlikauth.exceptions import QlikAuthError, QpsError

from .conf import get_runtime, qlik_user_for

log = logging.getLogger("django_qlikauth")

#: The Django session key holding the live proxy session: {"sid", "uid", "node", "checked"}.
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


def _cookie_for(sid: str) -> Cookie:
    c = get_runtime().config
    return Cookie(c.effective_cookie_name, sid, c.cookie_domain, "/", c.cookie_secure, True,
                  c.cookie_samesite)


def ensure_proxy_session(request: HttpRequest, response: HttpResponse, *, strict: bool = False) -> bool:
    """Give the signed-in user a proxy session and its cookie; True when one is in place.

    A proxy session remembered in the Django session for the same user is reused: the
    only work is re-setting the cookie if the browser lacks it, so ordinary page views
    make no QPS call. ``strict`` (the login view) raises QPS errors instead of logging
    them and backing off for a while (the middleware). With SESSION_RECHECK > 0 the remembered session is looked up at
    most that often, and replaced when QPS has ended it.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    runtime = get_runtime()
    session = request.session
    uid = f"{user._meta.label_lower}:{user.pk}"  # not type(): request.user is a lazy proxy
    remembered = session.get(SESSION_KEY)
    now = time.time()
    if remembered and remembered.get("uid") == uid:
        recheck = runtime.config.session_recheck
        if recheck and now - remembered.get("checked", 0) > recheck:
            try:
                alive = runtime.qps.get_session(remembered["sid"]) is not None
            except QpsError as exc:
                log.warning("qlikauth: could not check the proxy session: %s", exc)
                alive = True
            if alive:
                remembered["checked"] = now
                session[SESSION_KEY] = remembered
            else:
                remembered = None
        if remembered:
            if request.COOKIES.get(runtime.config.effective_cookie_name) != remembered["sid"]:
                set_cookie(response, _cookie_for(remembered["sid"]))
            return True
    if not strict and session.get(RETRY_KEY, 0) > now:
        return False
    try:
        qlik_user = qlik_user_for(request)
        if qlik_user is None:
            return False
        proxy_session, cookie = runtime.session.create(qlik_user)
    except QlikAuthError as exc:
        # The portal keeps working; Qlik stays signed out and we try again a little later.
        session[RETRY_KEY] = now + RETRY_AFTER_SECONDS
        if strict:
            raise
        log.warning("qlikauth: no proxy session for %s: %s", user.get_username(), exc)
        return False
    session.pop(RETRY_KEY, None)
    session[SESSION_KEY] = {"sid": proxy_session.session_id, "uid": uid,
                            "node": proxy_session.node, "checked": now}
    set_cookie(response, cookie)
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
