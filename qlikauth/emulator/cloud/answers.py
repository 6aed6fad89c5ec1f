"""Qlik's error shape, CORS answer headers and request helpers shared by the tenant's endpoints."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any
from urllib.parse import unquote_plus

from .._web import Request, Response


def basic_credentials(req: Request) -> tuple[str, str] | None:
    """``Authorization: Basic`` client credentials (RFC 6749 section 2.3.1), or None."""
    auth = req.header("Authorization") or ""
    if not auth[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    cid, sep, secret = raw.partition(":")
    if not sep:
        return None
    return unquote_plus(cid), unquote_plus(secret)


def is_uuid(value: Any) -> bool:
    """qlik.dev's private_key_jwt rule: ``jti`` is a UUID (a new one for each token request)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def cors_headers(origin: str) -> list[tuple[str, str]]:
    """The CORS answer headers for an allowed ``origin``."""
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Expose-Headers", "qlik-csrf-token"),
        ("Vary", "Origin"),
    ]


def error(status: int, title: str, detail: str = "", code: str = "") -> Response:
    err: dict[str, Any] = {"title": title, "status": str(status)}
    if detail:
        err["detail"] = detail
    if code:
        err["code"] = code
    return Response.json(status, {"errors": [err], "traceId": secrets.token_hex(16)})
