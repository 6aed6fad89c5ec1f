"""The ``qlikauth`` command: certificates, tickets, proxy sessions, the emulators and the demo.

Errors are one line on stderr (no traceback) and a non-zero exit: 2 for bad input or
configuration, 1 for everything else. ``--json`` prints machine-readable output.
Passphrases are read from an environment variable or a file, never from the command
line (where ``ps`` would show them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .exceptions import ConfigurationError, IdentityError, QlikAuthError, RedirectError

__all__ = ["main", "build_parser"]


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def _passphrase(args: argparse.Namespace) -> str | None:
    """The key passphrase from --passphrase-file or the environment; errors never show it."""
    if getattr(args, "passphrase_file", None):
        try:
            data = Path(args.passphrase_file).read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read passphrase file {args.passphrase_file!r}: {exc.strerror}."
            ) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            # The exception's own text quotes the bytes (a piece of the passphrase): say where only.
            raise ConfigurationError(
                f"passphrase file {args.passphrase_file!r} is not UTF-8 text (invalid byte at "
                f"offset {exc.start}): save the passphrase in it as UTF-8, on one line."
            ) from None
        return text.removeprefix("\ufeff").rstrip("\r\n")
    env = getattr(args, "passphrase_env", None) or "QLIKAUTH_CERT_PASSPHRASE"
    value = os.environ.get(env) or None
    if value is not None and any("\udc80" <= ch <= "\udcff" for ch in value):
        # Python decodes undecodable environment bytes as lone surrogates (PEP 383).
        raise ConfigurationError(
            f"${env} is not UTF-8 text: set the passphrase as UTF-8 (or use --passphrase-file)."
        )
    return value


def _add_passphrase(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--passphrase-env",
        metavar="VAR",
        default="QLIKAUTH_CERT_PASSPHRASE",
        help="environment variable holding the key passphrase (default: %(default)s)",
    )
    p.add_argument("--passphrase-file", metavar="FILE", help="file holding the key passphrase")


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--qps",
        action="append",
        metavar="URL",
        help="QPS API base URL, e.g. https://qs1:4243 (repeat for several nodes; "
        "default: $QLIKAUTH_QPS_NODES, comma-separated, as the integrations read it)",
    )
    p.add_argument(
        "--virtual-proxy",
        "-p",
        metavar="PREFIX",
        default=None,
        help="virtual proxy prefix (default: $QLIKAUTH_VIRTUAL_PROXY or the default proxy)",
    )
    p.add_argument(
        "--certs",
        metavar="DIR|PFX",
        default=None,
        help="directory with client.pem, client_key.pem, root.pem, or a PFX file "
        "(default: $QLIKAUTH_CERTS)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default: %(default)s)")
    _add_passphrase(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_user(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--user",
        "-u",
        required=required,
        metavar="'DIR\\id'",
        help="the Qlik user as DIRECTORY\\userid",
    )
    p.add_argument(
        "--attr",
        "-a",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a session attribute (repeat; names may repeat, values may be empty)",
    )


def _client(args: argparse.Namespace):  # noqa: ANN202
    from .qps import QpsClient

    nodes = args.qps or [
        n.strip() for n in os.environ.get("QLIKAUTH_QPS_NODES", "").split(",") if n.strip()
    ]
    if not nodes:
        if os.environ.get("QLIKAUTH_QPS"):
            raise ConfigurationError(
                "QLIKAUTH_QPS is not read: the variable is QLIKAUTH_QPS_NODES, as for the "
                "Flask and Django integrations; rename it."
            )
        raise ConfigurationError(
            "no QPS node: pass --qps https://host:4243 or set QLIKAUTH_QPS_NODES."
        )
    certs = args.certs or os.environ.get("QLIKAUTH_CERTS")
    if not certs:
        raise ConfigurationError(
            "no certificates: pass --certs DIR (the QMC export) or set QLIKAUTH_CERTS."
        )
    prefix = (
        args.virtual_proxy
        if args.virtual_proxy is not None
        else os.environ.get("QLIKAUTH_VIRTUAL_PROXY", "")
    )
    return QpsClient(
        nodes, certs, virtual_proxy=prefix, timeout=args.timeout, passphrase=_passphrase(args)
    )


def _user(args: argparse.Namespace):  # noqa: ANN202
    from .identity import QlikUser

    attrs = []
    for item in args.attr:
        if "=" not in item:
            raise IdentityError(
                f"--attr {item!r} must be NAME=VALUE (use NAME= for an empty value)."
            )
        name, _, value = item.partition("=")
        attrs.append((name, value))
    return QlikUser.parse(args.user, attrs)


def _session_json(s) -> dict[str, Any]:  # noqa: ANN001
    return {
        "session_id": s.session_id,
        "node": s.node,
        "user_directory": s.user.user_directory,
        "user_id": s.user.user_id,
        "attributes": s.user.qps_attributes(),
    }


# -- commands -------------------------------------------------------------------------
def cmd_certs_generate(args: argparse.Namespace) -> int:
    from .certgen import generate_certificates

    hosts = args.host or ["localhost", "127.0.0.1"]
    pfx = os.environ.get(args.pfx_password_env) if args.pfx_password_env else None
    files = generate_certificates(
        args.dir, hosts, passphrase=_passphrase(args), overwrite=args.force, pfx_password=pfx
    )
    _out(
        args,
        {k: str(v) for k, v in files.items()},
        "wrote " + ", ".join(sorted(str(v) for v in files.values())),
    )
    return 0


def cmd_certs_check(args: argparse.Namespace) -> int:
    from .certs import describe, load_certificates

    certs = load_certificates(args.path, _passphrase(args))
    data = {
        "ok": True,
        "certificates": [i.as_dict() for i in certs.info()],
        "warnings": list(certs.warnings),
    }
    _out(args, data, "\n".join(["certificates OK", *describe(certs)]))
    return 0


def cmd_ticket(args: argparse.Namespace) -> int:
    user = _user(args)
    with _client(args) as qps:
        t = qps.request_ticket(user, target_id=args.target_id)
    _out(
        args,
        {
            "ticket": t.ticket,
            "target_uri": t.target_uri,
            "node": t.node,
            "user_directory": user.user_directory,
            "user_id": user.user_id,
        },
        t.ticket,
    )
    return 0


def cmd_session(args: argparse.Namespace) -> int:
    with _client(args) as qps:
        if args.action == "add":
            s = qps.add_session(_user(args))
            _out(args, _session_json(s), s.session_id)
        elif args.action == "get":
            s = qps.get_session(args.session_id)
            if s is None:
                _out(args, None, "no such session")
                return 1
            _out(args, _session_json(s), f"{s.user.qualified_name} on {s.node}")
        elif args.action == "delete":
            existed = qps.delete_session(args.session_id)
            _out(args, {"deleted": existed}, "deleted" if existed else "no such session")
            return 0 if existed else 1
        elif args.action in ("list", "logout"):
            user = _user(args)
            sessions = qps.user_sessions(user) if args.action == "list" else qps.logout_user(user)
            _out(
                args,
                [_session_json(s) for s in sessions],
                "\n".join(f"{s.session_id[:8]}… on {s.node}" for s in sessions) or "no sessions",
            )
    return 0


def _doctor_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The portal's settings from $QLIKAUTH_* (as the integrations read them), then the options."""
    from .web.config import settings_from_environ

    settings: dict[str, Any] = settings_from_environ()
    for key, value in (
        ("QPS_NODES", args.qps),
        ("CERTS", args.certs),
        ("HUB_URL", args.hub_url),
        ("VIRTUAL_PROXY", args.virtual_proxy),
        ("MODE", args.mode),
        ("COOKIE_NAME", args.cookie_name),
        ("HEADER_NAME", args.header_name),
    ):
        if value is not None:
            settings[key] = value
    passphrase = _passphrase(args)
    if passphrase is not None:
        settings["CERT_PASSPHRASE"] = passphrase
    return settings


