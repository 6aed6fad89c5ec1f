"""The mutual-TLS client for the Qlik Proxy Service (QPS) API: tickets, proxy sessions, users.

:class:`QpsClient` sends every call through one :class:`~qlikauth.qps.transport.QpsAdapter`
built around the one :class:`ssl.SSLContext` that :meth:`Certificates.client_ssl_context`
makes (``root.pem`` the only trust anchor, host names checked, client certificate
presented). Calls go straight to the adapter's ``send``, not through
:meth:`requests.Session.request`: proxies, CA bundles and ``.netrc`` from the
environment have no business on a channel that can sign in anyone, redirects are not
followed and QPS sets no cookies.

Several nodes: ticket and session creation go to the first healthy node and move on
when a node could not be connected to (the transport says so: nothing was sent); a
:class:`Ticket` remembers its node because it can only be redeemed there. Reads and
logouts visit every node.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .._version import __version__
from ..certs import Certificates, load_certificates
from ..exceptions import (
    ConfigurationError,
    IdentityError,
    QpsConnectionError,
    QpsError,
    QpsHTTPError,
    QpsResponseError,
    RedirectError,
)
from ..identity import QlikUser, shown
from ..redirects import origin_of
from ..xrf import new_xrfkey
from .errors import all_failed, http_error, transport_error
from .models import (
    SESSION_ID_RE,
    TARGET_ID_RE,
    EndReport,
    NodeFailure,
    ProxySession,
    Ticket,
    new_session_id,
)
from .nodes import NodeHealth, check_virtual_proxy_prefix, normalise_node
from .transport import QpsAdapter, QpsAnswer, QpsRequest, Timeout, TransportError

__all__ = ["QpsClient"]

log = logging.getLogger("qlikauth.qps")

_USER_AGENT = f"qlikauth/{__version__}"
#: Statuses that say the node, not the request, is failing: a creation call moves on to the
#: next node (nothing was made; an unused ticket or session id is harmless).
_NODE_DOWN_STATUSES = frozenset({500, 502, 503, 504})


class QpsClient:
    """A pooled mutual-TLS client for one virtual proxy on one or more QPS nodes.

    :param nodes: base URL(s) of the QPS API, e.g. ``"https://qs1.example.com:4243"``;
        order matters: creation calls go to the first healthy node.
    :param certificates: a :class:`Certificates`, or a directory / PFX path.
    :param virtual_proxy: the virtual proxy prefix (``""`` for the default one).
    :param timeout: read timeout in seconds; ``connect_timeout`` defaults to it.
    :param pool_maxsize: at most this many connections per node, kept alive between calls;
        match it to the number of threads calling QPS at once (a call past the bound waits
        up to ``connect_timeout`` for a free connection).
    :param unhealthy_for: seconds a node that failed to connect is tried last.
    """

    def __init__(
        self,
        nodes: str | Sequence[str],
        certificates: Certificates | str | Any,
        virtual_proxy: str = "",
        timeout: float = 5.0,
        *,
        connect_timeout: float | None = None,
        passphrase: str | bytes | None = None,
        pool_maxsize: int = 10,
        max_response_bytes: int = 1 << 20,
        unhealthy_for: float = 30.0,
    ) -> None:
        if isinstance(nodes, str):
            nodes = [nodes]
        self.nodes: tuple[str, ...] = tuple(normalise_node(n) for n in nodes)
        if not self.nodes:
            raise ConfigurationError(
                "no QPS node given: pass at least one URL such as https://qlik.example.com:4243."
            )
        if len(set(self.nodes)) != len(self.nodes):
            raise ConfigurationError(f"QPS nodes are listed twice: {list(nodes)}.")
        self.virtual_proxy = check_virtual_proxy_prefix(virtual_proxy)
        if timeout is None or timeout <= 0:
            raise ConfigurationError(
                "timeout must be a positive number of seconds (QPS calls must not hang)."
            )
        self.timeout = (float(connect_timeout or timeout), float(timeout))
        self._timeout = Timeout(*self.timeout)
        if not isinstance(pool_maxsize, int) or pool_maxsize < 1:
            raise ConfigurationError("pool_maxsize must be a whole number of at least 1.")
        self.max_response_bytes = max_response_bytes
        self.unhealthy_for = unhealthy_for
        self.certificates = load_certificates(certificates, passphrase)
        self.adapter = QpsAdapter(
            self.certificates.client_ssl_context(),
            {n: (urlsplit(n).hostname or "", urlsplit(n).port or 443) for n in self.nodes},
            pool_maxsize=pool_maxsize,
        )
        base_path = f"/qps/{self.virtual_proxy}/" if self.virtual_proxy else "/qps/"
        self._base = {n: n + base_path for n in self.nodes}
        self._health = NodeHealth(self.nodes, unhealthy_for)

    def rest_uri(self, node: str) -> str:
        """``https://node:4243/qps/{prefix}/``: what QPS sends as ``proxyRestUri``."""
        return self._base[node]

    def node_for_rest_uri(self, proxy_rest_uri: str) -> str:
        """The configured node a ``proxyRestUri`` names, or :class:`RedirectError`.

        ``proxyRestUri`` comes from the browser's query string: calling whatever it
        names would send our client certificate handshake and the user's identity to
        an attacker. Only a configured node *and* this client's virtual proxy match.
        """
        if not isinstance(proxy_rest_uri, str) or not proxy_rest_uri:
            raise RedirectError(
                "proxyRestUri is missing: the request did not come from a Qlik virtual proxy."
            )
        try:
            origin = origin_of(proxy_rest_uri)
        except RedirectError as exc:
            raise RedirectError(f"proxyRestUri refused: {exc}") from None
        parts = urlsplit(proxy_rest_uri)
        node = str(origin) if origin.port != 443 else f"https://{origin.host}:443"
        want = self._base.get(node)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        if (
            want is None
            or origin.scheme != "https"
            or parts.query
            or parts.fragment
            or path.lower() != urlsplit(want).path
        ):
            configured = ", ".join(self._base.values())
            # The value came from the browser: quoted short (a 10 kB path would land in the log).
            raise RedirectError(
                f"proxyRestUri {shown(f'{origin}{parts.path}', 80)} is not a configured QPS node "
                f"and virtual proxy ({configured}); refused. If that node is yours, add it to "
                "the QPS nodes setting."
            )
        return node

    # -- health ---------------------------------------------------------------------
    def _ordered_nodes(self) -> list[str]:
        return self._health.ordered()

    def _mark(self, node: str, ok: bool) -> None:
        self._health.mark(node, ok)

    def is_down(self, node: str) -> bool:
        """``node`` failed within ``unhealthy_for`` (unreachable, hung, or answering 5xx)."""
        return self._health.is_down(node)

    # -- the one place requests are sent ------------------------------------------------
    def _call(
        self,
        node: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        what: str,
        timeout: tuple[float, float] | None = None,
        secret_in_path: bool = False,
    ) -> tuple[int, Any]:
        """Send one API call to ``node``; return (status, parsed JSON) for 2xx and 404.

        Raises typed :class:`QpsError` subclasses with ``sent`` telling whether the
        request may have reached QPS (decides what may be retried).
        """
        xrf = new_xrfkey()
        base = self._base[node] if not path.startswith("/") else node
        query = f"{'&' if '?' in path else '?'}xrfkey={xrf}"
        url = f"{base}{path}{query}"
        # A plain dict (names spelled once, as sent): the pools and responses take it as is.
        headers: dict[str, str] = {
            "X-Qlik-Xrfkey": xrf,
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
            headers["Content-Length"] = str(len(data))
        elif method in ("POST", "PUT"):
            headers["Content-Length"] = "0"
        prep = QpsRequest()
        prep.method = method
        prep.url = url
        prep.path_url = url[len(node) :]
        prep.headers = headers  # type: ignore[assignment]
        prep.body = data
        shown = "…" if secret_in_path else path
        started = time.perf_counter()
        limits = self._timeout if timeout is None else Timeout(*timeout)
        try:
            resp: QpsAnswer = self.adapter.send(  # type: ignore[assignment]
                prep,
                stream=True,
                timeout=limits,  # type: ignore[arg-type]
            )
        except TransportError as exc:
            error = transport_error(exc, node, what, limits.pair)
            # A node that could not be reached, or took the whole read timeout to say nothing,
            # goes last for new sign-ins for a while: one hung node must not hang every sign-in.
            if not getattr(error, "pool_exhausted", False):
                self._mark(node, False)
            raise error from None
        except requests.exceptions.RequestException as exc:
            # Only requests' own checks raise these (the pools raise the types above);
            # whether anything was sent is unknown, so assume it was.
            self._mark(node, False)
            raise QpsConnectionError(
                f"{what}: the call to {node} failed ({type(exc).__name__}); QPS may or may not "
                "have acted on it.",
                node=node,
                sent=True,
                stale=False,
            ) from None
        try:
            payload = self._read_body(resp, node, what)
        finally:
            resp.raw.release_conn()
        status = resp.status_code
        log.debug(
            "QPS %s %s on %s -> %s in %.1f ms",
            method,
            shown,
            node,
            status,
            (time.perf_counter() - started) * 1000,
        )
        if status < 500:
            self._mark(node, True)
        if 200 <= status < 300 or status == 404:
            if status == 404:
                return status, payload
            if not payload:
                return status, None
            try:
                return status, json.loads(payload)
            except ValueError:
                raise QpsResponseError(
                    f"{what}: {node} answered {status} with a body that is not JSON; is this URL "
                    "the "
                    "QPS API (port 4243)?",
                    node=node,
                ) from None
        if status >= 500:
            # A node answering 5xx is as good as down for new sign-ins until it recovers.
            self._mark(node, False)
        raise self._http_error(status, payload, node, what)

    def _call_idempotent(
        self, node: str, method: str, path: str, *, what: str, secret_in_path: bool = False
    ) -> tuple[int, Any]:
        """:meth:`_call` for a lookup or a delete: a kept-alive connection the node had already
        closed (nothing reached QPS's logic) is tried once more on a fresh one, so an idle pool
        never makes a live node look down."""
        try:
            return self._call(node, method, path, what=what, secret_in_path=secret_in_path)
        except QpsConnectionError as exc:
            if not getattr(exc, "stale", False):
                raise
            return self._call(node, method, path, what=what, secret_in_path=secret_in_path)

    def _read_body(self, resp: QpsAnswer, node: str, what: str) -> bytes:
        cap = self.max_response_bytes
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > cap:
            resp.raw.close()
            raise QpsResponseError(
                f"{what}: {node} sent {length} bytes, over the {cap}-byte limit.", node=node
            )
        try:
            data = resp.raw.read(cap + 1, decode_content=True)
        except TransportError as exc:
            raise transport_error(exc, node, what, self.timeout) from None
        if len(data) > cap:
            resp.raw.close()
            raise QpsResponseError(
                f"{what}: {node} sent more than {cap} bytes, over the limit; refused.", node=node
            )
        return data

    def _http_error(self, status: int, payload: bytes, node: str, what: str) -> QpsHTTPError:
        return http_error(status, payload, node, what, self.virtual_proxy)

    # -- tickets ----------------------------------------------------------------------
    def request_ticket(
        self, user: QlikUser, target_id: str | None = None, *, node: str | None = None
    ) -> Ticket:
        """Request a one-time ticket for ``user``.

        With ``node`` (as the authentication-module flow needs: the ticket must come
        from the node that sent the user), only that node is asked. Otherwise nodes
        are tried in order: a node that cannot be reached, times out or answers 5xx
        is skipped (an unused ticket simply expires, so asking another node is safe).
        """
        body: dict[str, Any] = user.to_qps()
        if target_id is not None:
            if not isinstance(target_id, str) or not TARGET_ID_RE.match(target_id):
                raise RedirectError("targetId is malformed: Qlik sends a GUID; refused.")
            body["TargetId"] = target_id
        nodes = [node] if node is not None else self._ordered_nodes()
        if node is not None and node not in self._base:
            raise ConfigurationError(f"{node!r} is not one of this client's QPS nodes.")
        errors: list[QpsError] = []
        for n in nodes:
            for attempt in (1, 2):
                try:
                    status, data = self._call(n, "POST", "ticket", body, what="ticket request")
                except QpsConnectionError as exc:
                    # A broken pooled connection is worth one more try on the same node
                    # (the server may have closed it idle); anything else moves on.
                    if attempt == 1 and getattr(exc, "stale", False):
                        continue
                    errors.append(exc)
                    break
                except QpsHTTPError as exc:
                    if exc.status_code in _NODE_DOWN_STATUSES and node is None:
                        errors.append(exc)
                        break
                    raise
                if status == 404:
                    raise self._http_error(404, b"", n, "ticket request")
                return self._ticket_from(data, n, user)
        raise self._all_failed("ticket request", errors)

    def _ticket_from(self, data: Any, node: str, user: QlikUser) -> Ticket:
        if not isinstance(data, dict):
            raise QpsResponseError(
                f"ticket request: {node} answered without a JSON object.", node=node
            )
        ticket = data.get("Ticket") or data.get("ticket")
        if not isinstance(ticket, str) or not ticket:
            raise QpsResponseError(
                f"ticket request: {node}'s answer has no Ticket field.", node=node
            )
        target = data.get("TargetUri", data.get("targetUri"))
        return Ticket(
            ticket=ticket,
            target_uri=target if isinstance(target, str) and target else None,
            node=node,
            user=user,
        )

    @staticmethod
    def _all_failed(what: str, errors: list[QpsError]) -> QpsError:
        return all_failed(what, errors)

    # -- sessions ---------------------------------------------------------------------
    @staticmethod
    def _check_session_id(session_id: str) -> bool:
        return isinstance(session_id, str) and bool(SESSION_ID_RE.match(session_id))

    def add_session(self, user: QlikUser, session_id: str | None = None) -> ProxySession:
        """Create a proxy session for ``user``; set its id as the virtual proxy's cookie.

        The id is generated here (256 bits from :mod:`secrets`) unless given. After a
        read timeout the node is asked whether the session exists before anything is
        tried again, and a retry reuses the same id, so one sign-in never leaves two
        sessions.
        """
        if session_id is None:
            session_id = new_session_id()
        elif not self._check_session_id(session_id):
            raise IdentityError(
                "session_id must be 22-128 URL-safe characters with at least 128 random bits; "
                "let qlikauth generate it (session_id=None).",
                field="session_id",
            )
        body = user.to_qps()
        body["SessionId"] = session_id
        errors: list[QpsError] = []
        for node in self._ordered_nodes():
            try:
                status, data = self._call(node, "POST", "session", body, what="session request")
            except QpsHTTPError as exc:
                if exc.status_code in _NODE_DOWN_STATUSES:
                    errors.append(exc)
                    continue
                raise
            except QpsConnectionError as exc:
                if not getattr(exc, "sent", True):
                    errors.append(exc)
                    continue
                # The POST may have landed: ask before trying again.
                try:
                    found = self._get_session_on(node, session_id)
                except QpsError:
                    raise exc from None  # cannot tell; never risk a second session
                if found is not None:
                    return found
                try:
                    status, data = self._call(node, "POST", "session", body, what="session request")
                except QpsConnectionError as exc2:
                    if getattr(exc2, "sent", True):
                        raise
                    errors.append(exc2)
                    continue
            if status == 404:
                raise self._http_error(404, b"", node, "session request")
            created = self._session_from(data, node, fallback_user=user)
            if created.session_id != session_id:
                raise QpsResponseError(
                    f"session request: {node} answered with another SessionId than the one sent; "
                    "refusing to hand the browser a cookie QPS may not know.",
                    node=node,
                )
            return created
        raise self._all_failed("session request", errors)

    def _session_from(
        self, data: Any, node: str, fallback_user: QlikUser | None = None
    ) -> ProxySession:
        if not isinstance(data, dict):
            raise QpsResponseError(
                f"session call: {node} answered without a JSON object.", node=node
            )
        sid = data.get("SessionId", data.get("sessionId"))
        if not isinstance(sid, str) or not sid:
            raise QpsResponseError(f"session call: {node}'s answer has no SessionId.", node=node)
        try:
            user = QlikUser.from_qps(data)
        except IdentityError:
            if fallback_user is None:
                raise QpsResponseError(
                    f"session call: {node}'s answer has no valid user.", node=node
                ) from None
            user = fallback_user
        return ProxySession(session_id=sid, user=user, node=node)

    def _get_session_on(self, node: str, session_id: str) -> ProxySession | None:
        status, data = self._call_idempotent(
            node,
            "GET",
            f"session/{quote(session_id, safe='')}",
            what="session lookup",
            secret_in_path=True,
        )
        if status == 404:
            return None
        return self._session_from(data, node)

    def get_session(self, session_id: str, *, node: str | None = None) -> ProxySession | None:
        """The proxy session with this id (looked for on every node), or None.

        Ids that cannot be ours (a cookie value a browser made up) answer None without
        a call. If the session is not found and some node could not be asked, the
        error is raised rather than a wrong None.
        """
        if not self._check_session_id(session_id):
            return None
        nodes = [node] if node else self._ordered_nodes()
        errors: list[QpsError] = []
        for n in nodes:
            # (a pooled connection the node dropped gets one more try in _call_idempotent, so a
            # node that is gone shows as not reached rather than "may have acted")
            try:
                found = self._get_session_on(n, session_id)
            except QpsConnectionError as exc:
                errors.append(exc)
                continue
            if found is not None:
                return found
        if errors:
            raise self._all_failed("session lookup", errors)
        return None

    def delete_session(self, session_id: str) -> bool:
        """End the proxy session on every node that has it; True if one existed."""
        if not self._check_session_id(session_id):
            return False
        existed = False
        errors: list[QpsError] = []
        for n in self.nodes:
            try:
                status, _ = self._call(
                    n,
                    "DELETE",
                    f"session/{quote(session_id, safe='')}",
                    what="session delete",
                    secret_in_path=True,
                )
            except QpsError as exc:  # any failure of one node: the others are still asked
                errors.append(exc)
                continue
            existed = existed or status != 404
        if errors and not existed:
            raise self._all_failed("session delete", errors)
        return existed

    def _user_path(self, user: QlikUser) -> str:
        return f"user/{quote(user.user_directory, safe='')}/{quote(user.user_id, safe='')}"

    def _sessions_from(self, data: Any, node: str) -> list[ProxySession]:
        if data is None:
            return []
        if not isinstance(data, list):
            raise QpsResponseError(
                f"user sessions: {node} answered without a JSON list.", node=node
            )
        return [self._session_from(item, node) for item in data]

    def _each_node(self, method: str, path: str, what: str) -> list[ProxySession]:
        out: list[ProxySession] = []
        errors: list[QpsError] = []
        for n in self.nodes:
            try:
                status, data = self._call(n, method, path, what=what)
                if status != 404:
                    out.extend(self._sessions_from(data, n))
            except QpsError as exc:  # any failure of one node: the others are still asked
                errors.append(exc)
                continue
        if errors:
            failed = ", ".join(e.node or "?" for e in errors)
            raise QpsConnectionError(
                f"{what}: {failed} did not answer; the result from the other nodes is in "
                "the error's .partial attribute. Sessions on a node that did not answer end when "
                "they time out (end_everywhere reports what is left, to end later).",
                node=errors[0].node,
                errors=errors,
                partial=out,
            )
        return out

    def user_sessions(self, user: QlikUser) -> list[ProxySession]:
        """The user's proxy sessions on every node."""
        return self._each_node("GET", self._user_path(user), "user sessions")

    def logout_user(self, user: QlikUser) -> list[ProxySession]:
        """End the user's proxy sessions on every node; returns the sessions ended."""
        return self._each_node("DELETE", self._user_path(user), "user logout")

    def end_everywhere(
        self,
        users: Sequence[QlikUser] = (),
        session_ids: Sequence[str] = (),
        *,
        nodes: Sequence[str] | None = None,
    ) -> EndReport:
        """End ``users``' proxy sessions and the sessions ``session_ids`` on every node; never
        raises
        for a node that fails.

        Each node is asked in turn. A node that fails (cannot be reached, does not answer in
        time, answers an error status or something that is not JSON) is not asked again in this
        call: it goes into :attr:`EndReport.failed` with everything still to be ended there, and
        the other nodes are still asked. A node known to be down (it failed within
        ``unhealthy_for``) is first asked ``/qps/alive`` for at most a second, not waited for:
        another process may have made sessions there since it came back. Ids that cannot be
        proxy session ids are ignored. This is the ending every sign-out path uses.
        """
        wanted_users: list[QlikUser] = []
        for user in users:
            if not any(u.key == user.key for u in wanted_users):
                wanted_users.append(user)
        wanted_ids = list(dict.fromkeys(s for s in session_ids if self._check_session_id(s)))
        if not wanted_users and not wanted_ids:
            return EndReport()
        ended = 0
        failed: list[NodeFailure] = []
        for node in nodes if nodes is not None else self.nodes:
            if node not in self._base:
                raise ConfigurationError(f"{node!r} is not one of this client's QPS nodes.")
            # A node this process saw fail is asked briefly whether it is back (another
            # process may have made sessions there since) rather than waited for in full.
            if self._health.is_down(node) and not self.alive([node], probe=1.0)[node]:
                failed.append(
                    NodeFailure(
                        node,
                        "failed recently and still not answering",
                        tuple(wanted_users),
                        tuple(wanted_ids),
                    )
                )
                continue
            users_left, ids_left = list(wanted_users), list(wanted_ids)
            try:
                while users_left:
                    status, data = self._call_idempotent(
                        node, "DELETE", self._user_path(users_left[0]), what="user logout"
                    )
                    if status != 404:
                        ended += len(self._sessions_from(data, node))
                    users_left.pop(0)
                while ids_left:
                    status, _ = self._call_idempotent(
                        node,
                        "DELETE",
                        f"session/{quote(ids_left[0], safe='')}",
                        what="session delete",
                        secret_in_path=True,
                    )
                    ended += status != 404
                    ids_left.pop(0)
            except QpsError as exc:
                failed.append(
                    NodeFailure(node, _short_reason(exc), tuple(users_left), tuple(ids_left))
                )
                log.warning(
                    "QPS: %s did not finish ending sessions (%s); kept to end later",
                    node,
                    _short_reason(exc),
                )
        return EndReport(ended, tuple(failed))

    def alive(self, nodes: Sequence[str] | None = None, *, probe: float = 3.0) -> dict[str, bool]:
        """``{node: True/False}`` from each node's ``/qps/alive`` (``nodes``: only those), each
        given at most ``probe`` seconds; a node that answers is healthy again at once, whatever
        ``unhealthy_for`` says."""
        out = {}
        for n in nodes if nodes is not None else self.nodes:
            try:
                status, data = self._call(
                    n,
                    "GET",
                    "/qps/alive",
                    what="alive check",
                    timeout=(min(self.timeout[0], probe), min(self.timeout[1], probe)),
                )
                out[n] = status == 200 and data is not False
            except QpsError:
                out[n] = False
        return out

    # -- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        """Close pooled connections."""
        self.adapter.close()

    def __enter__(self) -> QpsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QpsClient(nodes={list(self.nodes)!r}, virtual_proxy={self.virtual_proxy!r})"


def _short_reason(exc: QpsError) -> str:
    """Why a node failed, in a few words and without anything the call carried."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    if getattr(exc, "sent", True) is False:
        return "not reachable"
    return type(exc).__name__
