"""Proxy sessions for Django users: the flows' session mode, fed from Django's session and
signals."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest

from qlikauth.exceptions import QlikAuthError
from qlikauth.web import flows
from qlikauth.web.flows import RETRY_AFTER_SECONDS, RETRY_KEY, SESSION_KEY

from .conf import get_runtime, get_user_mapper
from .render import web_request

__all__ = [
    "SESSION_KEY",
    "RETRY_KEY",
    "RETRY_AFTER_SECONDS",
    "on_user_logged_in",
    "on_user_logged_out",
]

log = logging.getLogger("django_qlikauth")


def on_user_logged_in(
    sender: Any, request: HttpRequest | None = None, user: Any = None, **_: Any
) -> None:
    """``user_logged_in`` receiver: the portal's own sign-in, completed by qlikauth's one pipeline.

    Whoever signed in in this browser before (another person at a shared workstation) is signed
    out of Qlik on every node first; session mode makes the proxy session now. The cookies go
    onto the response through ``QlikSessionMiddleware``. A Qlik failure does not stop the
    portal's own sign-in: it is logged, and ``/qlik/login`` tries again.
    """
    if request is None or getattr(request, "_qlikauth_sso_login", False):
        return  # an SSO flow's own Django sign-in: the flow has completed the Qlik sign-in
    try:
        runtime = get_runtime()
        qlik_user = get_user_mapper()(user) if user is not None else None
        if qlik_user is None:
            return
        described = web_request(request)
        described.user = qlik_user
        cookies = flows.portal_signed_in(described, runtime, qlik_user)
        request._qlikauth_cookies = cookies  # type: ignore[attr-defined]
    except QlikAuthError as exc:
        log.error(
            "qlikauth: the portal sign-in could not be completed in Qlik (opening Qlik "
            "tries again): %s",
            exc,
        )


def on_user_logged_out(
    sender: Any, request: HttpRequest | None = None, user: Any = None, **_: Any
) -> None:
    """``user_logged_out`` receiver: the one sign-out (every node, Qlik Cloud, the sign-in revoked).

    Django flushes the session after this signal; the middleware sets the clearing cookies
    on the response. A node that fails keeps its part pending; nothing is raised.
    """
    if request is None:
        return
    runtime = get_runtime()
    from .backends import signed_in_by_sso, sso_user  # needs django.contrib.auth, as logout() does

    try:
        if signed_in_by_sso(request):
            # the SSO sign-in's Qlik user (None when it has ended: its flow ended its sessions)
            qlik_user = sso_user(request)
        else:
            qlik_user = (
                get_user_mapper()(user) if user is not None and user.is_authenticated else None
            )
    except QlikAuthError as exc:
        log.warning(
            "qlikauth: cannot map the user signing out (%s); ending what the portal "
            "session recorded",
            exc,
        )
        qlik_user = None
    cookies = flows.portal_signed_out(web_request(request), runtime, qlik_user)
    request._qlikauth_cookies = cookies  # type: ignore[attr-defined]
