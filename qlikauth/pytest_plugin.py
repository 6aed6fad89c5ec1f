"""pytest fixtures for integrators: a started Qlik emulator per test, with the virtual proxies you
choose.

Installing qlikauth registers this plugin with pytest (entry point ``pytest11``), so the
fixtures are there in any project that has qlikauth installed; ``-p no:qlikauth.pytest_plugin``
turns it off. Listing it in ``pytest_plugins = ["qlikauth.pytest_plugin"]`` works too.

Fixtures:

* ``qlik_emulator``: a started :class:`~qlikauth.emulator.Emulator`, fresh for every test and
  stopped after it (its sessions, tickets and ports are gone; nothing survives into the next
  test). Its virtual proxies come from ``qlik_virtual_proxies``.
* ``qlik_virtual_proxies``: the virtual proxies it starts with; by default one ticket virtual
  proxy ``portal``. Override the fixture (in a ``conftest.py`` or a test module) to choose the
  method, the authentication module URI or the session cookie name, or set them for one test
  with ``@pytest.mark.qlik_virtual_proxies(VirtualProxy(...), ...)``.
* ``qlik_emulator_options``: further :class:`Emulator` keyword arguments (``ticket_ttl``,
  ``session_timeout``, ``max_sessions_per_user``, ...); ``{}`` by default.
* ``qlik_emulator_certs``: one certificate directory for ``localhost``/``127.0.0.1`` per run
  (in pytest's temporary directory, which pytest prunes itself).
* ``qlik_qps``: a :class:`~qlikauth.QpsClient` for the first virtual proxy, closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported lazily: registering the plugin must not cost every pytest run
    from .emulator import Emulator, VirtualProxy
    from .qps import QpsClient

__all__ = [
    "qlik_emulator",
    "qlik_emulator_certs",
    "qlik_emulator_options",
    "qlik_qps",
    "qlik_virtual_proxies",
]

_MARKER = "qlik_virtual_proxies"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so ``--strict-markers`` projects may use it."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*virtual_proxies): the VirtualProxy objects qlik_emulator starts with in this "
        "test",
    )


@pytest.fixture(scope="session")
def qlik_emulator_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certificate directory (root, server for localhost/127.0.0.1, client), made once per run."""
    from .certgen import generate_certificates

    d = tmp_path_factory.mktemp("qlik-certs")
    generate_certificates(d, ["localhost", "127.0.0.1"])
    return d


@pytest.fixture
def qlik_virtual_proxies() -> Sequence[VirtualProxy]:
    """The virtual proxies ``qlik_emulator`` starts with: override this fixture to choose others.

    The default is one ticket virtual proxy with prefix ``portal`` (cookie
    ``X-Qlik-Session-portal``, no authentication module).
    """
    from .emulator import VirtualProxy

    return [VirtualProxy("portal", method="ticket")]


@pytest.fixture
def qlik_emulator_options() -> dict[str, Any]:
    """Further keyword arguments for :class:`~qlikauth.emulator.Emulator`; override to set them."""
    return {}


@pytest.fixture
def qlik_emulator(
    request: pytest.FixtureRequest,
    qlik_emulator_certs: Path,
    qlik_virtual_proxies: Sequence[VirtualProxy],
    qlik_emulator_options: dict[str, Any],
) -> Iterator[Emulator]:
    """A started :class:`~qlikauth.emulator.Emulator`, stopped when the test ends.

    Virtual proxies: the test's ``qlik_virtual_proxies`` marker if it has one, else the
    ``qlik_virtual_proxies`` fixture. Certificates are shared by the run
    (``qlik_emulator.certs_dir``).
    """
    from .emulator import Emulator

    marker = request.node.get_closest_marker(_MARKER)
    proxies = list(marker.args) if marker is not None else list(qlik_virtual_proxies)
    with Emulator(
        certs_dir=qlik_emulator_certs, virtual_proxies=proxies, **qlik_emulator_options
    ) as emu:
        yield emu


@pytest.fixture
def qlik_qps(qlik_emulator: Emulator) -> Iterator[QpsClient]:
    """A :class:`~qlikauth.QpsClient` on ``qlik_emulator`` for its first non-default
    virtual proxy."""
    from .qps import QpsClient

    prefixes = [p for p in qlik_emulator.virtual_proxies if p]
    client = QpsClient(
        qlik_emulator.qps_url,
        qlik_emulator.certs_dir,
        virtual_proxy=prefixes[0] if prefixes else "",
    )
    try:
        yield client
    finally:
        client.close()
