"""Per-user Qlik Cloud access tokens for qlik-embed: cached, refreshed early, fetched once.

qlik-embed's ``data-get-access-token`` asks the portal for the signed-in user's token on
every page load; the tenant's token endpoint takes 100 calls a minute. So
:class:`AccessTokenCache` keeps one token per (OAuth client, user) in a
:class:`~qlikauth.store.StateStore` (memory for one process, Redis for several), honours
the token's expiry, and:

- **refreshes early**: once a token is within ``refresh_margin`` of expiring, the first
  caller fetches a new one while everyone else keeps the still-valid old one;
- **single-flight**: concurrent callers for a user with no valid token wait for one
  fetch, in this process (a lock per key) and across processes (the store's owner-checked
  ``lock``, so 50 requests in several portal processes still make one token request, and a
  fetch slower than ``lock_ttl`` cannot release the next fetcher's lock);
- never logs a token; keys in the store are hashes, not user names.

:class:`UserProvisioner` is the *ensure-user* step Qlik asks for before the first
impersonation (impersonation needs an existing user and cannot set groups): a backend
JWT login (creates the user and sets its groups; idempotent at Qlik) or the users API
(creates the user, no groups), remembered in the store so it runs once per user and
group set. :class:`CloudAccess` puts both together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from ..exceptions import ConfigurationError, QlikEndpointError, QlikEndpointHTTPError
from ..store import MemoryStore, StateStore, StoreKeys
from ..store._keys import digest as _digest
from ..store.sealed import sealed_for_bearer_values
from .client import AccessToken, CloudJwtIssuer, CloudUser, OAuthClient, QlikCloud

__all__ = ["AccessTokenCache", "UserProvisioner", "CloudAccess"]

log = logging.getLogger("qlikauth.cloud")

LookupField = Literal["subject", "userId"]


_MEMO_KEPT = 4096


def _bounded_put(memo: dict[Any, Any], key: Any, value: Any) -> None:
    """Remember ``key -> value`` in a memo of at most _MEMO_KEPT entries (emptied when full)."""
    if len(memo) >= _MEMO_KEPT:
        memo.clear()
    memo[key] = value


class AccessTokenCache:
    """Impersonation access tokens per user, shared through a :class:`StateStore`.

    :param cloud: the tenant.
    :param client: the OAuth client (machine-to-machine impersonation enabled).
    :param store: where tokens live; the default :class:`MemoryStore` serves one process. A
        shared store (Redis, a Django cache) keeps them encrypted with ``keys``.
    :param keys: the ``STORE_KEYS`` setting (:class:`~qlikauth.store.StoreKeys`: the first key
        seals, all open); default ``$QLIKAUTH_STORE_KEYS``. A shared store without keys is a
        :class:`~qlikauth.exceptions.ConfigurationError`: tokens are never kept in clear there.
    :param refresh_margin: refresh a token this many seconds before it expires (default:
        10 % of its lifetime, at least 60 s and at most 30 minutes).
    :param lock_ttl: how long a cross-process fetch lock lives if its holder dies.
    :param wait_timeout: how long a caller waits for another's fetch before trying itself.
    :param lookup: ``"subject"`` (the IdP subject, what a JWT login sets) or ``"userId"``.
    :param clock: the wall clock (epoch seconds), replaceable so expiry can be tested.
    """

    def __init__(
        self,
        cloud: QlikCloud,
        client: OAuthClient,
        store: StateStore | None = None,
        *,
        refresh_margin: float | None = None,
        lock_ttl: float = 15.0,
        wait_timeout: float = 15.0,
        lookup: LookupField = "subject",
        scope: str | None = None,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.02,
        keys: StoreKeys | str | None = None,
    ) -> None:
        if lookup not in ("subject", "userId"):
            raise ConfigurationError("lookup must be 'subject' or 'userId'.")
        self.cloud = cloud
        self.client = client
        self.store: StateStore = sealed_for_bearer_values(
            store if store is not None else MemoryStore(), keys, "Qlik Cloud access tokens"
        )
        self.refresh_margin = refresh_margin
        self.lock_ttl = lock_ttl
        self.wait_timeout = wait_timeout
        self.lookup = lookup
        self.scope = scope
        self.clock = clock
        self.poll_interval = poll_interval
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Every page load of qlik-embed asks for the token: the store key of a user and the
        # parse of the exact bytes the store holds are remembered (bounded; the store decides).
        self._keys: dict[tuple[str, str, str, str], str] = {}
        self._parsed: dict[bytes, tuple[AccessToken, float]] = {}
        #: Token requests this cache made to the tenant (for the bench and for tests).
        self.fetches = 0

    # -- keys ----------------------------------------------------------------------
    def _key(self, value: str) -> str:
        scope = self.scope or self.client.scope
        memo = (value, self.client.client_id, scope, self.lookup)
        key = self._keys.get(memo)
        if key is None:
            key = "qlikauth:qcat:" + _digest(
                self.cloud.tenant_url, self.client.client_id, self.lookup, value, scope
            )
            _bounded_put(self._keys, memo, key)
        return key

    def _local_lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                if len(self._locks) > 10_000:
                    # Drop idle locks so a long-running portal does not keep one per user forever.
                    for k in [k for k, v in self._locks.items() if not v.locked()][:5_000]:
                        del self._locks[k]
                lock = self._locks[key] = threading.Lock()
            return lock

    def _margin(self, token: AccessToken, issued_lifetime: float) -> float:
        if self.refresh_margin is not None:
            return self.refresh_margin
        return min(max(60.0, 0.1 * issued_lifetime), 1800.0)

    # -- reading -------------------------------------------------------------------
    def _cached(self, key: str) -> tuple[AccessToken, float] | None:
        raw = self.store.get(key)
        if raw is None:
            return None
        hit = self._parsed.get(raw)  # the same bytes parse to the same token
        if hit is not None:
            return hit
        try:
            head, body = raw.split(b"\n", 1)
            hit = (AccessToken.from_json(body), float(head))
        except (ValueError, KeyError, IndexError, TypeError):
            self.store.delete(key)
            return None
        _bounded_put(self._parsed, raw, hit)
        return hit

    def get(self, value: str) -> AccessToken:
        """A valid access token for the user whose ``lookup`` field is ``value``."""
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                "the user to impersonate must be a non-empty subject or user id."
            )
        key = self._key(value)
        now = self.clock()
        hit = self._cached(key)
        if hit is not None:
            token, refresh_at = hit
            if now < refresh_at:
                return token
            if token.expires_at - now > 1.0:
                # Early refresh: one caller fetches, the others keep the valid token.
                with self.store.lock(key + ":lock", self.lock_ttl) as held:
                    if not held:
                        return token
                    try:
                        fresh = self._cached(key)
                        if fresh is not None and self.clock() < fresh[1]:
                            return fresh[0]  # another caller refreshed it meanwhile
                        return self._fetch_and_store(key, value)
                    except QlikEndpointError as exc:
                        log.warning(
                            "refreshing a Qlik Cloud access token failed; keeping the current one: "
                            "%s",
                            exc,
                        )
                        return token
        return self._get_slow(key, value)

    def _get_slow(self, key: str, value: str) -> AccessToken:
        lock = self._local_lock(key)
        with lock:
            # Another thread of this process may have fetched while we waited.
            hit = self._cached(key)
            if hit is not None and hit[0].expires_at - self.clock() > 1.0:
                return hit[0]
            deadline = time.monotonic() + self.wait_timeout
            while True:
                # Owner-checked: if this fetch outlives lock_ttl and another process takes the
                # lock, leaving here does not release that process's lock.
                with self.store.lock(key + ":lock", self.lock_ttl) as held:
                    if held:
                        # The holder before us may have stored its token
                        # between our look and our lock.
                        hit = self._cached(key)
                        if hit is not None and hit[0].expires_at - self.clock() > 1.0:
                            return hit[0]
                        return self._fetch_and_store(key, value)
                # Another process is fetching: wait for its token (or its lock to go away).
                time.sleep(self.poll_interval)
                hit = self._cached(key)
                if hit is not None and hit[0].expires_at - self.clock() > 1.0:
                    return hit[0]
                if time.monotonic() > deadline:
                    log.warning(
                        "waited %.0f s for another process's Qlik Cloud token request; fetching "
                        "here",
                        self.wait_timeout,
                    )
                    return self._fetch_and_store(key, value)

    def _fetch_and_store(self, key: str, value: str) -> AccessToken:
        now = self.clock()
        self.fetches += 1
        if self.lookup == "subject":
            token = self.cloud.token(self.client, subject=value, scope=self.scope, now=now)
        else:
            token = self.cloud.token(self.client, user_id=value, scope=self.scope, now=now)
        lifetime = token.expires_at - now
        if lifetime <= 1.0:
            raise QlikEndpointError(
                "the tenant issued an access token that has already expired; check the clocks."
            )
        refresh_at = token.expires_at - self._margin(token, lifetime)
        self.store.put(key, f"{refresh_at}\n".encode() + token.to_json(), ttl=lifetime)
        return token

    # -- ending --------------------------------------------------------------------
    def invalidate(self, value: str, *, revoke: bool = True) -> bool:
        """Forget the user's token (and revoke it at the tenant); True when there was one."""
        key = self._key(value)
        raw = self.store.get(key)
        hit = self._cached(key)
        self.store.delete(key)
        if raw is not None:
            self._parsed.pop(raw, None)  # this process forgets the revoked token too
        if hit is None:
            return False
        if revoke:
            try:
                self.cloud.revoke(self.client, hit[0])
            except QlikEndpointError as exc:
                log.warning(
                    "revoking the Qlik Cloud access token failed (it expires on its own): %s", exc
                )
        return True


