"""Django app: sign a portal's users into Qlik Sense with qlikauth.

Add ``"django_qlikauth"`` to ``INSTALLED_APPS`` (app label ``qlikauth``), configure
``QLIKAUTH = {...}`` (keys in :mod:`qlikauth.config`), include
``path("qlik/", include("django_qlikauth.urls"))`` (namespace ``qlikauth``: ``login``,
``module``, ``logout`` (POST with the CSRF token; GET shows a sign-out button),
``header-auth``) and, for session mode, add
``"django_qlikauth.middleware.QlikSessionMiddleware"`` after Django's
``AuthenticationMiddleware``.
"""
