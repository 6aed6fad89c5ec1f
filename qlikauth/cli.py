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
            raise ConfigurationError(f"cannot read passphrase file {args.passphrase_file!r}: {exc.strerror}.") from None
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
    p.add_argument("--passphrase-env", metavar="VAR", default="QLIKAUTH_CERT_PASSPHRASE",
                   help="environment variable holding the key passphrase (default: %(default)s)")
    p.add_argument("--passphrase-file", metavar="FILE", help="file holding the key passphrase")


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--qps", action="append", metavar="URL",
                   help="QPS API base URL, e.g. https://qs1:4243 (repeat for several nodes; "
                        "default: $QLIKAUTH_QPS_NODES, comma-separated, as the integrations read it)")
    p.add_argument("--virtual-proxy", "-p", metavar="PREFIX", default=None,
                   help="virtual proxy prefix (default: $QLIKAUTH_VIRTUAL_PROXY or the default proxy)")
    p.add_argument("--certs", metavar="DIR|PFX", default=None,
                   help="directory with client.pem, client_key.pem, root.pem, or a PFX file "
                        "(default: $QLIKAUTH_CERTS)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default: %(default)s)")
    _add_passphrase(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_user(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--user", "-u", required=required, metavar="'DIR\\id'",
                   help="the Qlik user as DIRECTORY\\userid")
    p.add_argument("--attr", "-a", action="append", default=[], metavar="NAME=VALUE",
                   help="a session attribute (repeat; names may repeat, values may be empty)")


def _client(args: argparse.Namespace):  # noqa: ANN202
    from .qps import QpsClient

    nodes = args.qps or [n.strip() for n in os.environ.get("QLIKAUTH_QPS_NODES", "").split(",") if n.strip()]
    if not nodes:
        if os.environ.get("QLIKAUTH_QPS"):
            raise ConfigurationError("QLIKAUTH_QPS is not read: the variable is QLIKAUTH_QPS_NODES, as for the "
                                     "Flask and Django integrations; rename it.")
        raise ConfigurationError("no QPS node: pass --qps https://host:4243 or set QLIKAUTH_QPS_NODES.")
    certs = args.certs or os.environ.get("QLIKAUTH_CERTS")
    if not certs:
        raise ConfigurationError("no certificates: pass --certs DIR (the QMC export) or set QLIKAUTH_CERTS.")
    prefix = args.virtual_proxy if args.virtual_proxy is not None else os.environ.get("QLIKAUTH_VIRTUAL_PROXY", "")
    return QpsClient(nodes, certs, virtual_proxy=prefix, timeout=args.timeout, passphrase=_passphrase(args))


def _user(args: argparse.Namespace):  # noqa: ANN202
    from .identity import QlikUser

    attrs = []
    for item in args.attr:
        if "=" not in item:
            raise IdentityError(f"--attr {item!r} must be NAME=VALUE (use NAME= for an empty value).")
        name, _, value = item.partition("=")
        attrs.append((name, value))
    return QlikUser.parse(args.user, attrs)


def _session_json(s) -> dict[str, Any]:  # noqa: ANN001
    return {"session_id": s.session_id, "node": s.node, "user_directory": s.user.user_directory,
            "user_id": s.user.user_id, "attributes": s.user.qps_attributes()}


# -- commands -------------------------------------------------------------------------
def cmd_certs_generate(args: argparse.Namespace) -> int:
    from .certgen import generate_certificates

    hosts = args.host or ["localhost", "127.0.0.1"]
    pfx = os.environ.get(args.pfx_password_env) if args.pfx_password_env else None
    files = generate_certificates(args.dir, hosts, passphrase=_passphrase(args), overwrite=args.force,
                                  pfx_password=pfx)
    _out(args, {k: str(v) for k, v in files.items()},
         "wrote " + ", ".join(sorted(str(v) for v in files.values())))
    return 0


def cmd_certs_check(args: argparse.Namespace) -> int:
    from .certs import describe, load_certificates

    certs = load_certificates(args.path, _passphrase(args))
    data = {"ok": True, "certificates": [i.as_dict() for i in certs.info()], "warnings": list(certs.warnings)}
    _out(args, data, "\n".join(["certificates OK", *describe(certs)]))
    return 0


def cmd_ticket(args: argparse.Namespace) -> int:
    user = _user(args)
    with _client(args) as qps:
        t = qps.request_ticket(user, target_id=args.target_id)
    _out(args, {"ticket": t.ticket, "target_uri": t.target_uri, "node": t.node,
                "user_directory": user.user_directory, "user_id": user.user_id},
         t.ticket)
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
            _out(args, [_session_json(s) for s in sessions],
                 "\n".join(f"{s.session_id[:8]}… on {s.node}" for s in sessions)
                 or "no sessions")
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
def _add_arguments_from(module: str, parser: argparse.ArgumentParser) -> None:
    """``module.add_arguments(parser)`` (``module`` relative to qlikauth) when it imports: without
    its extra installed the command is still listed, and running it raises the ImportError."""
    import importlib

    try:
        mod = importlib.import_module(module, __package__)
    except ImportError:  # pragma: no cover - only without the module's extra
        return
    mod.add_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for ``qlikauth``."""
    parser = argparse.ArgumentParser(prog="qlikauth", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"qlikauth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    certs = sub.add_parser("certs", help="generate or check Qlik certificates")
    csub = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    gen = csub.add_parser("generate", help="write a root CA, server and client certificates as the QMC exports them")
    gen.add_argument("dir")
    gen.add_argument("--host", action="append", help="server certificate host name or IP (repeat)")
    gen.add_argument("--force", action="store_true", help="overwrite existing files")
    gen.add_argument("--pfx-password-env", metavar="VAR", help="also write client.pfx, protected by this variable's value")
    _add_passphrase(gen)
    gen.add_argument("--json", action="store_true")
    gen.set_defaults(func=cmd_certs_generate)
    chk = csub.add_parser("check", help="load and check client.pem/client_key.pem/root.pem (or a PFX)")
    chk.add_argument("path", help="certificate directory or PFX file")
    _add_passphrase(chk)
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(func=cmd_certs_check)

    ticket = sub.add_parser("ticket", help="request a ticket")
    _add_connection(ticket)
    _add_user(ticket)
    ticket.add_argument("--target-id", help="TargetId from the authentication-module redirect")
    ticket.set_defaults(func=cmd_ticket)

    session = sub.add_parser("session", help="add, get, delete, list proxy sessions or log a user out")
    ssub = session.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_ in (("add", "create a proxy session for a user"),
                        ("list", "list a user's sessions on every node"),
                        ("logout", "end a user's sessions on every node")):
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
    _add_arguments_from(".emulator.cli", emu)
    emu.set_defaults(func=cmd_emulator)

    cloud = sub.add_parser("cloud-emulator", help="run an emulated Qlik Cloud tenant (JWT login, OAuth) over TLS")
    _add_arguments_from(".emulator.cloud", cloud)
    cloud.set_defaults(func=cmd_cloud_emulator)

    oidc_idp = sub.add_parser("oidc-idp", help="run a local OpenID provider with demo users "
                                               "(development and demos only)")
    oidc_idp.set_defaults(func=cmd_oidc_idp)
    saml_idp = sub.add_parser("saml-idp", help="run a local SAML IdP with demo users "
                                               "(development and demos only; the saml extra)")
    saml_idp.set_defaults(func=cmd_saml_idp)
    try:
        from .emulator import idp_cli
    except ImportError:  # pragma: no cover - only without the emulator extra
        pass
    else:
        idp_cli.add_oidc_arguments(oidc_idp)
        idp_cli.add_saml_arguments(saml_idp)

    nginx = sub.add_parser("nginx-config", help="write a hardened nginx server block for a header virtual proxy")
    _add_arguments_from(".nginx.cli", nginx)
    nginx.set_defaults(func=cmd_nginx_config)

    demo = sub.add_parser("demo", help="start the emulator and a portal that signs demo users in")
    demo.add_argument("--port", type=int, default=8080, help="portal port (default: %(default)s)")
    demo.add_argument("--state-dir", default=".qlikauth/demo", help="where the demo keeps its certificates")
    demo.add_argument("--no-browser-hint", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qlikauth`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