def _cloud_target(args: argparse.Namespace):  # noqa: ANN202
    if not args.cloud_tenant:
        return None
    from .cloud import OAuthClient
    from .doctor import CloudTarget

    if not args.cloud_client_id:
        raise ConfigurationError(
            "--cloud-tenant needs --cloud-client-id (the portal's OAuth client)."
        )
    secret = os.environ.get(args.cloud_secret_env)
    if not secret:
        raise ConfigurationError(
            f"set ${args.cloud_secret_env} to the OAuth client's secret "
            "(never given on the command line, where ps shows it)."
        )
    jwt_issuer = None
    if args.cloud_jwt_issuer or args.cloud_jwt_key or args.cloud_jwt_kid:
        if not (args.cloud_jwt_issuer and args.cloud_jwt_key and args.cloud_jwt_kid):
            raise ConfigurationError(
                "--cloud-jwt-issuer, --cloud-jwt-key and --cloud-jwt-kid go together (the "
                "portal's JWT issuer, signing key and kid)."
            )
        from .cloud import CloudJwtIssuer
        from .jwtkeys import SigningKey

        key = SigningKey.from_file(args.cloud_jwt_key, args.cloud_jwt_alg, kid=args.cloud_jwt_kid)
        jwt_issuer = CloudJwtIssuer(key, args.cloud_jwt_issuer)
    return CloudTarget(
        args.cloud_tenant,
        OAuthClient(args.cloud_client_id, client_secret=secret),
        args.cloud_subject,
        verify=args.cloud_ca or True,
        web_integration_id=args.cloud_web_integration,
        jwt_issuer=jwt_issuer,
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import Doctor, echo_report
    from .web.config import QlikAuthConfig

    cloud = _cloud_target(args)
    settings = _doctor_settings(args)
    # A Qlik Cloud-only portal has no QPS settings: only the tenant is checked then.
    config = (
        None
        if cloud is not None and not settings.get("QPS_NODES")
        else QlikAuthConfig.from_mapping(settings)
    )
    test_user = None
    if args.test_user:
        from .identity import QlikUser

        test_user = QlikUser.parse(args.test_user)
    doctor = Doctor(
        config,
        portal_url=args.portal_url,
        session_checks=args.session_checks,
        test_user=test_user,
        nginx_conf=args.nginx_conf,
        hub_ca=args.hub_ca,
        timeout=args.timeout,
        max_clock_skew=args.max_clock_skew,
        cloud=cloud,
    )
    return echo_report(doctor.run(), args.json)


def add_doctor_arguments(p: argparse.ArgumentParser) -> None:
    """The ``doctor`` options (settings not given fall back to $QLIKAUTH_*)."""
    p.add_argument(
        "--qps",
        action="append",
        metavar="URL",
        help="a QPS API URL, https://qs1:4243 (repeat; default: $QLIKAUTH_QPS_NODES)",
    )
    p.add_argument("--certs", metavar="DIR|PFX", help="the QMC export (default: $QLIKAUTH_CERTS)")
    p.add_argument(
        "--hub-url", metavar="URL", help="the hub browsers land on (default: $QLIKAUTH_HUB_URL)"
    )
    p.add_argument(
        "--virtual-proxy",
        "-p",
        metavar="PREFIX",
        help="virtual proxy prefix (default: $QLIKAUTH_VIRTUAL_PROXY)",
    )
    p.add_argument(
        "--mode", choices=("ticket", "session"), help="default: $QLIKAUTH_MODE or ticket"
    )
    p.add_argument("--cookie-name", metavar="NAME", help="the virtual proxy's session cookie name")
    p.add_argument("--header-name", metavar="NAME", help="header authentication: the header's name")
    p.add_argument(
        "--portal-url",
        metavar="URL",
        help="the portal's https base URL: the module must be URL/qlik/module and "
        "websockets come from its origin",
    )
    p.add_argument(
        "--session-checks",
        action="store_true",
        help="redeem a test ticket at the hub (signs the test user into Qlik, which may "
        "allocate a license) to check the session cookie and the engine websocket",
    )
    p.add_argument(
        "--test-user",
        metavar="'DIR\\id'",
        help="the test ticket's user (default: USER_DIRECTORY\\qlikauth-doctor)",
    )
    p.add_argument("--nginx-conf", metavar="FILE", help="header authentication: nginx.conf to test")
    p.add_argument("--hub-ca", metavar="FILE", help="CA bundle of the hub's certificate")
    p.add_argument(
        "--cloud-tenant",
        metavar="URL",
        help="also check a Qlik Cloud tenant, https://<tenant>.<region>.qlikcloud.com",
    )
    p.add_argument("--cloud-client-id", metavar="ID", help="the portal's OAuth client id")
    p.add_argument(
        "--cloud-secret-env",
        metavar="VAR",
        default="QLIKAUTH_CLOUD_CLIENT_SECRET",
        help="environment variable holding its secret (default: %(default)s)",
    )
    p.add_argument(
        "--cloud-subject",
        metavar="SUB",
        help="subject of a user in the tenant, to test impersonation",
    )
    p.add_argument("--cloud-ca", metavar="FILE", help="CA bundle of the tenant (default: system)")
    p.add_argument(
        "--cloud-web-integration",
        metavar="ID",
        help="the portal's web integration id: --portal-url's origin must be on it",
    )
    p.add_argument(
        "--cloud-jwt-issuer", metavar="ISS", help="JWT sign-in: the issuer the portal signs with"
    )
    p.add_argument(
        "--cloud-jwt-key",
        metavar="FILE",
        help="JWT sign-in: the portal's PEM signing key (unencrypted)",
    )
    p.add_argument("--cloud-jwt-kid", metavar="KID", help="JWT sign-in: the key's kid")
    p.add_argument(
        "--cloud-jwt-alg",
        metavar="ALG",
        default="RS256",
        help="JWT sign-in: the key's algorithm (default: %(default)s)",
    )
    p.add_argument(
        "--max-clock-skew",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="largest clock difference to a node (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default: %(default)s)")
    _add_passphrase(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_mobile_config(args: argparse.Namespace) -> int:
    from .mobile import appconfig_xml, check_hubs, mdm_value, parse_hub

    hubs = check_hubs([parse_hub(h) for h in args.hub or []], resolve=args.resolve)
    if args.format == "xml" and not args.bundle_id:
        raise ConfigurationError(
            "--format xml needs --bundle-id: the Qlik Sense app's bundle "
            "identifier as your EMM console lists it."
        )
    text = appconfig_xml(hubs, args.bundle_id) if args.format == "xml" else mdm_value(hubs)
    if args.output:
        Path(args.output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        print(text.rstrip("\n"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator.cli import run

    return run(args)


def cmd_cloud_emulator(args: argparse.Namespace) -> int:
    from .emulator.cloud import run

    return run(args)


def cmd_oidc_idp(args: argparse.Namespace) -> int:
    from .emulator.idp_cli import run_oidc

    return run_oidc(args)


def cmd_saml_idp(args: argparse.Namespace) -> int:
    from .emulator.idp_cli import run_saml

    return run_saml(args)


def cmd_nginx_config(args: argparse.Namespace) -> int:
    from .nginx.cli import run

    return run(args)


# -- parser ---------------------------------------------------------------------------
def _add_arguments_from(
    module: str, parser: argparse.ArgumentParser, extra: str | None = None
) -> None:
    """``module.add_arguments(parser)`` (``module`` relative to qlikauth) when it imports.

    Without its extra installed the command is still listed; it takes any arguments and, run,
    names the extra to install (instead of argparse's "unrecognized arguments").
    """
    import importlib

    try:
        mod = importlib.import_module(module, __package__)
    except ImportError as exc:
        command = f"qlikauth {parser.prog.split()[-1]}"
        parser.set_defaults(
            _missing_extra=(
                f"`{command}` needs the {extra} extra: pip install 'qlikauth[{extra}]'."
                if extra
                else f"`{command}` cannot run: the module {exc.name} is not installed."
            )
        )
        return
    mod.add_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for ``qlikauth``."""
    parser = argparse.ArgumentParser(prog="qlikauth", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"qlikauth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    certs = sub.add_parser("certs", help="generate or check Qlik certificates")
    csub = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    gen = csub.add_parser(
        "generate", help="write a root CA, server and client certificates as the QMC exports them"
    )
    gen.add_argument("dir")
    gen.add_argument("--host", action="append", help="server certificate host name or IP (repeat)")
    gen.add_argument("--force", action="store_true", help="overwrite existing files")
    gen.add_argument(
        "--pfx-password-env",
        metavar="VAR",
        help="also write client.pfx, protected by this variable's value",
    )
    _add_passphrase(gen)
    gen.add_argument("--json", action="store_true")
    gen.set_defaults(func=cmd_certs_generate)
    chk = csub.add_parser(
        "check", help="load and check client.pem/client_key.pem/root.pem (or a PFX)"
    )
    chk.add_argument("path", help="certificate directory or PFX file")
    _add_passphrase(chk)
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(func=cmd_certs_check)

    ticket = sub.add_parser("ticket", help="request a ticket")
    _add_connection(ticket)
    _add_user(ticket)
    ticket.add_argument("--target-id", help="TargetId from the authentication-module redirect")
    ticket.set_defaults(func=cmd_ticket)

    session = sub.add_parser(
        "session", help="add, get, delete, list proxy sessions or log a user out"
    )
    ssub = session.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_ in (
        ("add", "create a proxy session for a user"),
        ("list", "list a user's sessions on every node"),
        ("logout", "end a user's sessions on every node"),
    ):
        sp = ssub.add_parser(name, help=help_)
        _add_connection(sp)
        _add_user(sp)
        sp.set_defaults(func=cmd_session)
    for name, help_ in (("get", "show a session"), ("delete", "end a session on every node")):
        sp = ssub.add_parser(name, help=help_)
        _add_connection(sp)
        sp.add_argument("session_id")
        sp.set_defaults(func=cmd_session)

    emu = sub.add_parser("emulator", help="run a local QPS node and hub over real TLS")
    _add_arguments_from(".emulator.cli", emu, "emulator")
    emu.set_defaults(func=cmd_emulator)

    cloud = sub.add_parser(
        "cloud-emulator", help="run an emulated Qlik Cloud tenant (JWT login, OAuth) over TLS"
    )
    _add_arguments_from(".emulator.cloud", cloud, "emulator")
    cloud.set_defaults(func=cmd_cloud_emulator)

    oidc_idp = sub.add_parser(
        "oidc-idp", help="run a local OpenID provider with demo users (development and demos only)"
    )
    oidc_idp.set_defaults(func=cmd_oidc_idp)
    saml_idp = sub.add_parser(
        "saml-idp",
        help="run a local SAML IdP with demo users (development and demos only; the saml extra)",
    )
    saml_idp.set_defaults(func=cmd_saml_idp)
    try:
        from .emulator import idp_cli
    except ImportError:  # pragma: no cover - only without the emulator extra
        pass
    else:
        idp_cli.add_oidc_arguments(oidc_idp)
        idp_cli.add_saml_arguments(saml_idp)

    nginx = sub.add_parser(
        "nginx-config", help="write a hardened nginx server block for a header virtual proxy"
    )
    _add_arguments_from(".nginx.cli", nginx)
    nginx.set_defaults(func=cmd_nginx_config)

    doctor = sub.add_parser(
        "doctor",
        help="check the site end to end (certificates, nodes, "
        "tickets, hub, cookie, websocket) and name each fix",
    )
    add_doctor_arguments(doctor)
    doctor.set_defaults(func=cmd_doctor)

    mobile = sub.add_parser(
        "mobile-config",
        help="the Qlik Sense mobile app's hub list for an EMM (mdm value or AppConfig XML)",
    )
    mobile.add_argument(
        "--hub",
        action="append",
        metavar="NAME=URL",
        help="a hub the app lists: its name and https URL (repeat)",
    )
    mobile.add_argument(
        "--format",
        choices=("json", "xml"),
        default="json",
        help="json: the mdm key's value; xml: an AppConfig managedAppConfiguration "
        "(default: %(default)s)",
    )
    mobile.add_argument("--bundle-id", metavar="ID", help="the app's bundle id (for --format xml)")
    mobile.add_argument(
        "--resolve",
        action="store_true",
        help="also require every hub's host name to resolve from here",
    )
    mobile.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    mobile.set_defaults(func=cmd_mobile_config)

    demo = sub.add_parser("demo", help="start the emulator and a portal that signs demo users in")
    demo.add_argument("--port", type=int, default=8080, help="portal port (default: %(default)s)")
    demo.add_argument(
        "--state-dir", default=".qlikauth/demo", help="where the demo keeps its certificates"
    )
    demo.add_argument("--no-browser-hint", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qlikauth`` command."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    missing = getattr(args, "_missing_extra", None)
    if missing:
        # the command's own options are unknown without its extra: name the extra instead
        print(f"qlikauth: error: {missing}", file=sys.stderr)
        return 2
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ConfigurationError, IdentityError, RedirectError) as exc:
        print(f"qlikauth: error: {exc}", file=sys.stderr)
        return 2
    except QlikAuthError as exc:
        print(f"qlikauth: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"qlikauth: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
