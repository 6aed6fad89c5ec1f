"""Proxy sessions for Django users: the flows' session mode, fed from Django's session and signals."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest

from qlikauth.exceptions import QlikAuthError
from qlikauth.web import flows
from qlikauth.web.flows import RETRY_AFTER_SECONDS, RETRY_KEY, SESSION_KEY

from .conf import get_runtime, get_user_mapper
from .render import web_request

__all__ = ["SESSION_KEY", "RETRY_KEY", "RETRY_AFTER_SECONDS", "on_user_logged_out"]

log = logging.getLogger("django_qlikauth")


def on_user_logged_out(sender: Any, request: HttpRequest | None = None, user: Any = None, **_: Any) -> None:
    """``user_logged_out`` receiver: end the user's proxy sessions on every node, clear the cookie.

    Django flushes the session after this signal; the middleware sets the clearing cookie
    on the response.
    """
    if request is None:
        return
    runtime = get_runtime()
    request._qlikauth_cookies = (runtime.clear_cookie(),)  # type: ignore[attr-defined]
    from .backends import signed_in_by_sso, sso_user  # needs django.contrib.auth, as logout() does

    if signed_in_by_sso(request):
        # the SSO sign-in's Qlik user (None when it has ended: its flow ended its sessions); Django
        # flushes the session after this signal, which ends the portal's SSO sign-in too
        qlik_user = sso_user(request)
    else:
        qlik_user = get_user_mapper()(user) if user is not None and user.is_authenticated else None
    try:
        flows.end_sessions(web_request(request), runtime, qlik_user)
    except QlikAuthError as exc:
        log.error("qlikauth: ending the Qlik sessions at logout failed (they end when they time "
                  "out): %s", exc)
