"""MemoryStore under threads (the rest of the stores: test_stores.py), the curated export surface,
and a core free of web frameworks."""

from __future__ import annotations

import subprocess
import sys

from _support import concurrent_takes

import qlikauth
from qlikauth.store import MemoryStore


def test_take_is_used_once_under_concurrency():
    s = MemoryStore()
    s.put("state", b"v", ttl=10)
    assert concurrent_takes(s, "state", 8) == 1


#: The public surface, exactly: adding or removing an export is a decision, made here too.
EXPORTS = {
    "__version__",
    "QlikUser",
    "Certificates",
    "QpsClient",
    "Ticket",
    "ProxySession",
    "Authenticator",
    "TicketAuthenticator",
    "SessionAuthenticator",
    "HeaderAuthenticator",
    "Redirect",
    "Cookie",
    "Headers",
    "QlikAuthError",
    "ConfigurationError",
    "IdentityError",
    "CertificateError",
    "RedirectError",
    "HeaderError",
    "QpsError",
    "QpsConnectionError",
    "QpsTLSError",
    "QpsTimeout",
    "QpsHTTPError",
    "QpsForbidden",
    "QpsNotFound",
    "QpsTooManySessions",
    "QpsResponseError",
    "StoreError",
    "StoreUnavailable",
    "StoreFull",
    "BridgeError",
    "ClaimsError",
    "ClaimsMapping",
    "JwtAuthenticator",
    "SigningKey",
    "JwtError",
    "QlikEndpointError",
    "QlikEndpointConnectionError",
    "QlikEndpointHTTPError",
}


def test_export_surface():
    assert len(qlikauth.__all__) == len(set(qlikauth.__all__)), "a name is listed twice in __all__"
    assert set(qlikauth.__all__) == EXPORTS
    for name in qlikauth.__all__:
        assert hasattr(qlikauth, name), name
    # Nothing else public at the top level but the subpackages (no helper leaks out).
    import types

    others = {
        n
        for n in dir(qlikauth)
        if not n.startswith("_") and n not in EXPORTS and n != "annotations"
    }
    assert all(isinstance(getattr(qlikauth, n), types.ModuleType) for n in others), others


def test_integration_export_surfaces():
    import flask_qlikauth

    assert sorted(flask_qlikauth.__all__) == [
        "QlikAuth",
        "QlikAuthState",
        "end_flask_login_if_ended",
        "flask_login_loader",
        "flow_view",
        "render",
        "set_cookie",
        "state",
        "web_request",
    ]
    for name in flask_qlikauth.__all__:
        assert hasattr(flask_qlikauth, name), name


def test_core_imports_without_django_or_flask():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('django', 'flask', 'werkzeug'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import qlikauth, qlikauth.qps, qlikauth.authenticators, qlikauth.cli, qlikauth.store, "
        "qlikauth.certgen\n"
        "import qlikauth.redirects, qlikauth.web, qlikauth.web.flows, qlikauth.web.errors\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
