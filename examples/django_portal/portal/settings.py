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
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
WSGI_APPLICATION = "portal.wsgi.application"

DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ.get("PORTAL_DB") or str(Path(tempfile.gettempdir()) / "qlikauth-django-portal.sqlite3"),
}}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "mashup"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_NAME = "portal_sessionid"
CSRF_COOKIE_NAME = "portal_csrftoken"
#: run.py serves https (PORTAL_TLS=1): the portal's own cookies are then Secure as well.
PORTAL_TLS = os.environ.get("PORTAL_TLS", "0") == "1"
SESSION_COOKIE_SECURE = PORTAL_TLS
CSRF_COOKIE_SECURE = PORTAL_TLS
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "loggers": {"django_qlikauth": {"handlers": ["console"], "level": "INFO"}}}

QLIKAUTH = {
    "MODE": "session",
    "USER_DIRECTORY": "PORTAL",
    "LOGIN_URL": "/accounts/login/",
    # The mashup embeds the hub in an iframe. Served over https (PORTAL_TLS=1), the portal
    # (https://localhost:PORT) and the hub (https://localhost:HUB) are the same site, so the
    # cookie (host-only for localhost; ports do not matter to cookies) reaches the iframe. In
    # production set QLIKAUTH_COOKIE_DOMAIN (e.g. .example.com) for portal.example.com and
    # qlik.example.com. SameSite=None (which needs Secure) also lets it travel where the hub is
    # embedded cross-site and the browser still allows third-party cookies.
    "COOKIE_SAMESITE": "None",
    "COOKIE_SECURE": True,
}
QLIKAUTH.update(settings_from_environ())  # QLIKAUTH_* environment variables win
