"""The emulated QPS REST API (port 4243): tickets, sessions, users, alive; xrfkey checked as Qlik
does."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..exceptions import IdentityError
from ..identity import QlikUser
from ._web import JSON_TYPE, Request, Response, json_bytes
from .proxy import VirtualProxy
from .state import EmulatorState, TooManySessions, mask

log = logging.getLogger("qlikauth.emulator")

XSRF_FAILED = "XSRF prevention check failed. Possible XSRF discovered."


def _xrf_ok(req: Request) -> bool:
    query = req.query
    if "%" in query or "+" in query:
        keys = [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() == "xrfkey"]
    elif "&" not in query and query[:7].lower() == "xrfkey=":  # the usual query: the key alone
        keys = [query[7:]]
    else:  # nothing to unquote: what parse_qsl gives, without its per-call overhead
        keys = [
            p.partition("=")[2]
            for p in query.split("&")
            if p and p.partition("=")[0].lower() == "xrfkey"
        ]
    headers = req.header_values("x-qlik-xrfkey")
    if len(keys) != 1 or len(headers) != 1:
        return False
    key = keys[0]
    # isascii() and isalnum(): exactly [0-9A-Za-z], as set(key) <= _ALNUM says, in two C calls.
    return key == headers[0] and len(key) == 16 and key.isascii() and key.isalnum()


def _pick(data: dict[str, Any], name: str) -> Any:
    """A field by name in any letter case (QPS binds JSON properties case-insensitively)."""
    if name in data:
        return data[name]
    camel = name[0].lower() + name[1:]
    if camel in data:
        return data[camel]
    folded = name.lower()
    for k, v in data.items():
        if isinstance(k, str) and k.lower() == folded:
            return v
    return None


#: A JSON text split into strings (double- or single-quoted) and what lies between them.
_JSON_PIECES = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[^\'"]+', re.DOTALL)


def _loads_lenient(text: str) -> Any:
    """JSON as QPS's .NET parser reads it: also single-quoted strings. ValueError if not."""
    try:
        return json.loads(text)
    except ValueError:
        if "'" not in text:
            raise
    pieces = [m.group(0) for m in _JSON_PIECES.finditer(text)]
    if sum(map(len, pieces)) != len(text):
        raise ValueError("an unterminated string")
    out = []
    for piece in pieces:
        if piece.startswith("'"):
            inner = piece[1:-1].replace("\\'", "'").replace('"', '\\"')
            piece = '"' + inner + '"'
        out.append(piece)
    return json.loads("".join(out))


def _qps_user(data: dict[str, Any]) -> QlikUser:
    """The user a ticket or session body names, by Qlik's rules, not qlikauth's client rules.

    Qlik's (*Add ticket*): UserDirectory and UserId not only whitespace, trimmed, no backslash;
    attributes a list of single-key objects whose values may be empty. Attribute values with
    ';' or over 1,024 characters, which qlikauth's own client refuses, are taken as Qlik takes
    them. IdentityError when the body breaks Qlik's rules.
    """
    attrs = _pick(data, "Attributes") or []
    if not isinstance(attrs, list):
        raise IdentityError("Attributes must be a list of single-key objects.", field="attributes")
    pairs: list[tuple[str, str]] = []
    for i, item in enumerate(attrs):
        if not isinstance(item, dict) or len(item) != 1:
            raise IdentityError(
                f"Attributes[{i}] must be an object with one key.", field="attributes"
            )
        ((name, value),) = item.items()
        if not isinstance(name, str) or not isinstance(value, str):
            raise IdentityError(f"Attributes[{i}] must map a name to a string.", field="attributes")
        pairs.append((name, value))
    directory, user_id = _pick(data, "UserDirectory"), _pick(data, "UserId")
    try:
        return QlikUser(directory, user_id, pairs)
    except IdentityError:
        base = QlikUser(directory, user_id)  # directory and id: the same rules
        # names keep their rules (they are keys of X-Qlik-Security); values are Qlik's
        QlikUser(base.user_directory, base.user_id, [(n, "") for n, _ in pairs])
        user = object.__new__(QlikUser)
        object.__setattr__(user, "user_directory", base.user_directory)
        object.__setattr__(user, "user_id", base.user_id)
        object.__setattr__(user, "attributes", tuple((n.strip(), v) for n, v in pairs))
        return user


#: Users already checked, by their fields (QlikUser's checks are a pure function of them and a
#: node sees the same users sign in again and again); bounded, emptied when full.
_USERS: dict[tuple[Any, ...], QlikUser] = {}
_MAX_USERS = 4096
#: Ticket request bodies already checked, by their exact bytes (QpsClient sends the same bytes for
#: the same user): the user, the answer's user part as JSON (without its closing brace) and the
#: TargetId. Only bodies that passed every check; bounded like _USERS.
_TICKET_BODIES: dict[bytes, tuple[QlikUser, bytes, str | None]] = {}


