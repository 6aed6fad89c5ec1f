"""No secret of any flow reaches a log: every way in and out, every qlikauth logger at DEBUG.

The flow tests of each way in and out run again under ``tests/secret_sweep.py``, which collects
every secret they put on the wire and every log record (qlikauth's loggers and the emulators'
at DEBUG, the emulators, the Qlik Cloud tenant and the SAML IdP running in the same process):

* ticket, module, session and header sign-in, "sign out of Qlik only", the portal's sign-out,
  the previous-user rule (tests/flask, tests/core/test_header.py, tests/web/test_lifecycle.py);
* the QSEoW JWT virtual proxy (tests/emulator/test_jwt_virtual_proxy.py);
* SAML sign-in and single logout both ways (tests/saml/test_web_saml.py);
* OIDC sign-in, RP-initiated, back-channel and front-channel logout, the caps, against the
  node OpenID provider (tests/oidc/test_web_flows.py);
* Qlik Cloud: the access token for qlik-embed, the browser JWT, JWT login, revoke
  (tests/cloud/test_web_endpoints.py).

Then: the planted control secret is found (so the sweep can find one), the run collected every
kind of secret it should (so nothing was silently not looked at), and nothing else leaked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOWS = [
    "tests/flask/test_flask_qlikauth.py",
    "tests/core/test_header.py",
    "tests/web/test_lifecycle.py",
    "tests/emulator/test_jwt_virtual_proxy.py",
    "tests/saml/test_web_saml.py",
    "tests/oidc/test_web_flows.py",
    "tests/cloud/test_web_endpoints.py",
]
#: A portal in another process logs there, not here; that test covers the shared store.
DESELECT = ["tests/oidc/test_web_flows.py::test_logout_reaches_sessions_of_another_portal_process"]
#: Kinds the run must have collected at least once (else a flow or a collector is missing).
EXPECTED_KINDS = {
    "ticket",
    "session id",
    "authorization code",
    "state",
    "SAML message",
    "relay state",
    "JWT",
    "access token",
    "cookie",
    "credential",
    "client secret",
    "nonce",
    "Qlik Cloud session",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    peers = ROOT / "tests" / "peers" / "oidc-provider" / "node_modules"
    if not peers.exists():
        pytest.skip(
            "the OpenID provider peer is not installed (npm ci in tests/peers/oidc-provider)"
        )
    out = tmp_path_factory.mktemp("sweep") / "sweep.json"
    env = {
        **os.environ,
        "QLIKAUTH_SWEEP_REPORT": str(out),
        "PYTHONPATH": os.pathsep.join(
            [
                str(ROOT / "tests"),
                str(ROOT),
                str(ROOT / "integrations"),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "secret_sweep",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        *FLOWS,
        *(f"--deselect={d}" for d in DESELECT),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    data["output"] = proc.stdout + proc.stderr
    print("collected by kind:", data["kinds"], "records:", data["records"])
    return data


@pytest.mark.timeout(960)
def test_no_secret_of_any_flow_in_any_log(report):
    leaks = report["leaks"]
    control = [leak for leak in leaks if leak["logger"] == "qlikauth.sweep_control"]
    assert (
        control and control[0]["kind"] == "authorization code" and control[0]["planted"] == "True"
    ), "the sweep cannot find a secret"
    others = [leak for leak in leaks if leak["logger"] != "qlikauth.sweep_control"]
    assert others == [], others
    assert EXPECTED_KINDS <= set(report["kinds"]), report["kinds"]
    assert report["collected"] > 200 and report["records"] > 500, report["kinds"]
    loggers = set(report["loggers"])
    for name in ("qlikauth.emulator", "qlikauth.lifecycle", "qlikauth.qps"):
        assert any(n.startswith(name) for n in loggers), (name, sorted(loggers))


@pytest.mark.timeout(960)
def test_no_secret_in_the_run_output(report):
    # Printed output, warnings and pytest's own report of the inner run.
    text = report["output"]
    for marker in ("-----BEGIN", "PRIVATE KEY", "PHNhbWxw", "<samlp:", "eyJhbGciOi"):
        assert marker not in text, marker
