"""Which QPS nodes a client talks to: their URLs and prefix checked, and which ones are healthy.

A node is a base URL (``https://host:4243``); the virtual proxy prefix is a separate
setting. A node that could not be connected to is tried last for ``unhealthy_for``
seconds, so creation calls do not wait for a dead node's timeout on every sign-in.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError, RedirectError
from ..redirects import origin_of

__all__ = ["normalise_node", "check_virtual_proxy_prefix", "NodeHealth"]

_PREFIX_RE = re.compile(r"[a-z0-9][a-z0-9._~-]*\Z")


def normalise_node(url: str) -> str:
    """``https://QS1.example.com:4243/`` -> ``https://qs1.example.com:4243``, or
    :class:`ConfigurationError`."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("a QPS node URL is empty: use https://host:4243.")
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "https":
        raise ConfigurationError(
            f"QPS node {url!r} must use https: the QPS API (port 4243) only speaks mutual TLS."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigurationError(
            f"QPS node {url!r} must be a base URL like https://host:4243 (no path: the "
            "virtual proxy prefix is a separate setting)."
        )
    try:
        origin = origin_of(url.strip())
    except RedirectError as exc:
        raise ConfigurationError(f"QPS node {url!r} is not usable: {exc}") from None
    return str(origin) if origin.port != 443 else f"https://{origin.host}:443"


def check_virtual_proxy_prefix(prefix: str | None) -> str:
    """The prefix without slashes (``""`` for the default virtual proxy), or
    :class:`ConfigurationError`."""
    prefix = (prefix or "").strip().strip("/")
    if prefix and not _PREFIX_RE.match(prefix):
        raise ConfigurationError(
            f"virtual proxy prefix {prefix!r} is not valid: Qlik prefixes are lowercase "
            "letters, digits, '.', '_', '~' or '-' (as in the QMC's 'Prefix' field)."
        )
    return prefix


class NodeHealth:
    """Orders nodes for creation calls: healthy ones first, in the configured order."""

    def __init__(
        self,
        nodes: Sequence[str],
        unhealthy_for: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nodes = tuple(nodes)
        self.unhealthy_for = unhealthy_for
        self._clock = clock
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def ordered(self) -> list[str]:
        """Healthy nodes, then the ones that failed to connect recently."""
        if not self._down_until:  # the usual case: every node healthy, no lock needed
            return list(self.nodes)
        now = self._clock()
        with self._lock:
            healthy = [n for n in self.nodes if self._down_until.get(n, 0) <= now]
            sick = [n for n in self.nodes if self._down_until.get(n, 0) > now]
        return healthy + sick

    def is_down(self, node: str) -> bool:
        """``node`` failed recently (could not be reached, or did not answer in time)."""
        until = self._down_until.get(node)
        return until is not None and until > self._clock()

    def mark(self, node: str, ok: bool) -> None:
        """Record that ``node`` answered (``ok``) or could not be reached."""
        if ok and node not in self._down_until:
            return
        with self._lock:
            if ok:
                self._down_until.pop(node, None)
            else:
                self._down_until[node] = self._clock() + self.unhealthy_for
