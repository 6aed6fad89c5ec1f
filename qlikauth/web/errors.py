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
    "RedirectError": (
        "This link cannot be followed",
        "The link points somewhere this portal does not send users.",
        "Go back to the portal's home page and open Qlik Sense from there.",
    ),
    "IdentityError": (
        "Your account cannot be used in Qlik Sense",
        "Your user name or one of your groups contains characters Qlik Sense cannot take.",
        "Ask the portal administrator to fix the account.",
    ),
    "HeaderError": (
        "Your account cannot be used in Qlik Sense",
        "Your user name cannot be sent to Qlik Sense.",
        "Ask the portal administrator to fix the account.",
    ),
    "QpsTimeout": (
        "Qlik Sense did not answer in time",
        "Qlik Sense was too slow to answer the sign-in.",
        "Try again in a minute. If it keeps happening, tell the portal administrator.",
    ),
    "QpsTLSError": (
        "Qlik Sense cannot be reached securely",
        "The portal and Qlik Sense do not trust each other's certificates.",
        "Tell the portal administrator; the server log has the details.",
    ),
    "QpsConnectionError": (
        "Qlik Sense cannot be reached",
        "The portal could not reach Qlik Sense to sign you in.",
        "Try again in a minute. If it keeps happening, tell the portal administrator.",
    ),
    "QpsTooManySessions": (
        "Too many Qlik Sense sessions",
        "You have as many Qlik Sense sessions open as Qlik Sense allows.",
        "Close Qlik Sense in your other tabs or devices, or sign out, then try again.",
    ),
    "QpsError": (
        "Qlik Sense refused the sign-in",
        "Qlik Sense did not accept the portal's sign-in request.",
        "Try again; if it keeps happening, tell the portal administrator.",
    ),
    "ConfigurationError": (
        "Qlik Sense sign-in is not set up correctly",
        "The portal's Qlik Sense settings are wrong.",
        "Tell the portal administrator; the server log has the details.",
    ),
    "CertificateError": (
        "Qlik Sense sign-in is not set up correctly",
        "The portal's Qlik Sense certificates cannot be used.",
        "Tell the portal administrator; the server log has the details.",
    ),
    "OidcError": (
        "Signing in with your identity provider failed",
        "The sign-in could not be verified: it was used already, started in another "
        "browser, too old, or refused by the identity provider.",
        "Go back to the portal and sign in again. If it keeps happening, tell the portal "
        "administrator.",
    ),
    "SamlError": (
        "Single sign-on refused",
        "The identity provider's sign-in answer was refused.",
        "Start the sign-in again from the portal.",
    ),
    "ClaimsError": (
        "Single sign-on refused",
        "Your account cannot be used in Qlik Sense.",
        "Tell the portal administrator; the server log has the details.",
    ),
    "StoreError": (
        "Signing in is unavailable right now",
        "The portal cannot reach the store it keeps sign-ins in, so it signs nobody in "
        "rather than lose track of who is signed in.",
        "Try again in a few minutes; if it keeps happening, tell the portal administrator.",
    ),
    "QlikAuthError": (
        "Signing in to Qlik Sense failed",
        "The portal could not sign you in to Qlik Sense.",
        "Try again; if it keeps happening, tell the portal administrator.",
    ),
}


