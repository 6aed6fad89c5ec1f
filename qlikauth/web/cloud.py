"""The Qlik Cloud and JWT sign-in endpoints, written once: a :class:`WebRequest` in, an answer out.

* :func:`access_token` (``POST /qlik/cloud/access-token``): the signed-in user's Qlik Cloud
  access token for qlik-embed's ``data-get-access-token`` (ensure-user first, then the
  per-user token cache). Same-origin only: a POST that passed the framework's CSRF check
  (Django) or whose ``Origin``/``Referer`` is this host (Flask), and never when the browser
  says ``Sec-Fetch-Site`` is anything but ``same-origin``; no CORS headers; ``Cache-Control:
  no-store``; the token is the body, ``text/plain``, and is never logged.
* :func:`cloud_jwt` (``POST /qlik/cloud/jwt``): a fresh Qlik Cloud JWT for the browser to
  exchange at the tenant's ``/login/jwt-session`` itself (JWT sign-in; needs third-party
  cookies when the tenant is embedded cross-site), same rules.
* :func:`qseow_jwt_login` (``GET /qlik/jwt/login``): sign in through a QSEoW JWT virtual
  proxy (the proxy session cookie is set for the browser, as session mode does) and go to
  the hub.
* :func:`cloud_logout` (``POST /qlik/cloud/logout``): revoke and forget the user's access
  token only.

One sign-out for a hybrid portal: mounting these endpoints registers the
:class:`CloudPortal` with the runtime (:meth:`~qlikauth.web.runtime.QlikAuthRuntime.add_sign_out`),
so the portal's sign-out (``POST /qlik/logout``, Django's logout, ``QlikAuth.end_sessions``;
all through :func:`qlikauth.web.flows.end_sessions`) ends the QSEoW proxy sessions on every
node *and* revokes and forgets the user's Qlik Cloud access token (:meth:`CloudPortal.sign_out`).

The integrations mount them with one line each (``django_qlikauth.cloud``,
``flask_qlikauth.cloud``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..authenticators.jwt import JwtAuthenticator
from ..cloud import CloudAccess, CloudJwtIssuer, CloudUser
from ..exceptions import ConfigurationError
from ..identity import QlikUser
from ..mapping import CloudIdentity
from .flows import (
    NO_STORE,
    Answer,
    JsonAnswer,
    PlainAnswer,
    RedirectAnswer,
    WebRequest,
    same_origin,
)

__all__ = [
    "CloudPortal",
    "identity_from_user",
    "access_token",
    "cloud_jwt",
    "qseow_jwt_login",
    "cloud_logout",
    "TOKEN_HEADERS",
]

log = logging.getLogger("qlikauth.web.cloud")

#: The headers of an answer that carries a token: never stored, never sniffed, never framed.
TOKEN_HEADERS: tuple[tuple[str, str], ...] = NO_STORE + (
    ("Pragma", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


def identity_from_user(user: QlikUser | None) -> CloudUser | None:
    """The Qlik Cloud identity of a Qlik user when the user id is the e-mail and the directory the
    realm (one person is one user on-premises and in Qlik Cloud).

    ``sub`` and ``email`` are the user id, ``groups`` the ``group`` attributes, ``realm`` the
    user directory; ``name`` is the ``name`` attribute when there is one. A user id that is
    not an e-mail address gives None (configure ``identity=`` from the claims mapping instead).
    """
    if user is None or "@" not in user.user_id:
        return None
    names = user.get_all("name")
    return CloudIdentity(
        sub=user.user_id,
        name=names[0] if names else user.user_id,
        email=user.user_id,
        email_verified=True,
        groups=tuple(user.groups),
        realm=user.user_directory,
    )


@dataclass
class CloudPortal:
    """What the Qlik Cloud / JWT endpoints use, built once by the integrator.

    :param access: ensure-user + token cache (:class:`~qlikauth.cloud.CloudAccess`).
    :param identity: the signed-in user's Qlik Cloud identity for a request (default: from
        the portal's :class:`~qlikauth.QlikUser` by :func:`identity_from_user`; with a
        claims mapping, ``lambda req: mapping.cloud_identity(req.session["claims"])``).
    :param jwt_issuer: for :func:`cloud_jwt` (browser-side JWT sign-in).
    :param qseow_jwt: for :func:`qseow_jwt_login`, and ``hub_url`` where it sends the browser.
    """

    access: CloudAccess | None = None
    identity: Callable[[WebRequest], CloudUser | None] | None = None
    jwt_issuer: CloudJwtIssuer | None = None
    qseow_jwt: JwtAuthenticator | None = None
    hub_url: str | None = None

    def identity_for(self, request: WebRequest, user: QlikUser | None = None) -> CloudUser | None:
        """The Qlik Cloud identity of the request's signed-in user (or of ``user``), or None."""
        if self.identity is not None:
            return self.identity(request)
        return identity_from_user(user if user is not None else request.qlik_user())

    def sign_out(self, request: WebRequest | None, user: QlikUser | None = None) -> bool:
        """Revoke the user's Qlik Cloud access token at the tenant and forget it; True when there
        was one.

        The portal's sign-out calls it (:func:`qlikauth.web.flows.end_sessions`, once the
        Qlik Cloud endpoints are mounted: :meth:`QlikAuthRuntime.add_sign_out`), next to
        ending the QSEoW proxy sessions on every node. ``user`` is the Qlik user being
        signed out (default: the request's); ``request`` is None for a sign-out without a browser.
        A failed revocation is logged; the token is forgotten all the same, so this portal never
        hands it out again.
        """
        if self.access is None:
            return False
        # Without a browser (back-channel logout, a SAML LogoutRequest for other sessions) the
        # request-based identity cannot be read: the Qlik user's own convention is used.
        identity = (
            self.identity_for(request, user) if request is not None else identity_from_user(user)
        )
        if identity is None:
            return False
        return self.access.logout(identity)


