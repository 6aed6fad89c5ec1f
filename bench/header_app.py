"""The header-authentication example portal as gunicorn serves it for the nginx benchmark.

``gunicorn header_app:app`` (run from ``bench/``). Settings come from the environment:
``QLIKAUTH_QPS_NODES``, ``QLIKAUTH_CERTS``, ``QLIKAUTH_HUB_URL``, ``PORTAL_SECRET_KEY`` (shared
by the workers, so a session cookie from one is valid on the other). The example is not edited.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "integrations"), str(ROOT / "examples" / "header_proxy")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _procs import load_module  # noqa: E402 - bench/ is gunicorn's working directory

portal = load_module(ROOT / "examples" / "header_proxy" / "header_portal.py", "header_portal_app")

app = portal.create_app(
    {
        k: os.environ[k]
        for k in (
            "QLIKAUTH_QPS_NODES",
            "QLIKAUTH_CERTS",
            "QLIKAUTH_HUB_URL",
            "QLIKAUTH_VIRTUAL_PROXY",
        )
        if k in os.environ
    }
)
