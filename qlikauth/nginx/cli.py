"""``qlikauth nginx-config``: write the hardened nginx configuration for a header virtual proxy."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError
from . import (
    DEFAULT_IDENTITY_CACHE,
    DEFAULT_IDENTITY_CACHE_PARENT,
    DEFAULT_IDENTITY_PATH,
    generate_nginx_conf,
    generate_server_block,
)

__all__ = ["add_arguments", "run"]


def _abs(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``nginx-config`` options to ``parser``."""
    parser.add_argument(
        "--server-name",
        action="append",
        required=True,
        metavar="HOST",
        help="public host name browsers use (repeat for several)",
    )
    parser.add_argument(
        "--listen",
        default="0.0.0.0:443",
        metavar="HOST:PORT",
        help="address and port nginx listens on (default: %(default)s)",
    )
    parser.add_argument(
        "--tls-cert", required=True, metavar="FILE", help="certificate nginx presents to browsers"
    )
    parser.add_argument("--tls-key", required=True, metavar="FILE", help="its private key")
    parser.add_argument(
        "--portal",
        required=True,
        metavar="URL",
        help="where nginx reaches the portal, e.g. http://127.0.0.1:5000",
    )
    parser.add_argument(
        "--portal-ca", metavar="FILE", help="CA bundle verifying an https portal URL"
    )
    parser.add_argument(
        "--login-url",
        required=True,
        metavar="URL",
        help="where browsers that are not signed in go (?next=... is appended)",
    )
    parser.add_argument(
        "--next-param",
        default="next",
        help="login page's return-URL parameter (default: %(default)s)",
    )
    parser.add_argument(
        "--header-name",
        required=True,
        metavar="NAME",
        help="the virtual proxy's header authentication header name, e.g. X-Portal-User",
    )
    parser.add_argument(
        "--qps-node",
        action="append",
        required=True,
        metavar="URL",
        help="a QPS node's hub URL, https://qs1.example.com[:port] (repeat for several)",
    )
    parser.add_argument(
        "--root-pem",
        required=True,
        metavar="FILE",
        help="Qlik's root.pem: the nodes' certificates are verified against it",
    )
    parser.add_argument(
        "--prefix", "-p", required=True, metavar="PREFIX", help="the virtual proxy prefix"
    )
    parser.add_argument(
        "--session-cookie",
        metavar="NAME",
        help="the virtual proxy's session cookie (default: X-Qlik-Session-PREFIX)",
    )
    parser.add_argument(
        "--identity-path",
        default=DEFAULT_IDENTITY_PATH,
        help="the portal's identity endpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--identity-response-header",
        default="X-Qlik-Header-Value",
        metavar="NAME",
        help="response header carrying the identity (default: %(default)s)",
    )
    parser.add_argument(
        "--public-origin",
        metavar="URL",
        help="https://host[:port] browsers use (default: first server name and listen port)",
    )
    parser.add_argument(
        "--sticky",
        choices=("identity", "cookie", "ip"),
        default="identity",
        help="how a browser stays on one node (default: %(default)s; see docs/nginx.md)",
    )
    parser.add_argument(
        "--tls-name",
        metavar="HOST",
        help="a name every node's certificate carries (enables one upstream with failover)",
    )
    parser.add_argument(
        "--identity-cache",
        type=int,
        default=DEFAULT_IDENTITY_CACHE,
        metavar="SECONDS",
        help="reuse the portal's answer for the same Cookie header this long (default: "
        "%(default)s; 0 asks on every request; docs/nginx.md says what sign-out means)",
    )
    parser.add_argument(
        "--identity-cache-dir",
        metavar="DIR",
        help="directory for the identity cache's files (default: RUNTIME_DIR/identity_cache "
        f"with --full, else {DEFAULT_IDENTITY_CACHE_PARENT}/qlikauth-cache-PREFIX)",
    )
    parser.add_argument(
        "--full",
        metavar="RUNTIME_DIR",
        help="write a complete nginx.conf whose pid, logs and temp files live in RUNTIME_DIR",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(
            f"--listen {value!r} must be HOST:PORT, e.g. 0.0.0.0:443 or [::]:443."
        )
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104


def run(args: argparse.Namespace) -> int:
    """Generate the configuration; returns the exit status."""
    host, port = _listen(args.listen)
    block = generate_server_block(
        server_name=args.server_name,
        tls_cert=_abs(args.tls_cert),  # type: ignore[arg-type]
        tls_key=_abs(args.tls_key),  # type: ignore[arg-type]
        portal_url=args.portal,
        login_url=args.login_url,
        header_name=args.header_name,
        qps_nodes=args.qps_node,
        root_pem=_abs(args.root_pem),  # type: ignore[arg-type]
        prefix=args.prefix,
        listen_host=host,
        listen_port=port,
        session_cookie_name=args.session_cookie,
        identity_path=args.identity_path,
        public_origin=args.public_origin,
        sticky=args.sticky,
        tls_name=args.tls_name,
        next_param=args.next_param,
        portal_ca=_abs(args.portal_ca),
        identity_response_header=args.identity_response_header,
        identity_cache=args.identity_cache,
        identity_cache_dir=_abs(args.identity_cache_dir)
        or (
            os.path.join(os.path.abspath(args.full), "identity_cache")
            if args.full and args.identity_cache
            else None
        ),
    )
    full: Any = _abs(args.full)
    text = generate_nginx_conf(block, full) if args.full else block
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
