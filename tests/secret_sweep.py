"""A pytest plugin that collects every secret a test run puts on the wire and every line it logs,
then says which secrets reached the log. Used by tests/integration/test_secrets_everywhere.py:

    python -m pytest -p secret_sweep tests/flask/... tests/saml/...   (tests/ on sys.path)

Secrets are collected where they are made (the emulators' tickets and session ids, qlikauth's
proxy session ids, the Qlik Cloud tenant's tokens and sessions, every JWT signed or parsed) and
where they travel, whoever made them: every ``requests`` exchange (the
QPS client's tickets and session ids, Qlik Cloud and OIDC tokens, authorization codes, client
assertions, the browsers' cookies) and every Werkzeug and Django test-client exchange (tickets
in redirects, SAML messages in forms, RelayState, state, cookies). Every ``qlikauth`` logger
(the emulators' too: they run in this process) is set to DEBUG and every record is kept,
formatted with its traceback. Records are also searched for secrets by shape (private keys, JWTs,
SAML messages, raw or
base64). ``QLIKAUTH_SWEEP_REPORT`` names the JSON report written at the
end: what was collected, by kind, and what leaked (with the logger that wrote it).

The control: at the start one planted secret goes through the same collection (a redirect's
``code``) and is logged once through a qlikauth logger; the report must list it as leaked.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import pytest

#: Query, form and JSON names whose values are secrets.
SECRET_NAMES = {
    "qlikticket": "ticket",
    "ticket": "ticket",
    "sessionid": "session id",
    "session_id": "session id",
    "code": "authorization code",
    "state": "state",
    "samlrequest": "SAML message",
    "samlresponse": "SAML message",
    "relaystate": "relay state",
    "id_token": "JWT",
    "id_token_hint": "JWT",
    "logout_token": "JWT",
    "jwt": "JWT",
    "client_assertion": "JWT",
    "assertion": "JWT",
    "access_token": "access token",
    "refresh_token": "refresh token",
    "token": "token",
    "client_secret": "client secret",
    "code_verifier": "PKCE verifier",
    "password": "password",
    "passphrase": "passphrase",
    "csrfmiddlewaretoken": "CSRF token",
    "csrf": "CSRF token",
    "nonce": "nonce",
}
_HIDDEN = re.compile(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', re.IGNORECASE)
_BEARER = re.compile(r"(?:Bearer|Basic)\s+(\S+)", re.IGNORECASE)
_SHAPES = (
    ("private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|PRIVATE KEY-----")),
    ("JWT", re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.")),
    ("SAML message", re.compile(r"<saml2?p?:|PHNhbWxw|PHNhbWwy|PD94bWwg|fZ[A-Za-z0-9+/]{40}")),
)
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{20,}")
_RANDOM = re.compile(r"[0-9]")
_LETTER = re.compile(r"[A-Za-z]")
MIN_LENGTH = 8  # shorter values ("demo", "1") are not secrets worth the name, and match by chance

collected: dict[str, str] = {}  # secret value -> kind
records: list[tuple[str, str]] = []  # (logger, formatted record)
PLANTED = "planted-" + secrets.token_urlsafe(12)


def keep(value: Any, kind: str) -> None:
    if isinstance(value, str) and len(value) >= MIN_LENGTH and value not in collected:
        collected[value] = kind


def _from_pairs(pairs: Iterable[tuple[str, Any]]) -> None:
    for name, value in pairs:
        kind = SECRET_NAMES.get(str(name).lower())
        if kind:
            keep(value, kind)


def _from_url(url: str | None) -> None:
    if url:
        _from_pairs(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _from_json(data: Any) -> None:
    if isinstance(data, Mapping):
        for k, v in data.items():
            if isinstance(v, (Mapping, list)):
                _from_json(v)
            else:
                kind = SECRET_NAMES.get(str(k).lower())
                if kind:
                    keep(v, kind)
    elif isinstance(data, list):
        for item in data:
            _from_json(item)


def _from_text(text: str) -> None:
    _from_pairs(_HIDDEN.findall(text))
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            _from_json(json.loads(stripped))
        except ValueError:
            pass
    elif "=" in stripped and "\n" not in stripped and " " not in stripped:
        _from_pairs(parse_qsl(stripped, keep_blank_values=True))


def _from_headers(headers: Any, *, request: bool) -> None:
    items = headers.items() if hasattr(headers, "items") else headers
    for name, value in items:
        lname = str(name).lower()
        if lname in ("location", "refresh") or (lname == "content-location"):
            _from_url(str(value).split("url=", 1)[-1])
        elif lname == "set-cookie":
            pair = str(value).split(";", 1)[0]
            cname, _, cvalue = pair.partition("=")
            keep(cvalue.strip().strip('"'), f"cookie {cname.strip()}")
        elif lname == "cookie" and request:
            for part in str(value).split(";"):
                cname, _, cvalue = part.strip().partition("=")
                keep(cvalue.strip('"'), f"cookie {cname}")
        elif lname in ("authorization", "proxy-authorization"):
            for token in _BEARER.findall(str(value)):
                keep(token, "credential")
            if str(value).lower().startswith("basic "):
                try:
                    pair = base64.b64decode(str(value)[6:].strip()).decode("utf-8")
                except ValueError:
                    pair = ""
                keep(unquote_plus(pair.partition(":")[2]), "client secret")
        elif lname == "qlik-csrf-token":
            keep(str(value), "Qlik CSRF token")


def _body_text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return body if isinstance(body, str) else ""


# -- the exchanges -------------------------------------------------------------------------
def _patch_requests(mp: pytest.MonkeyPatch) -> None:
    import requests

    original = requests.Session.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        _from_url(request.url)
        _from_headers(request.headers, request=True)
        _from_text(_body_text(request.body))
        response = original(self, request, **kwargs)
        try:
            _from_headers(response.headers, request=False)
            for c in response.cookies:
                keep(c.value, f"cookie {c.name}")
            if not kwargs.get("stream"):
                _from_text(response.text)
        except Exception:  # a body that cannot be read is the test's business, not ours
            pass
        return response

    mp.setattr(requests.Session, "send", send)


def _patch_werkzeug(mp: pytest.MonkeyPatch) -> None:
    try:
        from werkzeug.test import Client
    except ImportError:
        return
    original = Client.open

    def open_(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str):
            _from_url(args[0])
        for key in ("query_string",):
            if isinstance(kwargs.get(key), str):
                _from_pairs(parse_qsl(kwargs[key]))
            elif isinstance(kwargs.get(key), Mapping):
                _from_pairs(kwargs[key].items())
        data = kwargs.get("data")
        if isinstance(data, Mapping):
            _from_pairs(data.items())
        elif isinstance(data, (str, bytes)):
            _from_text(_body_text(data))
        if kwargs.get("json") is not None:
            _from_json(kwargs["json"])
        _from_headers(kwargs.get("headers") or {}, request=True)
        response = original(self, *args, **kwargs)
        try:
            _from_headers(response.headers, request=False)
            if not response.is_streamed:
                body = response.get_data(as_text=True)
                _from_text(body)
                if response.mimetype == "text/plain" and _TOKEN.fullmatch(body.strip()):
                    keep(body.strip(), "access token")  # /qlik/cloud/access-token's answer
        except Exception:
            pass
        return response

    mp.setattr(Client, "open", open_)


def _patch_django(mp: pytest.MonkeyPatch) -> None:
    try:
        from django.test.client import Client
    except ImportError:
        return
    original = Client.request

    def request(self: Any, **environ: Any) -> Any:
        _from_pairs(parse_qsl(environ.get("QUERY_STRING", "")))
        response = original(self, **environ)
        try:
            _from_headers(response.items(), request=False)
            for morsel in response.cookies.values():
                keep(morsel.value, f"cookie {morsel.key}")
            if not getattr(response, "streaming", False):
                _from_text(response.content.decode("utf-8", "replace"))
        except Exception:
            pass
        return response

    mp.setattr(Client, "request", request)


# -- the log -------------------------------------------------------------------------------
class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            records.append((record.name, self.format(record)))
        except Exception:  # a record that cannot be formatted is kept as its raw parts
            records.append((record.name, f"{record.msg!r} {record.args!r}"))


_handler = _Keep()
_mp = pytest.MonkeyPatch()


def _debug_everywhere() -> None:
    logging.getLogger().addHandler(_handler)
    logging.getLogger("qlikauth").setLevel(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("qlikauth", "flask_qlikauth", "django_qlikauth")):
            logging.getLogger(name).setLevel(logging.DEBUG)
    for name in ("flask_qlikauth", "django_qlikauth"):
        logging.getLogger(name).setLevel(logging.DEBUG)


def _patch_makers(mp: pytest.MonkeyPatch) -> None:
    """Where secrets are made: the emulators' tickets and session ids, qlikauth's proxy session
    ids, the Qlik Cloud tenant's sessions, access and refresh tokens (answers read as streams,
    as QPS's and Qlik Cloud's are, are not seen on the wire)."""
    from qlikauth.emulator import state as emu_state
    from qlikauth.emulator.cloud import CloudTenantState
    from qlikauth.qps import client as qps_client

    def wrap(owner: Any, name: str, kind: str, pick: Any = lambda out: [out]) -> None:
        original = getattr(owner, name)

        def made(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            for value in pick(out):
                keep(value, kind)
            return out

        mp.setattr(owner, name, made)

    # Every JWT qlikauth signs, and every one it parses (id_token, logout_token, the emulators'
    # JWT logins): the one JWS path.
    from qlikauth import jose
    from qlikauth.jwtkeys import SigningKey

    wrap(SigningKey, "sign", "JWT")
    wrap(SigningKey, "sign_payload", "JWT")
    original_parse = jose.parse_compact

    def parse_compact(token: Any, *args: Any, **kwargs: Any) -> Any:
        keep(token, "JWT")
        return original_parse(token, *args, **kwargs)

    mp.setattr(jose, "parse_compact", parse_compact)
    wrap(emu_state, "new_ticket", "ticket")
    wrap(emu_state, "new_guid", "session id")
    wrap(qps_client, "new_session_id", "session id")
    wrap(CloudTenantState, "new_session", "Qlik Cloud session", lambda out: list(out))
    wrap(CloudTenantState, "new_token", "access token", lambda out: [out[0]])
    wrap(CloudTenantState, "new_refresh", "refresh token")


def pytest_configure(config: pytest.Config) -> None:
    _patch_makers(_mp)
    _patch_requests(_mp)
    _patch_werkzeug(_mp)
    _patch_django(_mp)
    _debug_everywhere()
    # The control: collected like any redirect's code, then logged once by a qlikauth logger.
    _from_url(f"https://portal.test/oidc/callback?code={PLANTED}&state=x")
    logging.getLogger("qlikauth.sweep_control").debug("callback with code %s", PLANTED)


@pytest.fixture(autouse=True)
def _qlikauth_at_debug(caplog: pytest.LogCaptureFixture) -> Any:
    # caplog and tests that set levels reset them; every test starts with qlikauth at DEBUG.
    _debug_everywhere()
    caplog.set_level(logging.DEBUG, logger="qlikauth")
    yield
    # caplog's own records are the test's; ours came through the root handler already.


def _pieces(value: str, n: int) -> set[str]:
    return {value[i : i + n] for i in range(len(value) - n + 1)}


def leaks(text_by_logger: list[tuple[str, str]], extra_text: str = "") -> list[dict[str, str]]:
    """Every collected secret found whole in a record (or in ``extra_text``, the run's output);
    tickets and session ids also by any 8-character run of them."""
    found: list[dict[str, str]] = []
    blob = "\n".join(t for _, t in text_by_logger) + "\n" + extra_text
    for value, kind in collected.items():
        if value in blob:
            where = next((n for n, t in text_by_logger if value in t), "output")
            found.append({"kind": kind, "logger": where, "planted": str(value == PLANTED)})
    # What is a secret by its shape, whoever made it: keys, signed tokens, SAML messages.
    for n, t in text_by_logger:
        for kind, pattern in _SHAPES:
            if pattern.search(t) and not any(f["logger"] == n and f["kind"] == kind for f in found):
                found.append({"kind": kind, "logger": n, "planted": "False"})
    short = {}
    for value, kind in collected.items():
        if kind in ("ticket", "session id") or kind.startswith("cookie X-Qlik-Session"):
            # Random ids only, and runs with a letter and a digit: a test's made-up cookie
            # ("no-such-session") would match words of ordinary log lines.
            for piece in _pieces(value, 8):
                if _RANDOM.search(piece) and _LETTER.search(piece):
                    short[piece] = kind
    if short:
        for n, t in text_by_logger:
            for run in re.findall(r"[A-Za-z0-9_-]{8,}", t):
                for piece in _pieces(run, 8):
                    if piece in short and not any(
                        f["logger"] == n and f["kind"] == short[piece] for f in found
                    ):
                        found.append(
                            {"kind": short[piece] + " (part)", "logger": n, "planted": "False"}
                        )
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _mp.undo()
    logging.getLogger().removeHandler(_handler)
    path = os.environ.get("QLIKAUTH_SWEEP_REPORT")
    if not path:
        return
    kinds: dict[str, int] = {}
    for kind in collected.values():
        k = "cookie" if kind.startswith("cookie") else kind
        kinds[k] = kinds.get(k, 0) + 1
    loggers = sorted({n for n, _ in records})
    with open(path, "w") as fh:
        json.dump(
            {
                "collected": len(collected),
                "kinds": kinds,
                "records": len(records),
                "loggers": loggers,
                "leaks": leaks(records),
                "exitstatus": int(exitstatus),
            },
            fh,
            indent=1,
        )
