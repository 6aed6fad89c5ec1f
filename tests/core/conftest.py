"""Fixtures for the core unit tests: certificates generated once per session."""

from __future__ import annotations

import pytest

from qlikauth import Certificates
from qlikauth.certgen import generate_certificates


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    generate_certificates(d, ["localhost", "127.0.0.1", "qs1.example.com", "qs2.example.com"])
    return d


@pytest.fixture(scope="session")
def certs(cert_dir):
    return Certificates.from_dir(cert_dir)
