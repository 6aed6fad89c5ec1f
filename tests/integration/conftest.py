"""Fixtures for the integration tests: ``tls_server``, a mutual-TLS HTTP server (see
tls_server.py)."""

from __future__ import annotations

import http.server
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tls_server import TlsServer


@pytest.fixture
def tls_server() -> Iterator[Callable[..., TlsServer]]:
    """``make(cert_dir, handler, cert=None, key=None)`` starts a :class:`TlsServer`; all stop at
    teardown."""
    started: list[TlsServer] = []

    def make(
        cert_dir: Path, handler: Callable[[http.server.BaseHTTPRequestHandler], None], **kw: Any
    ) -> TlsServer:
        server = TlsServer(Path(cert_dir), handler, **kw)
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()