_ADMIN = "Tell the portal administrator; the server log has the details (give the reference)."
_AGAIN = "Start the sign-in again from the portal."
_CHOOSE = "Start the sign-in from the portal's sign-in page, which lists its identity providers."
#: Single sign-on refusals (``SamlError.code``, ``ClaimsError.code``): one fixed public text
#: each, so a user learns what went wrong without the page quoting the IdP's message.
_SSO_PUBLIC: dict[str, tuple[str, str]] = {
    "unsigned": ("The identity provider's answer is not signed.", _ADMIN),
    "signature": ("The identity provider's answer has no valid signature.", _ADMIN),
    "algorithm": (
        "The identity provider signed its answer with an algorithm this portal refuses.",
        _ADMIN,
    ),
    "structure": ("The sign-in answer is malformed and was refused.", _AGAIN),
    "doctype": ("The sign-in answer is malformed and was refused.", _AGAIN),
    "comment": ("The sign-in answer is malformed and was refused.", _AGAIN),
    "xml": ("The sign-in answer is malformed and was refused.", _AGAIN),
    "encoding": ("The sign-in answer is malformed and was refused.", _AGAIN),
    "too_large": ("The sign-in answer is too large and was refused.", _AGAIN),
    "missing": ("The sign-in answer is missing.", _AGAIN),
    "binding": ("The sign-in answer came in a way this portal does not accept.", _AGAIN),
    "expired": (
        "The sign-in answer has expired.",
        "Sign in again. If it keeps happening, a clock is wrong: tell the portal administrator.",
    ),
    "not_yet_valid": (
        "The sign-in answer is not valid yet.",
        "Sign in again in a minute. If it keeps happening, a clock is wrong: tell the portal "
        "administrator.",
    ),
    "audience": ("The sign-in answer was meant for another application.", _ADMIN),
    "destination": ("The sign-in answer was sent to another address.", _ADMIN),
    "recipient": ("The sign-in answer was sent to another address.", _ADMIN),
    "issuer": (
        "The sign-in answer comes from an identity provider this portal does not trust.",
        _ADMIN,
    ),
    "no_subject": ("The sign-in answer does not say who you are.", _ADMIN),
    "idp_status": (
        "The identity provider did not sign you in.",
        "Try signing in again at the identity provider.",
    ),
    "unknown_request": ("This sign-in was not started here, or took too long.", _AGAIN),
    "other_browser": (
        "This sign-in was started in another browser.",
        "Start the sign-in again in this browser.",
    ),
    "replayed": ("This sign-in answer was already used.", _AGAIN),
    "unsolicited": (
        "Signing in from the identity provider's own page is not enabled for this portal.",
        _AGAIN,
    ),
    "relay_state": ("The page to go to after sign-in is not allowed.", _AGAIN),
    "logout_unsigned": ("The sign-out request is not signed and was refused.", _ADMIN),
    "logout_signature": ("The sign-out request has no valid signature and was refused.", _ADMIN),
    "logout_old": ("The sign-out request is too old and was refused.", _ADMIN),
    "missing_claim": ("The identity provider did not send information this portal needs.", _ADMIN),
    "ambiguous_claim": ("The identity provider sent two different user names.", _ADMIN),
    "unknown_group": ("One of your groups is not known to this portal.", _ADMIN),
    "groups_overage": ("You are in more groups than the identity provider can send.", _ADMIN),
    "invalid_value": ("Your account has a value Qlik Sense cannot take.", _ADMIN),
    "unverified_claim": (
        "The identity provider has not verified what would be your user name.",
        _ADMIN,
    ),
    "idp": ("This portal does not know which identity provider to sign you in with.", _CHOOSE),
}


_PROVIDER = "Try again in a few minutes; if it keeps happening, tell the portal administrator."
#: OpenID Connect refusals (``OidcError.code``) that deserve their own words; the others keep
#: the general text (a forged or replayed answer is not described to whoever sent it).
_OIDC_PUBLIC: dict[str, tuple[str, str]] = {
    "provider_unreachable": ("The identity provider cannot be reached from the portal.", _PROVIDER),
    "provider_timeout": ("The identity provider did not answer the portal in time.", _PROVIDER),
    "provider_tls": (
        "The portal cannot set up a trusted connection to the identity provider.",
        _ADMIN,
    ),
    "provider_answer": (
        "The identity provider answered the portal with something it cannot use.",
        _ADMIN,
    ),
    "metadata": (
        "The identity provider's settings (its discovery document) cannot be used.",
        _ADMIN,
    ),
    "provider_error": (
        "The identity provider did not sign you in.",
        "Go back to the portal and sign in again.",
    ),
    "reauth": (
        "This portal needs you to enter your credentials again.",
        "Go back to the portal and sign in again.",
    ),
    "state_browser": (
        "This sign-in was started in another browser.",
        "Start the sign-in again in this browser.",
    ),
    "expired": (
        "The sign-in answer has expired.",
        "Sign in again. If it keeps happening, a clock is wrong: tell the portal administrator.",
    ),
    "unverified_claim": (
        "The identity provider has not verified the e-mail address of your "
        "account, so it cannot be your Qlik Sense user.",
        _ADMIN,
    ),
    "replay_cache_full": ("The portal is too busy to check this sign-in now.", _PROVIDER),
    "idp": ("This portal does not know which identity provider to sign you in with.", _CHOOSE),
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
        return {
            "status": self.status,
            "error": self.code,
            "title": self.title,
            "detail": self.message,
            "hint": self.hint,
            "reference": self.reference,
        }

    def json(self) -> dict[str, Any]:
        """The JSON body for clients that ask for JSON (public fields only)."""
        return {
            "error": self.code,
            "detail": self.message,
            "hint": self.hint,
            "reference": self.reference,
        }


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
    failure = str(getattr(exc, "code", ""))
    sso = _SSO_PUBLIC.get(failure) if key in ("SamlError", "ClaimsError") else None
    if sso is not None:
        title = "Single sign-on refused"
        message, hint = sso
    elif key == "OidcError" and failure in _OIDC_PUBLIC:
        message, hint = _OIDC_PUBLIC[failure]
    status = int(getattr(exc, "status", 500) or 500) if isinstance(exc, QlikAuthError) else 500
    code = type(exc).__name__ if isinstance(exc, QlikAuthError) else "QlikAuthError"
    reference = reference or new_reference()
    return ErrorDescription(
        status=status,
        code=code,
        title=title,
        message=message,
        hint=hint,
        reference=reference,
        log_text=f"[ref {reference}] {type(exc).__name__}: {exc}",
    )