def _user_key(data: dict[str, Any]) -> tuple[Any, ...] | None:
    """The fields ``QlikUser.from_qps`` reads, hashable, when they are plain strings; else None."""
    directory = data["UserDirectory"] if "UserDirectory" in data else data.get("userDirectory")
    user_id = data["UserId"] if "UserId" in data else data.get("userId")
    attrs = (data["Attributes"] if "Attributes" in data else data.get("attributes")) or []
    if type(directory) is not str or type(user_id) is not str or type(attrs) is not list:
        return None
    key: list[Any] = [directory, user_id]
    for item in attrs:
        if type(item) is not dict or len(item) != 1:
            return None
        ((name, value),) = item.items()
        if type(name) is not str or type(value) is not str:
            return None
        key.append(name)
        key.append(value)
    return tuple(key)


_SESSION_IN_PATH = re.compile(r"(/session/)([^/?]+)", re.IGNORECASE)


def _masked(m: re.Match[str]) -> str:
    # Session ids travel in the path; logs get a fingerprint, never a character of the id.
    return m.group(1) + mask(m.group(2))


class QpsApi:
    """Routes ``/qps/...`` requests; one instance per emulated node."""

    def __init__(
        self,
        state: EmulatorState,
        proxies: Callable[[], dict[str, VirtualProxy]],
        own_hosts: Callable[[], set[str]] | None = None,
    ) -> None:
        self.state = state
        self.proxies = proxies
        self.own_hosts = own_hosts

    def __call__(self, req: Request) -> Response:
        state = self.state
        with state.lock:  # state.count("qps_requests"), spelled out: it runs on every request
            state.qps_requests += 1
        resp = self._route(req)
        if log.isEnabledFor(logging.DEBUG):  # the masking regex only when the line is written
            log.debug(
                "QPS %s %s -> %s", req.method, _SESSION_IN_PATH.sub(_masked, req.path), resp.status
            )
        return resp

    def _route(self, req: Request) -> Response:
        # Any Host is served: QPS listens on its port for whatever name (a load balancer's, an
        # IP address) the caller used; the client certificate is what it checks.
        if not _xrf_ok(req):
            return Response.text(403, XSRF_FAILED)
        path = req.path
        if path == "/qps/ticket":  # the request a portal sends at every sign-in, routed at once
            return self._ticket(req, "") if req.method == "POST" else _not_allowed("POST")
        parts = path.split("/")
        # "", "qps", ...
        if len(parts) < 3 or parts[1].lower() != "qps":
            return Response.text(404, "Not found: QPS API paths start with /qps/.\n")
        segs = [unquote(p) for p in parts[2:]] if "%" in path else parts[2:]
        if segs and segs[-1] == "" and len(segs) > 1:
            segs = segs[:-1]
        # QPS (IIS-style routing) matches its paths case-insensitively: /qps/Portal/Ticket works.
        # Only the route words are folded; session ids, directories and user ids are kept.
        lowered = [x.lower() for x in segs]
        if lowered[:1] in (["alive"], ["health"], ["about"]):
            segs = lowered
        if segs == ["alive"]:
            if req.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            return Response.json(200, True)
        if segs in (["health"], ["about", "default"], ["about", "description"]):
            if req.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            return self._about(segs)
        proxies = self.proxies()
        prefix = ""
        if len(segs) > 1 and segs[0].lower() in proxies and segs[0]:
            prefix, segs = segs[0].lower(), segs[1:]
        if segs:
            segs = [segs[0].lower(), *segs[1:]]
        if not segs or segs[0] not in ("ticket", "session", "user"):
            return Response.text(
                404,
                f"Not found: no virtual proxy with prefix {segs[0] if segs else ''!r} "
                "or no such QPS endpoint.\n",
            )
        what, args = segs[0], segs[1:]
        if what == "ticket" and not args:
            return self._ticket(req, prefix) if req.method == "POST" else _not_allowed("POST")
        if what == "session" and not args:
            if req.method == "POST":
                return self._add_session(req, prefix)
            if req.method in ("GET", "HEAD"):
                return Response.json(200, [s.to_qps() for s in self.state.sessions(prefix)])
            return _not_allowed("GET, POST")
        if what == "session" and len(args) == 1:
            if req.method in ("GET", "HEAD"):
                rec = self.state.session(args[0], prefix)
                return Response.json(200, rec.to_qps()) if rec else _no_session()
            if req.method == "DELETE":
                ended = self.state.end_session(args[0], prefix)
                if ended is None:
                    return _no_session()
                log.info("QPS: session %s ended by API", mask(args[0]))
                return Response.json(
                    200, {"Session": ended[0].to_qps(), "LastSessionForUser": ended[1]}
                )
            return _not_allowed("GET, DELETE")
        if what == "user" and len(args) == 2:
            try:
                user = QlikUser(args[0], args[1])
            except IdentityError as exc:
                return Response.text(400, f"{exc}\n")
            if req.method in ("GET", "HEAD"):
                return Response.json(200, [s.to_qps() for s in self.state.sessions(prefix, user)])
            if req.method == "DELETE":
                removed = self.state.end_user(user, prefix)
                return Response.json(200, [s.to_qps() for s in removed])
            return _not_allowed("GET, DELETE")
        return Response.text(404, "Not found: no such QPS endpoint.\n")

    def _about(self, segs: list[str]) -> Response:
        # The spec (qps-openapi.json) gives shapes only: /health a string, /about/default an object
        # of objects, /about/description an array of strings. The contents are the emulator's.
        if segs == ["health"]:
            return Response.json(200, "OK")
        if segs == ["about", "default"]:
            return Response.json(
                200, {"qlikauth-emulator": {"description": "qlikauth's QPS emulator"}}
            )
        return Response.json(
            200,
            [
                "POST /qps/{virtual proxy/}ticket",
                "POST /qps/{virtual proxy/}session",
                "GET|DELETE /qps/{virtual proxy/}session/{id}",
                "GET|DELETE /qps/{virtual proxy/}user/{directory}/{id}",
                "GET /qps/alive",
                "GET /qps/health",
                "GET /qps/about/default",
                "GET /qps/about/description",
            ],
        )

    # -- bodies ---------------------------------------------------------------------------
    @staticmethod
    def _body(req: Request) -> dict[str, Any] | Response:
        try:
            data = _loads_lenient(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Response.text(400, "The body is not valid JSON (UTF-8).\n")
        if not isinstance(data, dict):
            return Response.text(400, "The body must be a JSON object.\n")
        return data

    @staticmethod
    def _user(data: dict[str, Any]) -> QlikUser | Response:
        key = _user_key(data)
        if key is not None:
            known = _USERS.get(key)
            if known is not None:
                return known
        try:
            user = _qps_user(data)
        except IdentityError as exc:
            return Response.text(400, f"{exc}\n")
        if key is not None:
            if len(_USERS) >= _MAX_USERS:
                _USERS.clear()
            _USERS[key] = user
        return user

    def _ticket(self, req: Request, prefix: str) -> Response:
        known = _TICKET_BODIES.get(req.body)
        if known is None:
            parsed = self._body_and_user(req)
            if isinstance(parsed, Response):
                return parsed
            data, user = parsed
            target_id = _pick(data, "TargetId")
            if target_id is not None and not isinstance(target_id, str):
                return Response.text(400, "TargetId must be a string.\n")
            # The answer is the user's fields, then Ticket and TargetUri: the first part once.
            # A published QPS ticket answer gives UserDirectory upper-cased (the user as the
            # proxy keeps it); the rest is echoed as sent.
            answer = {**user.to_qps(), "UserDirectory": user.user_directory.upper()}
            known = (user, json_bytes(answer)[:-1], target_id)
            if len(_TICKET_BODIES) >= _MAX_USERS:
                _TICKET_BODIES.clear()
            _TICKET_BODIES[req.body] = known
        user, head, target_id = known
        target = self.state.target(prefix, target_id) if target_id else None
        rec = self.state.add_ticket(user, prefix, target)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("QPS: ticket %s for %s on %r", mask(rec.ticket), user.qualified_name, prefix)
        # What json_bytes({**user.to_qps(), "Ticket": ..., "TargetUri": ...}) gives (a
        # test holds it).
        tail = b"null}" if target is None else json_bytes(target) + b"}"
        return Response(
            201,
            head + b',"Ticket":"' + rec.ticket.encode("ascii") + b'","TargetUri":' + tail,
            content_type=JSON_TYPE,
        )

    def _body_and_user(self, req: Request) -> tuple[dict[str, Any], QlikUser] | Response:
        """The JSON body and the user it names (ticket and session requests), or the refusal."""
        data = self._body(req)
        if isinstance(data, Response):
            return data
        user = self._user(data)
        if isinstance(user, Response):
            return user
        return data, user

    def _add_session(self, req: Request, prefix: str) -> Response:
        parsed = self._body_and_user(req)
        if isinstance(parsed, Response):
            return parsed
        data, user = parsed
        sid = _pick(data, "SessionId")
        if (
            not isinstance(sid, str)
            or not sid.strip()
            or len(sid) > 256
            or not sid.isprintable()
            or not sid.isascii()
            or any(c in sid for c in ' ;,"\\')
        ):
            return Response.text(
                400,
                "SessionId is required: a printable ASCII string without spaces, "
                "';', ',', quotes or backslashes (a random UUID).\n",
            )
        with self.state.lock:
            existing = self.state.session(sid)
            if existing is not None:
                if existing.user.same_user(user) and existing.prefix == prefix:
                    # The same call again (a retry after a lost answer): nothing new.
                    return Response.json(201, {**existing.to_qps(), "NewUser": False})
                return Response.text(400, "SessionId is already in use by another session.\n")
            try:
                rec, new_user = self.state.add_session(user, prefix, "api", sid)
            except TooManySessions as exc:
                return Response.text(409, f"{exc} Log the user out somewhere first.\n")
        log.debug("QPS: session %s for %s on %r", mask(sid), user.qualified_name, prefix)
        return Response.json(201, {**rec.to_qps(), "NewUser": new_user})


def _not_allowed(allow: str) -> Response:
    return Response.text(
        405, f"Method not allowed here; use {allow}.\n", headers=[("Allow", allow)]
    )


def _no_session() -> Response:
    return Response.text(404, "No such session on this node.\n")
