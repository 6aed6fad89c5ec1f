"""Store keys from identifying parts: hashed, so a key never carries a user id, issuer or token in
clear."""

from __future__ import annotations

import hashlib

__all__ = ["digest"]


def digest(*parts: str) -> str:
    """A 40-hex-digit SHA-256 of ``parts`` (each ended by a NUL byte, so ("ab", "c") and ("a", "bc")
    differ)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:40]
