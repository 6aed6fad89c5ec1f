"""Helpers for the browser tests: starting a one-command example portal, and what a user does on its
login page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def sign_in(page: Any, url: str, user: str) -> None:
    """Open the portal's login page at ``url`` and sign in as ``user`` (every demo user's password
    is "demo")."""
    page.goto(url)
    page.fill("#username", user)
    page.fill("#password", "demo")
    page.click("#submit")
    page.wait_for_load_state("load")


def start_one_command_portal(
    server_process: Any, script: str, port: int, certs_dir: Path, tls: tuple[Path, Path]
) -> tuple[Any, str]:
    """An example that starts its own emulators (sso_portal, hybrid_portal) over https, on the
    tests' CA.

    The browser tests pin that CA's certificates, so the example is given them rather than
    making its own; returns the process and what it printed at start (the URLs it serves).
    """
    env = {
        "PORTAL_PORT": str(port),
        "EMULATOR_CERTS": str(certs_dir),
        "PORTAL_TLS_CERT": str(tls[0]),
        "PORTAL_TLS_KEY": str(tls[1]),
    }
    proc = server_process(
        [sys.executable, script],
        port,
        env,
        timeout=90,
        scheme="https",
        cafile=certs_dir / "root.pem",
    )
    return proc, Path(proc.log_path).read_text()
