"""Django app: sign a portal's users into Qlik Sense with qlikauth.

Add ``"django_qlikauth"`` to ``INSTALLED_APPS`` (app label ``qlikauth``), configure
``QLIKAUTH = {...}`` (keys in :mod:`qlikauth.web.config`), include
``path("qlik/", include("django_qlikauth.urls"))`` (namespace ``qlikauth``: ``login``,
``module``, ``logout`` (POST with the CSRF token; GET shows a sign-out button),
``header-auth``) and, for session mode, add
``"django_qlikauth.middleware.QlikSessionMiddleware"`` after Django's
``AuthenticationMiddleware``. ``django_qlikauth.backends.SsoBackend`` in
``AUTHENTICATION_BACKENDS`` (with ``django_qlikauth.middleware.SsoLoginMiddleware``) makes a SAML
or OIDC sign-in a Django sign-in too.
"""

try:
    import django as _django  # noqa: F401 - only to name the extra when Django is missing
except ImportError as _exc:
    raise ModuleNotFoundError(
        "django_qlikauth needs Django, which is not installed: pip install 'qlikauth[django]'",
        name=_exc.name,
    ) from _exc
