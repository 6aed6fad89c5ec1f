"""Django configured once for the whole test run, the same whichever Django test module runs first.

``configure_django()`` is called at the top of every test module that uses Django
(tests/django, tests/oidc/test_django_oidc.py): the first call configures the settings below,
sets Django up and creates the tables in an in-memory SQLite database; later calls do nothing.
Tests change what they need with ``override_settings``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The test URLconfs (qlikauth_django_test_urls, ...) live in tests/django.
_DJANGO_TESTS = str(Path(__file__).resolve().parent / "django")


def configure_django() -> None:
    """Configure and set up Django for the tests, unless that is done already."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    if _DJANGO_TESTS not in sys.path:
        sys.path.insert(0, _DJANGO_TESTS)
    settings.configure(
        SECRET_KEY="test-secret",
        ALLOWED_HOSTS=["testserver", "localhost"],
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django_qlikauth",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django_qlikauth.middleware.QlikSessionMiddleware",
        ],
        ROOT_URLCONF="qlikauth_django_test_urls",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        TEMPLATES=[
            {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
        ],
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        QLIKAUTH={
            "QPS_NODES": "https://localhost:1",
            "CERTS": "/nonexistent",
            "HUB_URL": "https://localhost/hub/",
        },
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
