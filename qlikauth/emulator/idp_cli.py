"""``qlikauth oidc-idp`` and ``qlikauth saml-idp``: the local identity providers as commands.

Both are for development and demos (demo users alice, bob and carol, password ``demo``), never
for production. Each prints what the portal's settings need and serves until Ctrl-C.

* ``qlikauth oidc-idp --redirect-uri https://localhost:5443/oidc/callback``: the OpenID provider
  of :mod:`qlikauth.emulator.oidc_op`. The client secret is read from an environment variable
  (``QLIKAUTH_OIDC_CLIENT_SECRET`` by default), never from the command line.
* ``qlikauth saml-idp --sp-metadata sp.xml``: the SAML IdP of :mod:`qlikauth.emulator.saml_idp`,
  trusting the service providers whose metadata files are given; ``--key-dir`` keeps its signing
  key (and so its metadata) across restarts.

Both serve https with ``--tls-cert``/``--tls-key``, or with a certificate issued for the host
from a QMC-style CA directory (``--ca-dir``, e.g. the emulator's), else plain http on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError

__all__ = ["add_oidc_arguments", "add_saml_arguments", "run_oidc", "run_saml"]


def _add_serving(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument(
        "--host", default="localhost", help="host name in its URLs (default: %(default)s)"
    )
    p.add_argument(
        "--bind", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument("--port", type=int, default=port, help="port (default: %(default)s)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve https with this certificate")
    p.add_argument("--tls-key", metavar="PEM", help="... and this key")
    p.add_argument(
        "--ca-dir",
        metavar="DIR",
        help="serve https with a certificate for --host issued by this CA directory "
        "(root.pem + root_key.pem, e.g. the emulator's certificates)",
    )


def _tls(args: argparse.Namespace) -> tuple[str, str] | None:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigurationError("give both --tls-cert and --tls-key, or neither.")
    if args.tls_cert:
        return args.tls_cert, args.tls_key
    if args.ca_dir:
        from ..certgen import temporary_server_certificate

        return temporary_server_certificate(
            args.ca_dir, (args.host, args.bind), prefix="qlikauth-idp-tls-"
        )
    if args.bind not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigurationError(
            "plain http is for loopback only: give --tls-cert/--tls-key or "
            "--ca-dir to listen on another address."
        )
    return None


def _wait(stop: Any) -> int:
    done = threading.Event()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return 0


def add_oidc_arguments(p: argparse.ArgumentParser) -> None:
    """The ``oidc-idp`` options."""
    _add_serving(p, 9443)
    p.add_argument(
        "--client-id", default="portal", help="the portal's client id (default: %(default)s)"
    )
    p.add_argument(
        "--client-secret-env",
        metavar="VAR",
        default="QLIKAUTH_OIDC_CLIENT_SECRET",
        help="environment variable holding the client secret (default: %(default)s)",
    )
    p.add_argument(
        "--redirect-uri",
        action="append",
        required=True,
        metavar="URL",
        help="the portal's callback, e.g. https://localhost:5443/oidc/callback (repeat)",
    )
    p.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        default=[],
        metavar="URL",
        help="where RP-initiated logout may return, e.g. .../oidc/logged-out (repeat)",
    )
    p.add_argument(
        "--backchannel-logout-uri",
        metavar="URL",
        help="the portal's back-channel logout endpoint, e.g. .../oidc/backchannel-logout",
    )
    p.add_argument(
        "--ca-bundle",
        metavar="PEM",
        help="CA file that verifies the portal for back-channel logout",
    )


def run_oidc(args: argparse.Namespace) -> int:
    """Serve the local OpenID provider until Ctrl-C."""
    from .oidc_op import OidcProvider

    secret = os.environ.get(args.client_secret_env)
    if not secret:
        raise ConfigurationError(
            f"${args.client_secret_env} is not set: export the portal's client secret first, e.g. "
            f"export {args.client_secret_env}=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')."
        )
    client: dict[str, Any] = {
        "client_id": args.client_id,
        "client_secret": secret,
        "redirect_uris": args.redirect_uri,
        "post_logout_redirect_uris": args.post_logout_redirect_uri,
    }
    if args.backchannel_logout_uri:
        client["backchannel_logout_uri"] = args.backchannel_logout_uri
    tls = _tls(args)
    ca_bundle = args.ca_bundle or (str(Path(args.ca_dir) / "root.pem") if args.ca_dir else None)
    op = OidcProvider(
        host=args.host,
        bind=args.bind,
        port=args.port,
        tls=tls,
        clients=[client],
        ca_bundle=ca_bundle,
    ).start()
    settings: dict[str, Any] = {
        "ISSUER": op.issuer,
        "CLIENT_ID": args.client_id,
        "CLIENT_SECRET": f"<${args.client_secret_env}>",
        "REDIRECT_URI": args.redirect_uri[0],
    }
    if args.post_logout_redirect_uri:
        settings["POST_LOGOUT_REDIRECT_URI"] = args.post_logout_redirect_uri[0]
    if ca_bundle:
        settings["CA_BUNDLE"] = ca_bundle
    print(
        f"OpenID provider {op.issuer} (discovery {op.issuer}/.well-known/openid-configuration)",
        flush=True,
    )
    print("Demo users: alice, bob, carol (password demo). Not for production.", flush=True)
    print(f"QLIKAUTH OIDC settings: {json.dumps(settings)}", flush=True)
    return _wait(op.stop)


def add_saml_arguments(p: argparse.ArgumentParser) -> None:
    """The ``saml-idp`` options."""
    _add_serving(p, 9444)
    p.add_argument(
        "--sp-metadata",
        action="append",
        default=[],
        metavar="FILE",
        help="a service provider's metadata XML to trust (repeat); the portal serves "
        "it at /qlik/saml/metadata",
    )
    p.add_argument(
        "--key-dir",
        metavar="DIR",
        help="keep the IdP's signing key here (made when missing), so its metadata "
        "stays the same across restarts",
    )
    p.add_argument(
        "--metadata-out",
        metavar="FILE",
        help="write the IdP's metadata here (for the portal's IDP_METADATA)",
    )


def run_saml(args: argparse.Namespace) -> int:
    """Serve the local SAML IdP until Ctrl-C."""
    from .saml_idp import SamlIdp

    tls = _tls(args)
    idp = SamlIdp(host=args.host, bind=args.bind, port=args.port, tls=tls, key_dir=args.key_dir)
    for path in args.sp_metadata:
        try:
            idp.add_sp_metadata(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            idp.stop()
            raise ConfigurationError(
                f"cannot read --sp-metadata {path!r}: {exc.strerror}."
            ) from None
    if args.metadata_out:
        # written before the IdP answers anyone: whoever waits for it finds the file complete
        Path(args.metadata_out).write_text(idp.metadata(), encoding="utf-8")
    idp.start()
    print(
        f"SAML IdP {idp.base_url} (metadata {idp.base_url}/metadata, entity {idp.entity_id})",
        flush=True,
    )
    print("Demo users: alice, bob, carol (password demo). Not for production.", flush=True)
    if args.metadata_out:
        print(
            f"IdP metadata written to {args.metadata_out} (the portal's IDP_METADATA)", flush=True
        )
    return _wait(idp.stop)
