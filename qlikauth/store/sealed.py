"""Values sealed at rest: :class:`SealedStore` encrypts what it keeps in another store.

A bearer value (a Qlik Cloud access token, a proxy session id) kept in a shared store is a
credential for whoever can read the store: a Redis dump, a replica, a backup, ``MONITOR``.
:class:`SealedStore` wraps any :class:`~qlikauth.store.StateStore` and keeps only AES-256-GCM
ciphertexts in it, each bound to its own store key (the key is the associated data, so a
ciphertext copied under another key does not open) and tagged with the id of the key that
sealed it.

Keys come from settings as ``"<key id>:<32 random bytes, base64url>"`` entries
(:func:`new_store_key` makes one). Several keys rotate: the first seals, every one opens, so a
new key goes first and the old one stays until what it sealed has expired.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..exceptions import ConfigurationError
from .memory import MemoryStore

if TYPE_CHECKING:
    from . import StateStore
    from .locks import StoreLock

__all__ = [
    "SealedStore",
    "StoreKeys",
    "new_store_key",
    "sealed_for_bearer_values",
    "STORE_KEYS_ENV",
]

log = logging.getLogger("qlikauth.store")

#: The environment variable read when no keys are given in code.
STORE_KEYS_ENV = "QLIKAUTH_STORE_KEYS"

_KID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
_MAGIC = b"qs1"  # format version: a changed layout gets a new tag, old values still open
_NONCE = 12
_MAKE_ONE = (
    "make one with python -c 'from qlikauth.store import new_store_key; print(new_store_key())'."
)


def new_store_key(kid: str | None = None) -> str:
    """A fresh ``"<key id>:<base64url key>"`` entry for the ``STORE_KEYS`` setting."""
    kid = kid or "k" + secrets.token_hex(4)
    if not _KID.match(kid):
        raise ConfigurationError("a store key id is 1-32 letters, digits, '_' or '-'.")
    material = base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256))
    return f"{kid}:" + material.decode().rstrip("=")


class StoreKeys:
    """The parsed ``STORE_KEYS`` setting: key id -> AES-256-GCM key; the first one seals.

    Takes a string (entries separated by commas or blanks), a sequence of entries, or a
    mapping ``{key id: base64url key}``. Errors name the entry by its position or id, never
    the key material.
    """

    def __init__(self, setting: str | Iterable[str] | Mapping[str, str] | StoreKeys) -> None:
        if isinstance(setting, StoreKeys):
            self._keys: dict[str, AESGCM] = dict(setting._keys)
            self.sealing_kid: str = setting.sealing_kid
            return
        if isinstance(setting, Mapping):
            entries = [(str(k), v) for k, v in setting.items()]
        else:
            items = setting.replace(",", " ").split() if isinstance(setting, str) else list(setting)
            entries = []
            for n, item in enumerate(items, 1):
                if not isinstance(item, str) or ":" not in item:
                    raise ConfigurationError(
                        f"STORE_KEYS entry {n} is not '<key id>:<base64url key>'; {_MAKE_ONE}"
                    )
                kid, _, material = item.partition(":")
                entries.append((kid.strip(), material.strip()))
        if not entries:
            raise ConfigurationError(
                "STORE_KEYS is empty: give at least one '<key id>:<base64url key>' entry."
            )
        self._keys = {}
        for kid, material in entries:
            if not _KID.match(kid):
                raise ConfigurationError(
                    f"STORE_KEYS key id {kid[:16]!r} must be 1-32 letters, digits, '_' or '-'."
                )
            if kid in self._keys:
                raise ConfigurationError(f"STORE_KEYS names key id {kid!r} twice.")
            self._keys[kid] = AESGCM(self._decode(kid, material))
        self.sealing_kid = entries[0][0]

    @staticmethod
    def _decode(kid: str, material: Any) -> bytes:
        if isinstance(material, bytes):
            raw = material
        else:
            text = str(material)
            try:
                raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                raw = b""
        if len(raw) != 32:
            raise ConfigurationError(
                f"STORE_KEYS key {kid!r} is not 32 bytes in base64url; {_MAKE_ONE}"
            )
        return raw

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreKeys | None:
        """The keys in ``$QLIKAUTH_STORE_KEYS``, or None when it is unset or empty."""
        value = (os.environ if environ is None else environ).get(STORE_KEYS_ENV, "").strip()
        return cls(value) if value else None

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"StoreKeys(key_ids={self.key_ids!r})"  # never the key material

    @staticmethod
    def _aad(store_key: str, kid: bytes) -> bytes:
        where = store_key.encode("utf-8", "surrogatepass")
        return b"qlikauth sealed value\x00" + where + b"\x00" + kid

    def seal(self, store_key: str, value: bytes) -> bytes:
        kid = self.sealing_kid.encode()
        nonce = os.urandom(_NONCE)
        aad = self._aad(store_key, kid)
        sealed = self._keys[self.sealing_kid].encrypt(nonce, bytes(value), aad)
        return _MAGIC + b":" + kid + b":" + nonce + sealed

    def open(self, store_key: str, blob: bytes) -> bytes | None:
        """The plaintext, or None when these keys did not seal ``blob`` under ``store_key``."""
        magic, _, rest = blob.partition(b":")
        kid, _, body = rest.partition(b":")
        if magic != _MAGIC or len(body) < _NONCE + 16:
            return None
        aes = self._keys.get(kid.decode("ascii", "replace"))
        if aes is None:
            return None
        try:
            return aes.decrypt(body[:_NONCE], body[_NONCE:], self._aad(store_key, kid))
        except InvalidTag:
            return None


class SealedStore:
    """A :class:`~qlikauth.store.StateStore` that keeps only AES-256-GCM ciphertexts in ``inner``.

    :param inner: the shared store (Redis, a Django cache) that holds the ciphertexts.
    :param keys: a :class:`StoreKeys` or its setting (see there); the first key seals.

    A value that does not open (sealed by a key no longer configured, altered, or stored in
    clear before sealing was switched on) reads as absent: the caller fetches or refuses as
    it would for a missing value, and a warning says why (without the value).
    """

    def __init__(
        self, inner: StateStore, keys: StoreKeys | str | Iterable[str] | Mapping[str, str]
    ) -> None:
        if isinstance(inner, SealedStore):
            raise ConfigurationError("the store is sealed already; wrap the inner store once.")
        self.inner = inner
        self.keys = keys if isinstance(keys, StoreKeys) else StoreKeys(keys)
        self.description = f"sealed {getattr(inner, 'description', repr(inner))}"

    def __repr__(self) -> str:
        return f"SealedStore({self.inner!r}, {self.keys!r})"

    def _open(self, key: str, blob: bytes | None) -> bytes | None:
        if blob is None:
            return None
        value = self.keys.open(key, blob)
        if value is None:
            log.warning(
                "a value in the %s does not open with the configured STORE_KEYS (another "
                "key, altered, or stored in clear); treating it as absent",
                self.description,
            )
        return value

    def put(self, key: str, value: bytes, ttl: float) -> None:
        self.inner.put(key, self.keys.seal(key, value), ttl)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        return self.inner.add(key, self.keys.seal(key, value), ttl)

    def get(self, key: str) -> bytes | None:
        return self._open(key, self.inner.get(key))

    def take(self, key: str) -> bytes | None:
        return self._open(key, self.inner.take(key))

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def lock(self, name: str, ttl: float, wait: float = 0.0) -> StoreLock:
        # A lock holds a random owner token, not a secret: the inner store's own lock.
        return self.inner.lock(name, ttl, wait)


def sealed_for_bearer_values(
    store: StateStore, keys: StoreKeys | str | None, what: str
) -> StateStore:
    """``store`` as it may hold bearer values: a shared store is sealed, or refused without keys.

    An in-process :class:`MemoryStore` needs no key (nothing leaves the process). Any other
    store is shared by other processes and readable by whoever reads it (a Redis dump, a
    replica, a backup), so ``what`` is kept there encrypted with ``keys`` (or
    ``$QLIKAUTH_STORE_KEYS``); with neither, a :class:`ConfigurationError` says what to set.
    """
    if isinstance(store, (MemoryStore, SealedStore)):
        return store if keys is None or isinstance(store, SealedStore) else SealedStore(store, keys)
    found = keys if keys is not None else StoreKeys.from_env()
    if found is None:
        where = getattr(store, "description", type(store).__name__)
        raise ConfigurationError(
            f"{what} would be kept in clear in the {where}, which other processes share and "
            f"anyone who reads it could use: give keys= (the STORE_KEYS setting) or set "
            f"{STORE_KEYS_ENV} to one or more '<key id>:<base64url key>' entries; {_MAKE_ONE}"
        )
    return SealedStore(store, found)