class UserProvisioner:
    """The ensure-user step: make the user (and its groups) exist before impersonating it.

    :param method: ``"jwt"`` (a backend ``/login/jwt-session`` with ``issuer``: creates the
        user with its groups and updates them; needs a JWT identity provider) or
        ``"users-api"`` (``GET``/``POST /api/v1/users`` with ``admin_client``'s
        client-credentials token: creates the user, cannot set groups).
    :param remember: seconds a success is remembered per user and group set.
    """

    def __init__(
        self,
        cloud: QlikCloud,
        *,
        method: Literal["jwt", "users-api"] = "jwt",
        issuer: CloudJwtIssuer | None = None,
        admin_client: OAuthClient | None = None,
        store: StateStore | None = None,
        remember: float = 3600.0,
    ) -> None:
        if method == "jwt" and issuer is None:
            raise ConfigurationError("ensure-user by JWT login needs issuer= a CloudJwtIssuer.")
        if method == "users-api" and admin_client is None:
            raise ConfigurationError(
                "ensure-user by the users API needs admin_client= an OAuthClient with a "
                "scope that may create users (e.g. 'admin_classic user_default')."
            )
        if method not in ("jwt", "users-api"):
            raise ConfigurationError("method must be 'jwt' or 'users-api'.")
        self.cloud = cloud
        self.method = method
        self.issuer = issuer
        self.admin_client = admin_client
        self.store: StateStore = store if store is not None else MemoryStore()
        self.remember = remember
        #: Calls that reached the tenant (for tests).
        self.calls = 0
        #: Admin tokens requested for the users API (for tests).
        self.admin_tokens = 0
        self._admin: AccessToken | None = None
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, tuple[str, ...]], str] = {}  # (sub, groups) -> store key

    def _key(self, user: CloudUser) -> str:
        groups = tuple(user.groups or ())
        memo = (user.sub, groups)
        key = self._keys.get(memo)
        if key is None:
            key = "qlikauth:qcu:" + _digest(
                self.cloud.tenant_url, self.method, user.sub, "\x1f".join(sorted(groups))
            )
            _bounded_put(self._keys, memo, key)
        return key

    def ensure(self, user: CloudUser) -> bool:
        """Make sure ``user`` exists (with its groups, by JWT); True when the tenant was called."""
        key = self._key(user)
        if self.store.get(key) is not None:
            return False
        # One ensure at a time in this process: 50 first page loads make one login, not 50.
        with self._lock:
            if self.store.get(key) is not None:
                return False
            return self._ensure(user, key)

    def _ensure(self, user: CloudUser, key: str) -> bool:
        self.calls += 1
        if self.method == "jwt":
            assert self.issuer is not None
            self.cloud.jwt_session(self.issuer.mint(user))
        else:
            try:
                self._ensure_by_api(user, self._admin_token())
            except QlikEndpointHTTPError as exc:
                if exc.status_code != 401:
                    raise
                # the admin token was revoked or expired early: one fresh token, one more try
                self._admin = None
                self._ensure_by_api(user, self._admin_token())
        self.store.put(key, b"1", self.remember)
        log.info("ensured the Qlik Cloud user exists (%s)", self.method)
        return True

    def _admin_token(self) -> AccessToken:
        """The admin client's client-credentials token, reused until shortly before it expires
        (a new user is one users-API call, not a token request and a call; /oauth/token is
        rate-limited). Called under ``self._lock``."""
        tok = self._admin
        now = time.time()
        if tok is None or tok.expires_at - now < 60.0:
            assert self.admin_client is not None
            tok = self._admin = self.cloud.token(self.admin_client, now=now)
            self.admin_tokens += 1
        return tok

    def _ensure_by_api(self, user: CloudUser, token: AccessToken) -> None:
        if self.cloud.find_user(user.sub, access_token=token) is None:
            self.cloud.create_user(user, access_token=token)

    def forget(self, user: CloudUser) -> None:
        """Run the step again next time (after the user's groups changed outside qlikauth)."""
        self.store.delete(self._key(user))


