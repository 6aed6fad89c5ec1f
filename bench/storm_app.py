"""The Flask example portal as gunicorn serves it for the sign-in storm, with bench users added.

``gunicorn storm_app:app`` (run from ``bench/``). Settings come from the environment as
for the example (``QLIKAUTH_*``, ``PORTAL_SECRET_KEY`` shared by the workers).
``BENCH_USERS=N`` adds users ``bench000`` ... with password ``demo``, each in its own
group so every sign-in carries a distinct identity. Their password hash is PBKDF2 with
few rounds so the storm measures the sign-in path (portal session, ticket, redirect), not
the example's deliberately slow password hashing; the example itself is not edited.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from werkzeug.security import generate_password_hash

ROOT = Path(__file__).resolve().parent.parent
# examples/ (the portal imports flask_portal.password_login) and the example's own directory
for _p in (
    str(ROOT),
    str(ROOT / "integrations"),
    str(ROOT / "examples"),
    str(ROOT / "examples" / "flask_portal"),
):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _procs import load_module  # noqa: E402 - bench/ is gunicorn's working directory

portal = load_module(ROOT / "examples" / "flask_portal" / "app.py", "flask_portal_app")

_hash = generate_password_hash(portal.DEMO_PASSWORD, method="pbkdf2:sha256:1000")
for _i in range(int(os.environ.get("BENCH_USERS", "0"))):
    _name = f"bench{_i:03d}"
    portal.DEMO_USERS[_name] = {"name": f"Bench User {_i}", "groups": [f"Group{_i:03d}"]}
    portal._HASHES[_name] = _hash

app = portal.create_app()
