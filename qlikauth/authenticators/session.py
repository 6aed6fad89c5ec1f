"""Session authentication: create the proxy session ourselves and hand the browser its cookie.

Used when the portal and Qlik share a parent domain (or for mashups): the portal calls
``POST /session`` and sets the virtual proxy's session cookie, so the first request to
Qlik is already signed in.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..exceptions import ConfigurationError
from ..identity import QlikUser
from ..qps import ProxySession, QpsClient
from .base import Cookie, check_cookie_name

__all__ = ["SessionAuthenticator", "default_cookie_name"]


def default_cookie_name(virtual_proxy: str) -> str:
    """Qlik's recommended cookie name for a virtual proxy prefix."""
    return f"X-Qlik-Session-{virtual_proxy}" if virtual_proxy else "X-Qlik-Session"


class SessionAuthenticator:
    """Sign users in by creating proxy sessions and returning the cookie to set.

    :param cookie_name: the virtual proxy's *session cookie header name* (QMC); defaults
        to ``X-Qlik-Session-<prefix>``.
    :param cookie_domain: the domain the cookie is set for; ``None`` for the portal's own
        host. It must cover the Qlik proxy's host or the browser will not send it there.
    :param secure, samesite: ``SameSite=None`` (needed when Qlik is embedded from another
        site) requires ``Secure``.
    :param max_age: ``None`` (default) makes a browser-session cookie; only set it on
        purpose: a persistent cookie keeps a shared workstation signed in.
    """

    def __init__(
        self,
        qps: QpsClient,
        cookie_name: str | None = None,
        cookie_domain: str | None = None,
        secure: bool = True,
        samesite: str | None = "None",
        *,
        path: str = "/",
        http_only: bool = True,
        max_age: int | None = None,
    ) -> None:
        self.qps = qps
        self.cookie_name = check_cookie_name(cookie_name or default_cookie_name(qps.virtual_proxy))
        if max_age is not None and max_age <= 0:
            raise ConfigurationError("max_age must be a positive number of seconds, or None.")
        self._template = Cookie(self.cookie_name, "", cookie_domain, path, secure, http_only,
                                samesite, max_age)

    def create(self, user: QlikUser) -> tuple[ProxySession, Cookie]:
        """Create a proxy session; return it and the cookie that carries it."""
        session = self.qps.add_session(user)
        t = self._template
        return session, Cookie(t.name, session.session_id, t.domain, t.path, t.secure,
                               t.http_only, t.samesite, t.max_age)

    def login(self, user: QlikUser) -> Cookie:
        """Create a proxy session for ``user`` and return the cookie to set."""
        return self.create(user)[1]

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