def _refuse_cross_site(request: WebRequest) -> Answer | None:
    if request.method != "POST":
        return PlainAnswer(
            status=405, body="Method not allowed.\n", headers=NO_STORE + (("Allow", "POST"),)
        )
    site = request.header("Sec-Fetch-Site")
    if site is not None and site.lower() != "same-origin":
        return PlainAnswer(
            status=403, body="Forbidden: only the portal's own pages may ask for this.\n"
        )
    if not request.csrf_verified and not same_origin(request):
        log.warning(
            "qlikauth: refused a cross-site %s (Origin %r)", request.path, request.header("Origin")
        )
        return PlainAnswer(
            status=403, body="Forbidden: only the portal's own pages may ask for this.\n"
        )
    return None


def _not_signed_in() -> Answer:
    return JsonAnswer(
        status=401, data={"error": "not_signed_in", "detail": "Sign in to the portal first."}
    )


def _token_gate(
    request: WebRequest, portal: CloudPortal, part: object, missing: str
) -> tuple[CloudUser | None, Answer | None]:
    """What both token endpoints check first, in this order: a same-origin POST, then ``part``
    configured (else ``ConfigurationError(missing)``: a deployment error, not the browser's), then
    a signed-in user. Gives the user, or the answer that refuses the request."""
    refused = _refuse_cross_site(request)
    if refused is not None:
        return None, refused
    if part is None:
        raise ConfigurationError(missing)
    user = portal.identity_for(request)
    if user is None:
        return None, _not_signed_in()
    return user, None


def access_token(request: WebRequest, portal: CloudPortal) -> Answer:
    """``POST``: the signed-in user's access token for qlik-embed, as ``text/plain``."""
    user, refused = _token_gate(
        request,
        portal,
        portal.access,
        "the access-token endpoint needs CloudPortal(access=CloudAccess(...)).",
    )
    if refused is not None:
        return refused
    assert user is not None and portal.access is not None
    token = portal.access.access_token(user)
    return PlainAnswer(body=token.access_token, headers=TOKEN_HEADERS)


def cloud_jwt(request: WebRequest, portal: CloudPortal) -> Answer:
    """``POST``: a fresh Qlik Cloud JWT for the browser's own ``/login/jwt-session``."""
    user, refused = _token_gate(
        request,
        portal,
        portal.jwt_issuer,
        "the JWT endpoint needs CloudPortal(jwt_issuer=CloudJwtIssuer(...)).",
    )
    if refused is not None:
        return refused
    assert user is not None and portal.jwt_issuer is not None
    return PlainAnswer(body=portal.jwt_issuer.mint(user), headers=TOKEN_HEADERS)


def qseow_jwt_login(request: WebRequest, portal: CloudPortal) -> Answer:
    """``GET``: sign the portal user in through the QSEoW JWT virtual proxy, set its cookie, go to
    the hub."""
    if request.method not in ("GET", "HEAD"):
        return PlainAnswer(
            status=405, body="Method not allowed.\n", headers=NO_STORE + (("Allow", "GET"),)
        )
    if portal.qseow_jwt is None:
        raise ConfigurationError(
            "the JWT login endpoint needs CloudPortal(qseow_jwt=JwtAuthenticator(...))."
        )
    user = request.qlik_user()
    if user is None:
        return _not_signed_in()
    cookie = portal.qseow_jwt.login(user)
    return RedirectAnswer(
        location=portal.hub_url or portal.qseow_jwt.proxy_url + "hub/", cookies=(cookie,)
    )


def cloud_logout(request: WebRequest, portal: CloudPortal) -> Answer:
    """``POST``: revoke the user's Qlik Cloud access token and forget it (204); the QSEoW
    sessions stay (the portal's own sign-out ends both: :meth:`CloudPortal.sign_out`)."""
    refused = _refuse_cross_site(request)
    if refused is not None:
        return refused
    portal.sign_out(request)
    return PlainAnswer(status=204, headers=TOKEN_HEADERS)
