"""The runtime of a web integration: one configuration's QPS client, authenticators and store.

:func:`build_runtime` turns a :class:`~qlikauth.web.config.QlikAuthConfig` (or a settings
mapping) into a :class:`QlikAuthRuntime`. Nothing is read or connected at build time: the
certificates are loaded on the first QPS call, so a portal starts (and ``manage.py check``
runs) even when Qlik is down. The flows in :mod:`qlikauth.web.flows` take a runtime.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from ..authenticators.base import Cookie
from ..authenticators.header import HeaderAuthenticator
from ..authenticators.session import SessionAuthenticator
from ..authenticators.ticket import TicketAuthenticator
from ..exceptions import RedirectError
from ..identity import QlikUser
from ..qps import QpsClient
from ..qps.models import EndReport
from ..redirects import RedirectPolicy
from ..store import StateStore, open_store
from .config import QlikAuthConfig, setting_problem
from .lifecycle import PendingEndings

__all__ = ["QlikAuthRuntime", "SignOutParticipant", "build_runtime"]

log = logging.getLogger("qlikauth.web")


@runtime_checkable
class SignOutParticipant(Protocol):
    """Something else the portal's sign-out ends, besides the QSEoW proxy sessions.

    :meth:`QlikAuthRuntime.add_sign_out` registers one; :func:`qlikauth.web.flows.end_sessions`
    (every sign-out path of both frameworks) calls :meth:`sign_out` with the request and the
    Qlik user being signed out. A hybrid portal's :class:`~qlikauth.web.cloud.CloudPortal` is
    one: it revokes and forgets the user's Qlik Cloud access token.
    """

    def sign_out(self, request: Any, user: QlikUser | None) -> Any:
        """End what this participant holds for ``user`` (errors: raise a QlikAuthError);
        ``request`` is None when the sign-out happens without a browser (back-channel logout)."""


class QlikAuthRuntime:
    """The QPS client and authenticators for one configuration, made on first use.

    Thread-safe; one per Flask app / Django settings value. Nothing here reads files
    or opens connections until a QPS call is actually needed.

    :param store: the :class:`~qlikauth.store.StateStore` for one-time state shared by
        every portal process (SSO ``state``/``nonce``, replay caches); when not given, the
        STATE_STORE setting's (a :class:`~qlikauth.store.MemoryStore`, one process only,
        when unset).
    """

    def __init__(
        self,
        config: QlikAuthConfig,
        *,
        store: StateStore | None = None,
        secret: str | bytes | None = None,
        portal_session_lifetime: float | None = None,
    ) -> None:
        self.config = config
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not secret:
            # One process only: another process could not read this one's previous-user cookie.
            # The integrations pass the framework's secret (Flask's secret_key,
            # Django's SECRET_KEY).
            log.warning(
                "qlikauth: no secret given to the runtime; using a random one for this "
                "process (pass the framework's secret key when several processes serve "
                "the portal)"
            )
            secret = secrets.token_bytes(32)
        self.secret: bytes = secret
        #: How long a portal session can live (the framework's setting): a sign-out is
        #: remembered at least this long, so a copy of the portal cookie never works again.
        self.portal_session_lifetime = float(portal_session_lifetime or 31 * 24 * 3600.0)
        self._pending: PendingEndings | None = None
        self._sealed: StateStore | None = None
        self._lock = threading.RLock()  # authenticators make the client inside their own _once
        self._qps: QpsClient | None = None
        self._ticket: TicketAuthenticator | None = None
        self._session: SessionAuthenticator | None = None
        self._header: HeaderAuthenticator | None = None
        self._store: StateStore | None = store
        self._replay: StateStore | None = None
        self._store_given = store is not None
        self._sign_outs: tuple[SignOutParticipant, ...] = ()
        prefix = f"/{config.virtual_proxy}/" if config.virtual_proxy else "/"
        self.hub_policy = RedirectPolicy(
            list(config.allowed_targets) + list(config.node_hub_urls.values()),
            default=config.hub_url,
            relative_prefix=prefix,
        )

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        value = getattr(self, name)
        if value is None:
            with self._lock:
                value = getattr(self, name)
                if value is None:
                    value = make()
                    setattr(self, name, value)
        return value

    @property
    def qps(self) -> QpsClient:
        """The pooled mutual-TLS client (loads the certificates on first access)."""
        c = self.config
        return self._once(
            "_qps",
            lambda: QpsClient(
                list(c.qps_nodes),
                c.certs,
                c.virtual_proxy,
                c.timeout,
                passphrase=c.cert_passphrase,
                connect_timeout=c.connect_timeout,
                unhealthy_for=c.unhealthy_for,
            ),
        )

    @property
    def ticket(self) -> TicketAuthenticator:
        """The ticket authenticator (hub URL, per-node hub URLs and allowed targets from the
        config)."""
        c = self.config
        return self._once(
            "_ticket",
            lambda: TicketAuthenticator(
                self.qps,
                c.hub_url,
                c.allowed_targets,
                node_hub_urls=c.node_hub_urls,
                relative_prefix=self.hub_policy.relative_prefix,
            ),
        )

    @property
    def session(self) -> SessionAuthenticator:
        """The session authenticator (cookie settings from the config)."""
        made = self._session  # asked on every session-mode page view: no closure once it exists
        if made is not None:
            return made
        c = self.config
        return self._once(
            "_session",
            lambda: SessionAuthenticator(
                self.qps,
                c.effective_cookie_name,
                c.cookie_domain,
                c.cookie_secure,
                c.cookie_samesite,
            ),
        )

    @property
    def header(self) -> HeaderAuthenticator:
        """The header authenticator; :class:`ConfigurationError` when HEADER_NAME is not set."""
        c = self.config
        header_name = c.header_name
        if header_name is None:
            raise setting_problem(
                "HEADER_NAME",
                "not set: give the header virtual proxy's header name "
                "(QMC: Header authentication header name), e.g. X-Portal-User.",
            )
        return self._once(
            "_header",
            lambda: HeaderAuthenticator(header_name, c.header_user_directory, c.header_pattern),
        )

    @property
    def store(self) -> StateStore:
        """The shared one-time state store: the one given, else the STATE_STORE setting's
        (``MemoryStore``, one process only, when unset; docs/stores.md)."""
        return self._once(
            "_store", lambda: open_store(self.config.state_store, namespace="qlikauth")
        )

    @property
    def sealed_store(self) -> StateStore:
        """:attr:`store` for bearer values (proxy session ids of single-logout records and pending
        sign-outs): in a shared store they are kept encrypted with ``STORE_KEYS`` (or
        ``$QLIKAUTH_STORE_KEYS``), and a shared store without keys is a ConfigurationError."""
        from ..store.sealed import sealed_for_bearer_values

        return self._once(
            "_sealed",
            lambda: sealed_for_bearer_values(  # type: ignore[no-any-return]
                self.store,
                self.config.store_keys,
                "proxy session ids (single logout, pending sign-outs)",
            ),
        )

    @property
    def replay_cache(self) -> StateStore:
        """A store for consumed one-time ids (SAML assertion ids, token ids) on STATE_STORE that
        **refuses when full** instead of evicting (:class:`~qlikauth.exceptions.StoreFull`): an
        evicted id could be replayed. 100,000 live entries at most; on Redis the server's
        eviction policy is checked too. Refused for a Django cache (its backends evict)."""
        return self._once(
            "_replay",
            lambda: open_store(
                self.config.state_store,
                namespace="qlikauth-replay",
                max_items=100_000,
                when_full="refuse",
            ),
        )

    def add_sign_out(self, participant: SignOutParticipant) -> None:
        """Make the portal's sign-out end ``participant``'s state too (once, however often added).

        Mounting the Qlik Cloud endpoints does this for their
        :class:`~qlikauth.web.cloud.CloudPortal`
        (``flask_qlikauth.cloud.cloud_blueprint``, ``django_qlikauth.cloud.cloud_urls``).
        """
        if not isinstance(participant, SignOutParticipant):
            raise TypeError(f"{type(participant).__name__} has no sign_out(request, user) method.")
        with self._lock:
            if not any(p is participant for p in self._sign_outs):
                self._sign_outs = (*self._sign_outs, participant)

    def remove_sign_out(self, participant: SignOutParticipant) -> None:
        """Undo :meth:`add_sign_out` (a portal taken down or reconfigured)."""
        with self._lock:
            self._sign_outs = tuple(p for p in self._sign_outs if p is not participant)

    @property
    def sign_outs(self) -> tuple[SignOutParticipant, ...]:
        """What the portal's sign-out ends besides the proxy sessions (:meth:`add_sign_out`)."""
        return self._sign_outs

    @property
    def revocation_ttl(self) -> float:
        """Seconds a sign-out is remembered in the store: as long as a portal session could live."""
        return max(self.portal_session_lifetime, 36 * 3600.0)

    @property
    def pending(self) -> PendingEndings:
        """What failing nodes could not end yet
        (:class:`~qlikauth.web.lifecycle.PendingEndings`)."""
        return self._once("_pending", lambda: PendingEndings(self))  # type: ignore[no-any-return]

    def finish_pending(self) -> EndReport:
        """End what earlier sign-outs left pending on nodes that did not answer then; returns
        what was done (nodes that still fail keep their part)."""
        return self.pending.finish()

    def end_sessions(
        self, session_ids: Iterable[str], *, reason: str = "proxy session replaced"
    ) -> Any:
        """End proxy sessions on every node through the one sign-out (never raises for a node)."""
        from .lifecycle import sign_out

        return sign_out(None, self, session_ids=session_ids, reason=reason)

    def hub_for_node(self, node: str | None) -> str:
        """The hub URL of QPS ``node`` (NODE_HUB_URLS), or HUB_URL when it has none."""
        if node is None:
            return self.config.hub_url
        return self.config.node_hub_urls.get(node, self.config.hub_url)

    def recheck_after(self, explicit: bool) -> float | None:
        """``recheck_after`` for :meth:`SessionAuthenticator.resume` under SESSION_RECHECK.

        The setting means what ``recheck_after`` means: an explicit "open Qlik" (``/qlik/login``)
        always confirms the remembered session (``0``); otherwise it is confirmed once
        SESSION_RECHECK seconds have passed since the last confirmation (``0``: on every page
        view), or never when it is unset (``None``, the default), so page views make no QPS call.
        """
        return 0.0 if explicit else self.config.session_recheck

    def clear_cookie(self) -> Cookie:
        """The cookie that clears the proxy session cookie (no QPS call, no certificates read)."""
        c = self.config
        return Cookie(
            c.effective_cookie_name,
            "",
            c.cookie_domain,
            "/",
            c.cookie_secure,
            True,
            c.cookie_samesite,
            max_age=0,
        )

    def user_for(
        self,
        user_id: str,
        groups: Iterable[str] = (),
        *,
        attributes: Iterable[tuple[str, str]] = (),
    ) -> QlikUser:
        """A :class:`QlikUser` in the configured USER_DIRECTORY with one ``group`` attribute per
        group."""
        if not self.config.user_directory:
            raise setting_problem(
                "USER_DIRECTORY",
                "not set: give the user directory portal users belong to "
                "in Qlik (e.g. 'PORTAL'), or configure a user mapper.",
            )
        attrs = [("group", g) for g in groups] + list(attributes)
        return QlikUser(self.config.user_directory, user_id, attrs)

    @staticmethod
    def local_redirect(url: str | None, default: str = "/") -> str:
        """``url`` when it is a safe path on this portal (``/...``, never ``//host``), else
        ``default``.

        Uses :class:`RedirectPolicy` with no allowed hosts, so only relative paths pass;
        the answer is the path, query and fragment (never an absolute URL).
        """
        if not url:
            return default
        policy = RedirectPolicy((), default="https://portal.invalid")
        try:
            checked = policy.check(url)
        except RedirectError:
            return default
        parts = urlsplit(checked)
        if parts.netloc != "portal.invalid":
            return default
        return urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))

    def close(self) -> None:
        """Close the QPS client's pooled connections and the stores' (those this runtime made)."""
        if self._qps is not None:
            self._qps.close()
        # Only stores made here from a STATE_STORE string; a store object given is its owner's.
        made = [self._replay] + ([self._store] if not self._store_given else [])
        for store in made if isinstance(self.config.state_store, str) else []:
            closer = getattr(store, "close", None)
            if callable(closer):
                closer()


def build_runtime(
    config: QlikAuthConfig | Mapping[str, Any],
    *,
    store: StateStore | None = None,
    secret: str | bytes | None = None,
    portal_session_lifetime: float | None = None,
) -> QlikAuthRuntime:
    """A :class:`QlikAuthRuntime` for ``config`` (a :class:`QlikAuthConfig` or a settings mapping).

    ``secret``: the portal's secret key (it keys the previous-user cookie);
    ``portal_session_lifetime``:
    how long the framework keeps a portal session (a sign-out is remembered that long).
    """
    if not isinstance(config, QlikAuthConfig):
        config = QlikAuthConfig.from_mapping(config)
    return QlikAuthRuntime(
        config, store=store, secret=secret, portal_session_lifetime=portal_session_lifetime
    )
