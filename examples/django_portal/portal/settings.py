"""Settings for the example Django portal: Django auth, session mode, settings from the environment.

QLIKAUTH_* environment variables become ``QLIKAUTH = {...}`` (``run.py`` sets them to
the emulator's values when none are given).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from qlikauth.web.config import settings_from_environ

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("PORTAL_SECRET_KEY") or secrets.token_hex(32)
DEBUG = os.environ.get("PORTAL_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("PORTAL_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_qlikauth",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_qlikauth.middleware.QlikSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "portal.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PORTAL_DB")
        or str(Path(tempfile.gettempdir()) / "qlikauth-django-portal.sqlite3"),
    }
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "mashup"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# A browser-session cookie (no Expires): closing the browser on a shared workstation signs the
# user out of the portal; the server-side session still ends after SESSION_COOKIE_AGE.
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_AGE = 8 * 3600
SESSION_COOKIE_NAME = "portal_sessionid"
CSRF_COOKIE_NAME = "portal_csrftoken"
#: run.py serves https (PORTAL_TLS=1): the portal's own cookies are then Secure as well.
PORTAL_TLS = os.environ.get("PORTAL_TLS", "0") == "1"
SESSION_COOKIE_SECURE = PORTAL_TLS
CSRF_COOKIE_SECURE = PORTAL_TLS
#: Failed password sign-ins are counted here (portal/views.py): bounded, culled when full.
#: With several processes, point this at a shared cache (Redis, memcached) for one count.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "portal",
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    }
}
LOGIN_THROTTLE = {"PER_USER": 5, "PER_ADDRESS": 20, "WINDOW": 300}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_qlikauth": {"handlers": ["console"], "level": "INFO"}},
}

QLIKAUTH = {
    "MODE": "session",
    "USER_DIRECTORY": "PORTAL",
    "LOGIN_URL": "/accounts/login/",
    # The mashup embeds the hub in an iframe. Served over https (PORTAL_TLS=1), the portal
    # (https://localhost:PORT) and the hub (https://localhost:HUB) are the same site, so a Lax
    # cookie (host-only for localhost; ports do not matter to cookies) reaches the iframe and no
    # other site's page can make the browser send it. In production set QLIKAUTH_COOKIE_DOMAIN
    # (e.g. .example.com) for portal.example.com and qlik.example.com. Only a portal that is
    # not the hub's site (plain http, another domain) needs SameSite=None; set
    # QLIKAUTH_COOKIE_SAMESITE=None for a hub embedded cross-site on purpose.
    "COOKIE_SAMESITE": "Lax" if PORTAL_TLS else "None",
    "COOKIE_SECURE": True,
}
QLIKAUTH.update(settings_from_environ())  # QLIKAUTH_* environment variables win
