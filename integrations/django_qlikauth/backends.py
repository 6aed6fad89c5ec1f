"""A SAML or OIDC sign-in as a Django sign-in: :class:`SsoBackend` and the glue that calls it.

With ``"django_qlikauth.backends.SsoBackend"`` in ``AUTHENTICATION_BACKENDS`` (and
``django.contrib.auth`` installed), a successful sign-in through ``/qlik/saml/acs`` or
``/oidc/callback`` also calls :func:`django.contrib.auth.authenticate` with the signed-in
:class:`~qlikauth.QlikUser` (``sso_user=``) and :func:`django.contrib.auth.login` with the Django
user it answers: ``request.user``, ``@login_required`` and the admin see the sign-in. The
protocol, the claims mapping and the Qlik sign-in stay in :mod:`qlikauth.web.saml` and
:mod:`qlikauth.web.oidc`; this module only ties their outcome to Django's authentication.

The Django user stays tied to the SSO sign-in: when the SSO session ends (single logout,
back-channel logout, the OIDC caps, ``/qlik/saml/logout``, ``/oidc/logout``), the Django user is
logged out too (:func:`end_login_if_sso_ended`, run by the SSO logout views and by
:class:`~django_qlikauth.middleware.SsoLoginMiddleware` on every request), and Django's
``logout()`` ends the SSO sign-in and every proxy session of the Qlik user.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from qlikauth.exceptions import QlikAuthError
from qlikauth.identity import QlikUser
from qlikauth.web import flows, oidc, saml

__all__ = [
    "SsoBackend",
    "sso_backend_configured",
    "signed_in_by_sso",
    "sso_user",
    "sso_login",
    "end_login_if_sso_ended",
]

log = logging.getLogger("django_qlikauth")

#: What the SSO flows keep in the portal's session; carried over when ``login()`` starts a new
#: session over another Django user's (Django then flushes the session instead of cycling its key).
_SSO_STATE_KEYS = (
    saml.SAML_SESSION_KEY,
    oidc.OIDC_SESSION_KEY,
    flows.SESSION_KEY,
    flows.SIGNIN_KEY,
)
_CACHE = "_qlikauth_sso_user"


class SsoBackend(ModelBackend):
    """Authenticate the Django user of a verified SAML or OIDC sign-in (``sso_user=``).

    Like Django's ``RemoteUserBackend``, it trusts its caller: only the SSO flows' glue passes
    ``sso_user``, after the IdP's answer passed every check. Customise by subclassing:

    * :attr:`create_unknown_user` (default True, as djangosaml2): make the Django user on first
      sign-in; False: only users that already exist are signed in.
    * :attr:`include_directory` (default True): the username is ``DIRECTORY\\userid``
      (:attr:`QlikUser.qualified_name`), which Django's own username validator never allows, so an
      SSO sign-in cannot take over a local account (``admin``). False: the bare user id.
    * :attr:`adopt_privileged_users` (default False): with ``include_directory = False`` an SSO
      user id can equal a local account's username (an IdP user named ``admin``). Such a sign-in
      is refused when the existing Django user has a usable password, is staff or is a
      superuser: an SSO sign-in never takes over a local or privileged account. True (in a
      subclass) lets it, for a project whose IdP is the only way in and whose
      :meth:`configure_user` grants staff from claims.
    * :meth:`clean_username`, :meth:`configure_user` (grant privileges from claims here: the
      backend itself never sets ``is_staff``, ``is_superuser``, groups or permissions).

    A created user has an unusable password (``set_unusable_password``): it signs in only by SSO.
    Permissions are :class:`~django.contrib.auth.backends.ModelBackend`'s.
    """

    create_unknown_user = True
    include_directory = True
    adopt_privileged_users = False

    def __init__(
        self,
        *,
        create_unknown_user: bool | None = None,
        include_directory: bool | None = None,
        adopt_privileged_users: bool | None = None,
    ) -> None:
        # Django builds backends without arguments (the class attributes); code and tests may
        # pass them: SsoBackend(include_directory=False).
        super().__init__()
        if create_unknown_user is not None:
            self.create_unknown_user = create_unknown_user
        if include_directory is not None:
            self.include_directory = include_directory
        if adopt_privileged_users is not None:
            self.adopt_privileged_users = adopt_privileged_users

    def authenticate(
        self,
        request: HttpRequest | None,
        sso_user: QlikUser | None = None,  # type: ignore[override]
        **kwargs: Any,
    ) -> Any:
        """The Django user for ``sso_user`` (created when unknown and allowed), or None."""
        if not isinstance(sso_user, QlikUser):
            return None  # not an SSO sign-in (a password login asks the other backends)
        from django.contrib.auth import get_user_model

        model = get_user_model()
        username = self.clean_username(self.username_for(sso_user))
        field = model._meta.get_field(model.USERNAME_FIELD)
        limit = getattr(field, "max_length", None)
        if not username or (limit and len(username) > limit):
            log.warning(
                "qlikauth: the SSO user %s gives no valid %s username (empty or longer than %s): "
                "not signed in to Django",
                sso_user.qualified_name,
                model.__name__,
                limit,
            )
            return None
        created = False
        if self.create_unknown_user:
            user, created = model._default_manager.get_or_create(**{model.USERNAME_FIELD: username})
            if created:
                user.set_unusable_password()
                user.save()
        else:
            try:
                user = model._default_manager.get_by_natural_key(username)
            except model.DoesNotExist:
                log.info(
                    "qlikauth: SSO user %s has no Django user and create_unknown_user is off",
                    sso_user.qualified_name,
                )
                return None
        if not created and not self.may_adopt(user):
            log.warning(
                "qlikauth: SSO user %s names an existing Django user that has a password "
                "or is staff or superuser: not signed in to Django (see "
                "SsoBackend.adopt_privileged_users)",
                sso_user.qualified_name,
            )
            return None
        user = self.configure_user(request, user, sso_user, created=created)
        return user if self.user_can_authenticate(user) else None

    def may_adopt(self, user: Any) -> bool:
        """Whether an SSO sign-in may become the existing ``user``.

        With the bare user id (``include_directory = False``) a local account could share the
        name: one with a usable password, staff or superuser is never adopted unless
        :attr:`adopt_privileged_users` says so. ``DIRECTORY\\userid`` names cannot be made by
        Django's username validator, so those users are the SSO sign-ins' own.
        """
        if self.include_directory or self.adopt_privileged_users:
            return True
        usable = user.has_usable_password() if hasattr(user, "has_usable_password") else True
        privileged = getattr(user, "is_staff", False) or getattr(user, "is_superuser", False)
        return not (usable or privileged)

    def username_for(self, sso_user: QlikUser) -> str:
        """``DIRECTORY\\userid`` (:attr:`include_directory`), else the user id."""
        return sso_user.qualified_name if self.include_directory else sso_user.user_id

    def clean_username(self, username: str) -> str:
        """Hook: normalise the username (unchanged by default)."""
        return username

    def configure_user(
        self, request: HttpRequest | None, user: Any, sso_user: QlikUser, *, created: bool
    ) -> Any:
        """Hook, run at every SSO sign-in: update ``user`` from the claims and return it.

        By default only the e-mail address follows the ``email`` attribute (when the user model
        has an ``email`` field and the claims mapping gives one); nothing else, no privilege.
        """
        emails = sso_user.get_all("email")
        if emails and hasattr(user, "email") and user.email != emails[0]:
            user.email = emails[0]
            user.save(update_fields=["email"])
        return user


def sso_backend_configured() -> bool:
    """``django.contrib.auth`` is installed and an :class:`SsoBackend` is in
    ``AUTHENTICATION_BACKENDS``."""
    from django.apps import apps

    if not apps.is_installed("django.contrib.auth"):
        return False
    from django.contrib.auth import get_backends

    return any(isinstance(b, SsoBackend) for b in get_backends())


def signed_in_by_sso(request: HttpRequest) -> bool:
    """The Django user of ``request`` was signed in by an :class:`SsoBackend`."""
    session = getattr(request, "session", None)
    user = getattr(request, "user", None)
    if session is None or user is None or not user.is_authenticated:
        return False
    from django.contrib.auth import BACKEND_SESSION_KEY, load_backend

    path = session.get(BACKEND_SESSION_KEY)
    try:
        return bool(path) and isinstance(load_backend(path), SsoBackend)
    except ImportError:
        return False


def sso_user(request: HttpRequest) -> QlikUser | None:
    """The Qlik user of this browser's live SAML or OIDC sign-in, or None (computed once per
    request).

    An OIDC sign-in is checked by :func:`qlikauth.web.oidc.sso_session` (back-channel logout,
    the caps; ``OidcSessionMiddleware`` has done it when installed), a SAML one by
    :func:`qlikauth.web.saml.saml_user` (single logout received by any portal instance).
    """
    cached = getattr(request, _CACHE, None)
    if cached is not None:
        return cached[0]
    from .conf import get_runtime

    session = getattr(request, "session", None)
    user: QlikUser | None = None
    try:
        if session is not None and oidc.OIDC_SESSION_KEY in session:
            if hasattr(request, "qlikauth_sso_user"):
                user = request.qlikauth_sso_user
            else:
                # only the session matters here (web_request() would ask who is signed in: us)
                user = oidc.sso_session(
                    flows.WebRequest("GET", request.path, session=session), get_runtime()
                ).user
        if user is None and session is not None and saml.SAML_SESSION_KEY in session:
            user = saml.saml_user(session, get_runtime())
    except QlikAuthError as exc:  # a broken configuration: nobody is signed in by SSO
        log.error("qlikauth: cannot check the SSO sign-in: %s", exc)
        user = None
    setattr(request, _CACHE, (user,))
    return user


def sso_login(request: HttpRequest, user: QlikUser) -> bool:
    """After a successful SSO sign-in: ``authenticate`` + ``login`` (when :class:`SsoBackend` is
    configured).

    ``login()`` gives the session a new key (fixation); over another Django user's session it
    starts an empty one, so the SSO flows' state (the SAML/OIDC sign-in, the remembered proxy
    session) is carried over. Returns whether the Django user is now signed in.
    """
    if not sso_backend_configured():
        return False
    from django.contrib.auth import authenticate, login

    django_user = authenticate(request, sso_user=user)
    if django_user is None:
        log.warning(
            "qlikauth: SSO user %s was not signed in to Django (no Django user for it)",
            user.qualified_name,
        )
        return False
    session: Any = request.session  # type: ignore[attr-defined]
    kept = {k: session[k] for k in _SSO_STATE_KEYS if k in session}
    # the flow did the Qlik sign-in: the user_logged_in receiver must not do it again
    request._qlikauth_sso_login = True  # type: ignore[attr-defined]
    try:
        login(request, django_user)
    finally:
        request._qlikauth_sso_login = False  # type: ignore[attr-defined]
    for k, v in kept.items():
        request.session[k] = v  # type: ignore[attr-defined]
    setattr(request, _CACHE, (user,))
    return True


def end_login_if_sso_ended(request: HttpRequest) -> bool:
    """Log out the Django user signed in by SSO whose SSO sign-in has ended; True when it did.

    Django's ``logout()`` sends ``user_logged_out`` (the Qlik user's proxy sessions end on every
    node, :func:`~django_qlikauth.sessions.on_user_logged_out`) and flushes the session.
    """
    if not signed_in_by_sso(request):
        return False
    if hasattr(request, _CACHE):
        delattr(request, _CACHE)  # the flow may just have ended it
    if sso_user(request) is not None:
        return False
    from django.contrib.auth import logout

    log.info("qlikauth: the SSO sign-in ended, so does the Django sign-in")
    logout(request)
    return True
