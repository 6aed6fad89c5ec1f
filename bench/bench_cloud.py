#!/usr/bin/env python
"""JWT minting and Qlik Cloud access-token benchmarks (the ``jwt`` section of bench/run.py).

``.venv/bin/python bench/bench_cloud.py [--quick]`` alone, or ``bench/run.py --only jwt``.

* **Minting** (one thread, interleaved rounds, median of per-round ratios): a Qlik Cloud JWT
  with every claim (fresh ``jti``, times, groups) by ``CloudJwtIssuer.mint`` (a
  ``SigningKey`` parsed once), against PyJWT's ``jwt.encode`` with the same claims and the
  key object loaded once, and against the pattern people copy: a JOSE library's
  ``jwt.encode`` given the PEM text on every call (joserfc, which qlikauth verifies with:
  ``jwt.encode(header, claims, import_key(pem_text))``). RS256, and ES256.
* **Access tokens per page loads**: an emulated Qlik Cloud tenant in its own process; 50 users
  already exist; 1,000 page loads (20 per user, shuffled, 8 threads) each ask
  ``CloudAccess.access_token`` (ensure-user remembered, token cache) for the user's token. The
  figure is the token requests the tenant counted (target 50: one per user).
* **Token endpoint latency**: a Flask app (WSGI, in a loop) with the portal's own token endpoint
  (``flask_qlikauth.cloud.cloud_blueprint`` over ``qlikauth.web.cloud.access_token``: same-origin
  checks, ensure-user remembered, the cached token, ``Cache-Control: no-store`` and the other token
  headers), beside a plain JSON endpoint of the same app; time per call, interleaved rounds, median
  of per-round ratios (target <= 1.1x).
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT), str(ROOT / "integrations")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _procs import ChildProcess, serve_commands  # noqa: E402

ISSUER = "https://bench-portal.example.com"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tenant_main(conn: Any, idp_pem: str, kid: str) -> None:
    """Run an emulated tenant until told to stop; answer 'stats' with its counters."""
    import logging

    logging.disable(logging.CRITICAL)
    from qlikauth.emulator.cloud import CloudTenant, JwtIdentityProvider, OAuthClientConfig
    from qlikauth.jwtkeys import public_key_from_pem

    tenant = CloudTenant(
        jwt_idps=[JwtIdentityProvider(ISSUER, {kid: public_key_from_pem(idp_pem)})],
        oauth_clients=[OAuthClientConfig("bench", client_secret="bench-secret")],
        jwt_login_rate=None,
    )
    try:
        tenant.start()
    except BaseException as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    conn.send({"url": tenant.url, "ca": str(tenant.root_pem)})
    try:
        serve_commands(
            conn, lambda: {k: tenant.state.counter(k) for k in ("token_requests", "jwt_logins")}
        )
    finally:
        tenant.stop()


class _Person:
    def __init__(self, i: int) -> None:
        self.sub = self.email = f"user{i:03d}@bench.example.com"
        self.name = f"User {i}"
        self.email_verified = True
        self.groups = ("Sales", f"Team{i % 5}")


def _minting(args: argparse.Namespace, alg: str) -> dict[str, Any]:
    import jwt as pyjwt
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import import_key
    from run import Contender, interleave, ratio, summary

    from qlikauth.cloud import CloudJwtIssuer
    from qlikauth.jwtkeys import SigningKey

    key = SigningKey.generate(alg, kid="bench-key")
    pem_text = key.private_pem().decode()
    preloaded = key._key  # the cryptography key object, as PyJWT takes it
    issuer = CloudJwtIssuer(key, ISSUER)
    person = _Person(1)

    def claims() -> dict[str, Any]:
        return issuer.claims(person)

    a = Contender("qlikauth CloudJwtIssuer.mint", lambda: lambda: issuer.mint(person))
    b = Contender(
        "PyJWT encode, key loaded once",
        lambda: (
            lambda: pyjwt.encode(claims(), preloaded, algorithm=alg, headers={"kid": "bench-key"})
        ),
    )
    kty = "EC" if alg.startswith("ES") else "RSA"

    def jose_pem() -> str:
        return jose_jwt.encode(
            {"alg": alg, "kid": "bench-key"}, claims(), import_key(pem_text, kty)
        )

    c = Contender("joserfc encode, PEM text per call", lambda: jose_pem)
    interleave([a, b, c], args.rounds, args.slice, 1, min_calls=5)
    # every contender's token verifies the same way
    for tok in (
        issuer.mint(person),
        pyjwt.encode(claims(), preloaded, algorithm=alg, headers={"kid": "bench-key"}),
        jose_pem(),
    ):
        pyjwt.decode(tok, key.public_key, algorithms=[alg], audience="qlik.api/login/jwt-session")
    return {
        "alg": alg,
        "ratio_vs_pyjwt": round(ratio(a, b), 3),
        "ratio_vs_jose_pem": round(ratio(a, c), 3),
        "contenders": {x.name: summary(x) for x in (a, b, c)},
    }


def bench_cloud(args: argparse.Namespace) -> dict[str, Any]:
    """The ``jwt`` section (see the module docstring)."""
    from qlikauth.cloud import (
        AccessTokenCache,
        CloudAccess,
        CloudJwtIssuer,
        OAuthClient,
        QlikCloud,
        UserProvisioner,
    )
    from qlikauth.jwtkeys import SigningKey
    from qlikauth.store import MemoryStore

    result: dict[str, Any] = {"minting": [_minting(args, "RS256"), _minting(args, "ES256")]}

    users = 50
    loads = 200 if args.quick else 1000
    key = SigningKey.generate("RS256", kid="bench-idp")
    with ChildProcess("the tenant process", tenant_main, key.public_pem(), key.kid) as tenant:
        info = tenant.info
        cloud = QlikCloud(info["url"], verify=info["ca"], pool_maxsize=16)
        issuer = CloudJwtIssuer(key, ISSUER)
        store = MemoryStore()
        provisioner = UserProvisioner(cloud, issuer=issuer, store=store)
        people = [_Person(i) for i in range(users)]
        for (
            p
        ) in people:  # the users exist (their first sign-in made them); the token cache is empty
            provisioner.ensure(p)
        access = CloudAccess(
            AccessTokenCache(cloud, OAuthClient("bench", client_secret="bench-secret"), store),
            provisioner,
        )
        before = tenant.stats()
        order = [p for p in people for _ in range(loads // users)]
        random.Random(7).shuffle(order)
        lock = threading.Lock()
        tokens: dict[str, set[str]] = {}
        errors: list[str] = []

        def worker(chunk: list[_Person]) -> None:
            for p in chunk:
                try:
                    t = access.access_token(p).access_token
                except Exception as exc:  # noqa: BLE001 - reported in the result
                    errors.append(repr(exc))
                    continue
                with lock:
                    tokens.setdefault(p.sub, set()).add(t)

        threads = [threading.Thread(target=worker, args=(order[i::8],)) for i in range(8)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        after = tenant.stats()
        all_tokens = [t for s in tokens.values() for t in s]
        result["page_loads"] = {
            "users": users,
            "page_loads": len(order),
            "threads": 8,
            "token_requests": after["token_requests"] - before["token_requests"],
            "jwt_logins_during": after["jwt_logins"] - before["jwt_logins"],
            "one_token_per_user": all(len(s) == 1 for s in tokens.values())
            and len(tokens) == users,
            "distinct_tokens": len(set(all_tokens)) == len(all_tokens),
            "errors": errors[:3],
            "page_loads_per_s": round(len(order) / wall, 1),
        }
        result["endpoint"] = _endpoint_latency(args, access, people[0])
        cloud.close()
    return result


def _endpoint_latency(args: argparse.Namespace, access: Any, person: Any) -> dict[str, Any]:
    from flask import Flask, jsonify, session
    from flask_qlikauth import QlikAuth
    from flask_qlikauth.cloud import cloud_blueprint
    from run import Contender, interleave, ratio, summary

    from qlikauth.web.cloud import CloudPortal

    app = Flask("bench_cloud")
    app.secret_key = secrets.token_bytes(32)
    # A hybrid portal: the extension (its QPS side is never asked here), then the cloud blueprint.
    app.config.update(
        QLIKAUTH_QPS_NODES="https://localhost:4243",
        QLIKAUTH_CERTS=str(ROOT / "no-certs-needed"),
        QLIKAUTH_HUB_URL="https://localhost/hub/",
        QLIKAUTH_USER_DIRECTORY="BENCH",
    )
    QlikAuth(app, user_loader=lambda: None)

    @app.get("/plain.json")
    def plain() -> Any:
        if "user" not in session:
            return ("", 401)
        return jsonify({"user": session["user"], "ok": True})

    # The portal's own endpoint, as an app mounts it: flask_qlikauth's blueprint over
    # qlikauth.web.cloud.access_token (same-origin checks, ensure-user remembered, the token
    # cache, the token headers), the signed-in user's identity from the portal's session.
    portal = CloudPortal(
        access=access, identity=lambda request: person if session.get("user") else None
    )
    app.register_blueprint(cloud_blueprint(portal))

    @app.get("/login")
    def login() -> Any:
        session["user"] = person.sub
        return "ok"

    def make(path: str, method: str) -> Any:
        def factory() -> Any:
            client = app.test_client()
            client.get("/login")
            call = client.post if method == "POST" else client.get

            def once() -> None:
                r = call(
                    path, headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
                )
                if r.status_code != 200:
                    raise AssertionError(f"{path} answered {r.status_code}")

            if (
                method == "POST"
            ):  # the portal's endpoint answers the user's cached token, never cached itself
                r = call(
                    path, headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
                )
                assert r.get_data(as_text=True) == access.access_token(person).access_token
                assert r.headers["Cache-Control"] == "no-store" and r.mimetype == "text/plain"
            return once

        return factory

    a = Contender("token endpoint (warm cache)", make("/qlik/cloud/access-token", "POST"))
    b = Contender("plain JSON endpoint", make("/plain.json", "GET"))
    rounds = max(args.rounds, 9) if not args.quick else args.rounds
    interleave([a, b], rounds, min(args.slice, 0.3), 1, min_calls=20)
    # ratio() is rate(a)/rate(b); time per call is its inverse
    return {
        "time_ratio_token_vs_plain": round(1.0 / ratio(a, b), 3),
        "contenders": {c.name: summary(c) for c in (a, b)},
    }


def cloud_rows(j: dict[str, Any]) -> list[str]:
    """Rows for bench/run.py's table."""
    if "minting" not in j:
        return [f"| JWT | {j.get('status')} | - | {j.get('reason')} |"]
    rows = []
    for m in j["minting"]:
        q = m["contenders"]["qlikauth CloudJwtIssuer.mint"]
        p = m["contenders"]["PyJWT encode, key loaded once"]
        o = m["contenders"]["joserfc encode, PEM text per call"]
        rows.append(
            f"| JWT minting {m['alg']} (Qlik Cloud claims): qlikauth / PyJWT with the key loaded "
            "once | "
            f"**{m['ratio_vs_pyjwt']:.2f}x** | >= 0.8x | qlikauth {q['per_s_median']:.0f} tokens/s "
            "(p50 "
            f"{q['p50_ms']:.3f} ms), PyJWT {p['per_s_median']:.0f}/s (p50 {p['p50_ms']:.3f} ms) |"
        )
        rows.append(
            f"| JWT minting {m['alg']}: qlikauth / joserfc `jwt.encode` with the PEM text every "
            "call | "
            f"**{m['ratio_vs_jose_pem']:.2f}x** | >= 3x | joserfc + PEM {o['per_s_median']:.0f}/s "
            f"(p50 {o['p50_ms']:.3f} ms) |"
        )
    pl = j["page_loads"]
    rows.append(
        f"| Qlik Cloud access tokens: token requests to the tenant per {pl['page_loads']:,} page "
        "loads of "
        f"{pl['users']} users (cache empty, users existing) | **{pl['token_requests']}** | "
        f"{pl['users']} (one "
        f"per user) | {pl['threads']} threads, {pl['page_loads_per_s']:.0f} page loads/s; one "
        "token per user "
        f"{pl['one_token_per_user']}; JWT logins meanwhile {pl['jwt_logins_during']} |"
    )
    e = j["endpoint"]
    t, p = e["contenders"]["token endpoint (warm cache)"], e["contenders"]["plain JSON endpoint"]
    rows.append(
        "| Token endpoint for qlik-embed (warm cache) / plain JSON endpoint of the same Flask app "
        "(time "
        f"per call) | **{e['time_ratio_token_vs_plain']:.3f}x** | <= 1.1x | token "
        f"{t['per_s_median']:.0f}/s "
        f"(p50 {t['p50_ms']:.3f} ms), plain {p['per_s_median']:.0f}/s (p50 {p['p50_ms']:.3f} ms) |"
    )
    return rows


def main() -> int:
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    args.rounds, args.slice = (2, 0.15) if args.quick else (9, 0.6)
    res = bench_cloud(args)
    print("\n".join(cloud_rows(res)))
    print(json.dumps(res, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
