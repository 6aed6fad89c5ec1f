"""``QlikSessionMiddleware``: a proxy session (and its cookie) for every signed-in Django user.

Put it after ``AuthenticationMiddleware``. It works on the response, so the login
view's own response already carries the cookie. In ticket mode it only clears the
cookie after logout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from qlikauth.exceptions import ConfigurationError

from .conf import get_runtime
from .sessions import ensure_proxy_session, set_cookie

log = logging.getLogger("django_qlikauth")


class QlikSessionMiddleware:
    """Create a proxy session once per signed-in user; zero QPS calls on later page views."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        try:
            runtime = get_runtime()
        except ConfigurationError as exc:
            log.error("qlikauth is not configured, no proxy sessions: %s", exc)
            return response
        if getattr(request, "_qlikauth_clear_cookie", False):
            set_cookie(response, runtime.clear_cookie())
            return response
        if runtime.config.mode == "session" and hasattr(request, "session"):
            ensure_proxy_session(request, response)
        return response
