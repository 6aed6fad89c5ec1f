"""The framework-free web layer: configuration, runtime, flows and error texts.

``qlikauth.web.config`` checks a portal's ``QLIKAUTH`` settings, ``qlikauth.web.runtime``
makes the QPS client and authenticators for them, ``qlikauth.web.flows`` holds every
endpoint once (a :class:`WebRequest` in, a plain answer out) and ``qlikauth.web.errors``
gives each error a public text and a log text. ``django_qlikauth`` and ``flask_qlikauth``
only build the request description and render the answer. :data:`TEMPLATES_DIR` holds the
templates both use (the same names and context in Django's and Jinja's syntax).
"""

from __future__ import annotations

from pathlib import Path

from .config import MODES, SETTING_KEYS, QlikAuthConfig, settings_from_environ
from .errors import ErrorDescription, describe_error
from .flows import (
    Answer,
    Flow,
    JsonAnswer,
    PageAnswer,
    PlainAnswer,
    RedirectAnswer,
    SessionOutcome,
    WebRequest,
    run,
)
from .runtime import QlikAuthRuntime, build_runtime

#: The directory holding ``qlikauth/error.html`` and ``qlikauth/logout.html``.
TEMPLATES_DIR = Path(__file__).parent / "templates"

__all__ = [
    "QlikAuthConfig",
    "QlikAuthRuntime",
    "build_runtime",
    "settings_from_environ",
    "MODES",
    "SETTING_KEYS",
    "WebRequest",
    "Answer",
    "RedirectAnswer",
    "PageAnswer",
    "PlainAnswer",
    "JsonAnswer",
    "SessionOutcome",
    "Flow",
    "run",
    "ErrorDescription",
    "describe_error",
    "TEMPLATES_DIR",
]
