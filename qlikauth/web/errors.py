"""Two texts for every error: a public one for the browser and the full one for the log.

A browser (perhaps an attacker's) gets what happened, what the user can do and a short
reference id; never the exception's message, which may name internal QPS nodes, quote
QPS's own answer or echo text the request supplied. The log line carries the reference
id, the full message (nodes, hints for the administrator) and the request, so a user who
reports "reference 3f9c2a1b" can be matched with it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

__all__ = ["ErrorDescription", "describe_error", "new_reference"]


#: class name -> (title, what happened, what the user can do). Fixed texts only: nothing
#: from the exception or the request reaches the browser.
_PUBLIC: dict[str, tuple[str, str, str]] = {
    "RedirectError": ("This link cannot be followed",
                      "The link points somewhere this portal does not send users.",
                      "Go back to the portal's home page and open Qlik Sense from there."),
    "IdentityError": ("Your account cannot be used in Qlik Sense",
                      "Your user name or one of your groups contains characters Qlik Sense cannot take.",
                      "Ask the portal administrator to fix the account."),
    "HeaderError": ("Your account cannot be used in Qlik Sense",
                    "Your user name cannot be sent to Qlik Sense.",
                    "Ask the portal administrator to fix the account."),
    "QpsTimeout": ("Qlik Sense did not answer in time",
                   "Qlik Sense was too slow to answer the sign-in.",
                   "Try again in a minute. If it keeps happening, tell the portal administrator."),
    "QpsTLSError": ("Qlik Sense cannot be reached securely",
                    "The portal and Qlik Sense do not trust each other's certificates.",
                    "Tell the portal administrator; the server log has the details."),
    "QpsConnectionError": ("Qlik Sense cannot be reached",
                           "The portal could not reach Qlik Sense to sign you in.",
                           "Try again in a minute. If it keeps happening, tell the portal administrator."),
    "QpsTooManySessions": ("Too many Qlik Sense sessions",
                           "You have as many Qlik Sense sessions open as Qlik Sense allows.",
                           "Close Qlik Sense in your other tabs or devices, or sign out, then try again."),
    "QpsError": ("Qlik Sense refused the sign-in",
                 "Qlik Sense did not accept the portal's sign-in request.",
                 "Try again; if it keeps happening, tell the portal administrator."),
    "ConfigurationError": ("Qlik Sense sign-in is not set up correctly",
                           "The portal's Qlik Sense settings are wrong.",
                           "Tell the portal administrator; the server log has the details."),
    "CertificateError": ("Qlik Sense sign-in is not set up correctly",
                         "The portal's Qlik Sense certificates cannot be used.",
                         "Tell the portal administrator; the server log has the details."),
    "OidcError": ("Signing in with your identity provider failed",
                  "The sign-in could not be verified: it was used already, started in another "
                  "browser, too old, or refused by the identity provider.",
                  "Go back to the portal and sign in again. If it keeps happening, tell the portal "
                  "administrator."),
    "QlikAuthError": ("Signing in to Qlik Sense failed",
                      "The portal could not sign you in to Qlik Sense.",
                      "Try again; if it keeps happening, tell the portal administrator."),
}


def new_reference() -> str:
    """A short random id (8 hex digits) that ties a page the user sees to a log line."""
    return secrets.token_hex(4)


@dataclass(frozen=True)
class ErrorDescription:
    """What to show a browser for an error, and what to log.

    ``status``, ``code`` (the exception class, e.g. ``QpsTimeout``), ``title``,
    ``message`` (what happened), ``hint`` (what the user can do) and ``reference`` are
    public. :attr:`log_text` is the full text for the server log only.
    """

    status: int
    code: str
    title: str
    message: str
    hint: str
    reference: str
    log_text: str

    def context(self) -> dict[str, Any]:
        """The template context of ``qlikauth/error.html`` (public fields only)."""
        return {"status": self.status, "error": self.code, "title": self.title, "detail": self.message,
                "hint": self.hint, "reference": self.reference}

    def json(self) -> dict[str, Any]:
        """The JSON body for clients that ask for JSON (public fields only)."""
        return {"error": self.code, "detail": self.message, "hint": self.hint, "reference": self.reference}


def describe_error(exc: BaseException, reference: str | None = None) -> ErrorDescription:
    """The public and the log text for ``exc`` (see the module docstring).

    The status is the exception's ``status`` (400 for a refused link, 502/504 for QPS,
    500 for configuration). The public code is the nearest qlikauth class name, never a
    message.
    """
    from ..exceptions import QlikAuthError

    names = [cls.__name__ for cls in type(exc).__mro__]
    key = next((n for n in names if n in _PUBLIC), "QlikAuthError")
    title, message, hint = _PUBLIC[key]
    status = int(getattr(exc, "status", 500) or 500) if isinstance(exc, QlikAuthError) else 500
    code = type(exc).__name__ if isinstance(exc, QlikAuthError) else "QlikAuthError"
    reference = reference or new_reference()
    return ErrorDescription(status=status, code=code, title=title, message=message, hint=hint,
                            reference=reference, log_text=f"[ref {reference}] {type(exc).__name__}: {exc}")
