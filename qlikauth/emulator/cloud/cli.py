"""``qlikauth cloud-emulator``: parse the tenant's configuration and serve until a signal."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from ..._parse import FALSE_WORDS, TRUE_WORDS, parse_bool
from ...exceptions import ConfigurationError
from ...jwtkeys import PublicKey, public_key_from_pem
from .config import JwtIdentityProvider, OAuthClientConfig, WebIntegration
from .tenant import CloudTenant

# -- command line ------------------------------------------------------------------------


def _spec(text: str, what: str, keys: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(","):
        k, eq, v = item.partition("=")
        k = k.strip().lower()
        if not eq or k not in keys:
            raise ConfigurationError(
                f"{what} {text!r}: {item!r} is not key=value with a key among {', '.join(keys)}."
            )
        out[k] = v.strip()
    return out


def _key_file(path: str, what: str) -> PublicKey:
    try:
        return public_key_from_pem(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"{what}: cannot read {path!r}: {exc.strerror}.") from None


def parse_jwt_idp(text: str) -> JwtIdentityProvider:
    """``issuer=URL,kid=ID,key=PEMFILE`` (a public key or certificate) -> a
    :class:`JwtIdentityProvider`."""
    s = _spec(text, "--jwt-idp", ("issuer", "kid", "key"))
    if not all(s.get(k) for k in ("issuer", "kid", "key")):
        raise ConfigurationError("--jwt-idp needs issuer=, kid= and key=.")
    return JwtIdentityProvider(s["issuer"], {s["kid"]: _key_file(s["key"], "--jwt-idp")})


def parse_oauth_client(text: str) -> OAuthClientConfig:
    """``id=ID,secret=S,jwk=KID:PEMFILE,impersonation=true,scopes=a b,origins=URL|URL``."""
    s = _spec(text, "--oauth-client", ("id", "secret", "jwk", "impersonation", "scopes", "origins"))
    if not s.get("id"):
        raise ConfigurationError("--oauth-client needs id=.")
    jwks: dict[str, PublicKey] = {}
    if s.get("jwk"):
        kid, _, path = s["jwk"].partition(":")
        if not kid or not path:
            raise ConfigurationError("--oauth-client jwk= is KID:PEMFILE.")
        jwks[kid] = _key_file(path, "--oauth-client")
    if not s.get("secret") and not jwks:
        raise ConfigurationError("--oauth-client needs secret= or jwk=.")
    impersonation = parse_bool(s.get("impersonation", "true"))
    if impersonation is None:
        raise ConfigurationError(
            f"--oauth-client impersonation={s['impersonation']!r} is not a boolean; use one of "
            f"{', '.join(sorted(w for w in TRUE_WORDS | FALSE_WORDS if w))}."
        )
    return OAuthClientConfig(
        s["id"],
        s.get("secret") or None,
        jwks,
        impersonation=impersonation,
        scopes=tuple(
            s.get("scopes", "user_default admin_classic admin.users offline_access").split()
        ),
        allowed_origins=tuple(o for o in s.get("origins", "").split("|") if o),
    )


def parse_web_integration(text: str) -> WebIntegration:
    """``id=ID,origins=URL|URL[,name=NAME]`` -> :class:`WebIntegration`."""
    s = _spec(text, "--web-integration", ("id", "origins", "name"))
    if not s.get("id") or not s.get("origins"):
        raise ConfigurationError("--web-integration needs id= and origins=.")
    return WebIntegration(
        s["id"],
        tuple(unquote_plus(o) for o in s["origins"].split("|") if o),
        unquote_plus(s.get("name", "")),
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``qlikauth cloud-emulator``."""
    p.add_argument(
        "--certs", help="directory with root.pem/server.pem/server_key.pem (generated when missing)"
    )
    p.add_argument("--host", default="localhost")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8444)
    p.add_argument(
        "--jwt-idp",
        action="append",
        default=[],
        metavar="SPEC",
        help="issuer=URL,kid=ID,key=PUBLIC_KEY_OR_CERT_PEM (repeat)",
    )
    p.add_argument(
        "--oauth-client",
        action="append",
        default=[],
        metavar="SPEC",
        help="id=ID,secret=S | jwk=KID:PUBLIC_KEY_PEM[,impersonation=true][,scopes='a b']"
        "[,origins=URL|URL]",
    )
    p.add_argument(
        "--web-integration",
        action="append",
        default=[],
        metavar="SPEC",
        help="id=ID,origins=URL|URL",
    )
    p.add_argument("--token-lifetime", type=float, default=21600.0)
    p.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace, *, ready: Callable[[CloudTenant], None] | None = None) -> int:
    """Serve until SIGINT/SIGTERM."""
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO))
    tenant = CloudTenant(
        args.certs,
        host=args.host,
        bind=args.bind,
        port=args.port,
        jwt_idps=[parse_jwt_idp(s) for s in args.jwt_idp],
        oauth_clients=[parse_oauth_client(s) for s in args.oauth_client],
        web_integrations=[parse_web_integration(s) for s in args.web_integration],
        token_lifetime=args.token_lifetime,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tenant:
            print(f"Qlik Cloud tenant  {tenant.url}", flush=True)
            print(f"CA (verify=)       {tenant.root_pem}", flush=True)
            if ready is not None:
                ready(tenant)
            while not stop.wait(0.5):  # a timed wait: the signal handler runs promptly
                pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m qlikauth.emulator.cloud``."""
    p = argparse.ArgumentParser(
        prog="qlikauth cloud-emulator", description="Run an emulated Qlik Cloud tenant."
    )
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except ConfigurationError as exc:
        p.exit(2, f"qlikauth cloud-emulator: {exc}\n")
