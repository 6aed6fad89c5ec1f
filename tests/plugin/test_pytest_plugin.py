"""The pytest plugin as an integrator gets it: registered by the installed distribution,
configurable, torn down.

Each case runs a real ``python -m pytest`` in a temporary project, so the plugin is found the way
an integrator's project finds it (the ``pytest11`` entry point of the installed qlikauth).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run_pytest(
    project: Path, files: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (project / name).write_text(textwrap.dedent(text), encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--strict-markers",
            "-W",
            "error::pytest.PytestUnraisableExceptionWarning",
            *args,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def passed(result: subprocess.CompletedProcess[str], count: int) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"\b{count} passed\b", result.stdout), result.stdout


def test_registered_by_the_installed_distribution(tmp_path):
    # No conftest, no pytest_plugins: the pytest11 entry point makes the fixtures available.
    result = run_pytest(
        tmp_path,
        {
            "test_default.py": """
        from qlikauth import QlikUser

        def test_default_portal_ticket_proxy(qlik_emulator, qlik_qps):
            assert set(qlik_emulator.virtual_proxies) == {"", "portal"}
            assert qlik_emulator.virtual_proxies["portal"].method == "ticket"
            ticket = qlik_qps.request_ticket(QlikUser("ACME", "jdoe"))
            assert ticket.node == qlik_emulator.qps_url
            assert qlik_emulator.state.tickets_issued == 1
    """
        },
    )
    passed(result, 1)
    disabled = run_pytest(tmp_path, {}, "-p", "no:qlikauth.pytest_plugin")
    assert disabled.returncode != 0 and "fixture 'qlik_emulator' not found" in disabled.stdout


def test_virtual_proxies_chosen_by_fixture_and_marker_in_one_emulator(tmp_path):
    result = run_pytest(
        tmp_path,
        {
            "conftest.py": """
            import pytest
            from qlikauth.emulator import VirtualProxy

            @pytest.fixture
            def qlik_virtual_proxies():
                return [VirtualProxy("portal", method="session",
                                     session_cookie_name="X-Portal-Qlik",
                                     module_uri="https://portal.example.com/qlik/module"),
                        VirtualProxy("hdr", method="header-static", header_name="X-Portal-User",
                                     header_user_directory="PORTAL")]

            @pytest.fixture
            def qlik_emulator_options():
                return {"max_sessions_per_user": 2}
        """,
            "test_configured.py": """
            import requests
            import pytest
            from qlikauth import QlikUser
            from qlikauth.emulator import Emulator, VirtualProxy

            started = []
            _start = Emulator.start
            def counting_start(self, *a, **k):
                started.append(self)
                return _start(self, *a, **k)
            Emulator.start = counting_start

            def test_from_the_fixture(qlik_emulator, qlik_qps):
                vp = qlik_emulator.virtual_proxies["portal"]
                assert (vp.method, vp.session_cookie_name) == ("session", "X-Portal-Qlik")
                # The configured module URI is where Qlik sends a browser without a session.
                root = str(qlik_emulator.certs_dir / "root.pem")
                first = requests.get(qlik_emulator.hub_url_for("portal"), verify=root,
                                     allow_redirects=False)
                assert first.status_code == 302
                module = "https://portal.example.com/qlik/module?"
                assert first.headers["Location"].startswith(module)
                assert qlik_qps.add_session(QlikUser("ACME", "jdoe")).node == qlik_emulator.qps_url
                assert len(started) == 1

            @pytest.mark.qlik_virtual_proxies(
                VirtualProxy("other", method="ticket", session_cookie_name="X-Other"))
            def test_from_the_marker(qlik_emulator):
                assert set(qlik_emulator.virtual_proxies) == {"", "other"}
                assert qlik_emulator.virtual_proxies["other"].session_cookie_name == "X-Other"
                assert len(started) == 2      # one emulator per test, never a second one in a test
        """,
        },
    )
    passed(result, 2)


def test_each_test_gets_a_fresh_emulator_and_teardown_stops_it(tmp_path):
    result = run_pytest(
        tmp_path,
        {
            # listed too: no double registration
            "conftest.py": 'pytest_plugins = ["qlikauth.pytest_plugin"]\n',
            "test_teardown.py": """
            import socket
            from qlikauth import QlikUser
            seen = []

            def test_first(qlik_emulator, qlik_qps):
                qlik_qps.add_session(QlikUser("ACME", "jdoe"))
                seen.append(qlik_emulator)

            def test_second(qlik_emulator):
                old = seen[0]
                assert not old.running and old is not qlik_emulator
                assert qlik_emulator.state.sessions() == []
                try:
                    socket.create_connection(("127.0.0.1", old.qps_port), timeout=2).close()
                except OSError:
                    pass
                else:
                    raise AssertionError("the previous test's emulator still listens")
                assert old.certs_dir == qlik_emulator.certs_dir     # certificates shared by the run
        """,
        },
    )
    passed(result, 2)


def test_the_manual_example_runs(tmp_path):
    """docs/emulator.md's conftest.py and test_portal.py blocks, as written there."""
    from tests.docs.docblocks import blocks_of

    blocks = [b for b in blocks_of(ROOT / "docs" / "emulator.md") if b.lang == "python"]
    conftest = next(b.code for b in blocks if b.code.startswith("# conftest.py"))
    test = next(b.code for b in blocks if b.code.startswith("# test_portal.py"))
    result = run_pytest(tmp_path, {"conftest.py": conftest, "test_portal.py": test})
    passed(result, len(re.findall(r"^def test_", test, re.M)))