class CloudAccess:
    """Ensure the user, then hand out its cached impersonation token: what the portal's token
    endpoint calls.

    :param revoke_all_with: an admin OAuth client (``admin_classic`` scope, a TenantAdmin) to
        revoke **every** OAuth token of the user at sign-out through Qlik's OAuth tokens API
        (``/api/v1/oauth-tokens``), as Qlik recommends at portal sign-out: also tokens this
        portal never cached (another portal process's, a browser's own). Without it, sign-out
        revokes the token this cache holds.
    """

    def __init__(
        self,
        tokens: AccessTokenCache,
        provisioner: UserProvisioner | None = None,
        *,
        revoke_all_with: OAuthClient | None = None,
    ) -> None:
        self.tokens = tokens
        self.provisioner = provisioner
        self.revoke_all_with = revoke_all_with
        self._admin: AccessToken | None = None
        self._admin_lock = threading.Lock()

    def access_token(self, user: CloudUser) -> AccessToken:
        """The signed-in user's access token for qlik-embed (impersonated by subject)."""
        if self.tokens.lookup != "subject":
            raise ConfigurationError(
                "CloudAccess impersonates by subject; build the cache with lookup='subject'."
            )
        if self.provisioner is not None:
            self.provisioner.ensure(user)
        return self.tokens.get(user.sub)

    def logout(self, user: CloudUser) -> bool:
        """Revoke and forget the user's access token (and, with ``revoke_all_with``, every OAuth
        token of the user at the tenant); True when there was one.

        A failure of the tokens API is raised (:class:`~qlikauth.QlikEndpointError`) after the
        cached token is revoked and forgotten, so the caller can report it.
        """
        had = self.tokens.invalidate(user.sub)
        if self.revoke_all_with is None:
            return had
        return self._revoke_all(user) > 0 or had

    def _revoke_all(self, user: CloudUser) -> int:
        cloud = self.tokens.cloud
        for attempt in (1, 2):
            admin = self._admin_token(fresh=attempt == 2)
            try:
                found = cloud.find_user(user.sub, access_token=admin)
                if found is None or not isinstance(found.get("id"), str):
                    return 0
                revoked = 0
                for token in cloud.oauth_tokens(found["id"], access_token=admin):
                    if isinstance(token.get("id"), str):
                        revoked += cloud.revoke_oauth_token(token["id"], access_token=admin)
                if revoked:
                    log.info(
                        "revoked %d Qlik Cloud OAuth token(s) of the user at sign-out", revoked
                    )
                return revoked
            except QlikEndpointHTTPError as exc:
                if exc.status_code != 401 or attempt == 2:
                    raise
        return 0  # pragma: no cover - the loop returns or raises

    def _admin_token(self, *, fresh: bool = False) -> AccessToken:
        """The admin client's token, reused until a minute before it expires (/oauth/token is
        rate-limited); ``fresh`` after the tenant refused it."""
        with self._admin_lock:
            tok = self._admin
            now = time.time()
            if fresh or tok is None or tok.expires_at - now < 60.0:
                assert self.revoke_all_with is not None
                tok = self._admin = self.tokens.cloud.token(self.revoke_all_with, now=now)
            return tok
