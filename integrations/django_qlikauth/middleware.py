"""``QlikSessionMiddleware``: a proxy session (and its cookie) for every signed-in Django user;
``SsoLoginMiddleware``: a Django sign-in made by SSO ends with its SSO sign-in.

Put it after ``AuthenticationMiddleware``. It works on the response, so the login
view's own response already carries the cookie. In ticket mode it only clears the
cookie after logout. The decisions are :func:`qlikauth.web.flows.resume_session`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from qlikauth.exceptions import ConfigurationError, QlikAuthError
from qlikauth.web import flows

from .conf import get_runtime, portal_user_id, qlik_user_for
from .render import set_cookie, web_request

log = logging.getLogger("django_qlikauth")


class QlikSessionMiddleware:
    """Create a proxy session once per signed-in user; zero QPS calls on later page views."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from django.apps import apps
        from django.core.exceptions import ImproperlyConfigured

        if not apps.is_installed("django_qlikauth"):
            # Without the app its ready() never connects user_logged_out: logging out of Django
            # would silently leave the user's Qlik sessions alive (and no system check runs).
            raise ImproperlyConfigured(
                "QlikSessionMiddleware is in MIDDLEWARE but 'django_qlikauth' is not in "
                "INSTALLED_APPS: "
                "add it, or logging out of the portal does not end the user's Qlik sessions."
            )
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        try:
            runtime = get_runtime()
        except ConfigurationError as exc:
            log.error("qlikauth: not configured, no proxy sessions: %s", exc)
            return response
        pending = getattr(request, "_qlikauth_cookies", None)
        if pending is not None:  # logout: the signal ended the sessions
            for cookie in pending:
                set_cookie(response, cookie)
            return response
        if getattr(request, "_qlikauth_answered", False):
            return response  # a qlikauth view already answered for the proxy cookie
        user = getattr(request, "user", None)
        if (
            runtime.config.mode == "session"
            and hasattr(request, "session")
            and user is not None
            and user.is_authenticated
        ):
            # Every signed-in page view: the common case (the remembered session is current and
            # the browser carries it) is decided before the whole request is described.
            try:
                qlik_user = qlik_user_for(request)
            except QlikAuthError:
                # A mapping that fails (a USER_MAPPER error, a value Qlik refuses) is the flow's
                # to handle: resume_session maps again and logs it; the page itself is served.
                outcome = flows.resume_session(web_request(request), runtime)
            else:
                reused = flows.reused_session(
                    request.session,
                    request.COOKIES,
                    qlik_user,
                    runtime,
                    owner=portal_user_id(request),
                )
                if reused is None:
                    described = web_request(request)
                    described.user = qlik_user  # mapped once
                    reused = flows.resume_session(described, runtime)
                outcome = reused
            for cookie in outcome.cookies:
                set_cookie(response, cookie)
        return response


class SsoLoginMiddleware:
    """Log out a Django user signed in by SSO once that SSO sign-in has ended.

    For :class:`~django_qlikauth.backends.SsoBackend` sign-ins: put it after
    ``AuthenticationMiddleware`` (and after ``OidcSessionMiddleware`` when that is installed).
    A single logout or back-channel logout received by any portal instance, or an OIDC session
    cap, then ends the Django sign-in on this browser's next request, before the view runs, so
    ``@login_required`` views and the admin no longer let the user in.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from .backends import end_login_if_sso_ended

        end_login_if_sso_ended(request)
        return self.get_response(request)
