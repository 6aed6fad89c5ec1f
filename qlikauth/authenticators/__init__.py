"""Authenticators: take a Qlik user, return plain data (a redirect, a cookie, headers)."""

from __future__ import annotations

from .base import Authenticator, Cookie, Headers, Redirect
from .header import HeaderAuthenticator
from .jwt import JwtAuthenticator, JwtSignIn
from .session import SessionAuthenticator
from .ticket import TicketAuthenticator

__all__ = [
    "Authenticator",
    "Cookie",
    "Headers",
    "Redirect",
    "TicketAuthenticator",
    "SessionAuthenticator",
    "HeaderAuthenticator",
    "JwtAuthenticator",
    "JwtSignIn",
]
