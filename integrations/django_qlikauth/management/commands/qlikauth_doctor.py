"""``manage.py qlikauth_doctor``: check the site end to end with ``settings.QLIKAUTH``.

The same checks as ``qlikauth doctor`` (:mod:`qlikauth.doctor`); exits 1 when one fails.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from qlikauth.exceptions import QlikAuthError
from qlikauth.identity import QlikUser


class Command(BaseCommand):
    help = "Check the Qlik site end to end with settings.QLIKAUTH; name the fix of each failure."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--portal-url", help="the portal's https base URL (module URL/qlik/module)"
        )
        parser.add_argument(
            "--session-checks",
            action="store_true",
            help="redeem a test ticket (signs the test user into Qlik) to check "
            "the session cookie and the engine websocket",
        )
        parser.add_argument("--test-user", help="the test ticket's user, DIRECTORY\\userid")
        parser.add_argument("--nginx-conf", help="header authentication: the nginx.conf to test")
        parser.add_argument("--hub-ca", help="CA bundle of the hub's certificate")
        parser.add_argument("--timeout", type=float, default=10.0)
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        from qlikauth.doctor import Doctor, echo_report

        from ...conf import config_from_settings

        try:
            user = QlikUser.parse(options["test_user"]) if options["test_user"] else None
            report = Doctor(
                config_from_settings(),
                portal_url=options["portal_url"],
                session_checks=options["session_checks"],
                test_user=user,
                nginx_conf=options["nginx_conf"],
                hub_ca=options["hub_ca"],
                timeout=options["timeout"],
            ).run()
        except QlikAuthError as exc:
            raise CommandError(str(exc)) from None
        if echo_report(report, options["json"], self.stdout.write):
            raise CommandError("a check failed: fix it as shown above.", returncode=1)
