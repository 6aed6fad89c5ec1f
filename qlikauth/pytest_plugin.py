"""pytest fixtures for integrators: a started Qlik emulator per test.

Enable with ``pytest_plugins = ["qlikauth.pytest_plugin"]`` in your ``conftest.py``::

    def test_portal_signs_in(qlik_emulator):
        qps_url = qlik_emulator.qps_url            # mutual TLS, certs in qlik_emulator.certs_dir
        hub = qlik_emulator.hub_url_for("portal")  # a "portal" ticket virtual proxy
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .certgen import generate_certificates
from .emulator import Emulator, VirtualProxy

__all__ = ["qlik_emulator", "qlik_emulator_certs"]


@pytest.fixture(scope="session")
def qlik_emulator_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certificate directory (root, server for localhost/127.0.0.1, client), made once per run."""
    d = tmp_path_factory.mktemp("qlik-certs")
    generate_certificates(d, ["localhost", "127.0.0.1"])
    return d


@pytest.fixture
def qlik_emulator(qlik_emulator_certs: Path) -> Iterator[Emulator]:
    """A started :class:`~qlikauth.emulator.Emulator` with a ``portal`` ticket virtual proxy.

    Fresh state for every test; stopped afterwards. Certificates are shared by the run
    (``qlik_emulator.certs_dir``).
    """
    with Emulator(certs_dir=qlik_emulator_certs,
                  virtual_proxies=[VirtualProxy("portal", method="ticket")]) as emu:
        yield emu
