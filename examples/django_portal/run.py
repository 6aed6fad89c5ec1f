"""Run the example Django portal with one command.

With no QLIKAUTH_* settings in the environment, starts the qlikauth emulator with a
session virtual proxy ``mashup`` and points the portal at it; then creates the
database, the demo users and groups, and serves on http://localhost:PORTAL_PORT/::

    .venv/bin/python examples/django_portal/run.py           # http://localhost:8000/
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "integrations"))

#: Demo users (password "demo") and their Django groups, sent to Qlik as `group` attributes.
DEMO_USERS = {"alice": ["Sales", "Finance"], "bob": ["Marketing"], "carol": ["Admins", "Sales"]}
DEMO_PASSWORD = "demo"


def start_emulator() -> None:
    """Start the emulator with a session virtual proxy 'mashup'; export its settings."""
    from qlikauth.emulator import Emulator, VirtualProxy

    emu = Emulator(host="localhost", bind="127.0.0.1",
                   virtual_proxies=[VirtualProxy(prefix="mashup", method="session")])
    emu.__enter__()
    os.environ.update({
        "QLIKAUTH_QPS_NODES": emu.qps_url,
        "QLIKAUTH_CERTS": str(emu.certs_dir),
        "QLIKAUTH_HUB_URL": emu.hub_url_for("mashup"),
        "QLIKAUTH_VIRTUAL_PROXY": "mashup",
    })
    print(f"Emulator: QPS {emu.qps_url}, hub {emu.hub_url_for('mashup')}", flush=True)


def setup_database() -> None:
    """Create the tables and the demo users/groups (idempotent)."""
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    for name, groups in DEMO_USERS.items():
        user, created = User.objects.get_or_create(username=name)
        if created or not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
            user.save()
        user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])


def main() -> None:
    """Start (emulator,) database and the server."""
    port = int(os.environ.get("PORTAL_PORT", "8000"))
    bind = os.environ.get("PORTAL_BIND", "127.0.0.1")
    if "QLIKAUTH_QPS_NODES" not in os.environ:
        start_emulator()
    os.environ.setdefault("PORTAL_DB", str(Path(tempfile.mkdtemp(prefix="django-portal-")) / "db.sqlite3"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django
    from django.core.management import call_command

    django.setup()
    setup_database()
    call_command("check", fail_level="ERROR")
    print(f"Django portal: http://localhost:{port}/  (demo users: {', '.join(DEMO_USERS)}; "
          f"password '{DEMO_PASSWORD}')", flush=True)
    call_command("runserver", f"{bind}:{port}", use_reloader=False, use_threading=True, skip_checks=True)


if __name__ == "__main__":
    main()
