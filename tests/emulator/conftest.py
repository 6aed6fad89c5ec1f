"""Fixtures for the emulator tests: one certificate directory per run, clients that verify it."""

from __future__ import annotations

import pytest
from emu_helpers import api_session, browser_session

from qlikauth.certgen import generate_certificates


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("emu-certs")
    generate_certificates(d, ["localhost", "127.0.0.1"])
    return d


@pytest.fixture
def api(certs):
    with api_session(certs) as s:
        yield s


@pytest.fixture
def browser(certs):
    with browser_session(certs) as s:
        yield s
