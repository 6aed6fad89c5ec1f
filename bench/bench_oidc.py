#!/usr/bin/env python
"""OpenID Connect benchmarks: id_token validation speed and JWKS fetches per sign-in.

``.venv/bin/python bench/bench_oidc.py [--quick]`` alone, or the ``oidc`` section of
``bench/run.py``. A real OpenID provider (tests/peers/oidc-provider on node) issues the tokens.

* **Validation**: one real id_token from the provider, validated over and over with a warm JWKS
  cache by qlikauth (``OidcRelyingParty.validate_id_token``: every check, signature by
  joserfc, through qlikauth.jose) and by PyJWT given the provider's key already
  loaded (``jwt.decode`` with algorithms, audience, issuer, leeway, required claims, then the
  nonce compared), interleaved in rounds; the figure is the median of per-round ratios.
* **Storm**: N users at once through a portal on gunicorn (bench/oidc_storm_app.py): portal
  ``/oidc/login`` -> the provider's login page -> callback -> ticket -> the emulator's hub, each
  checked to land as themselves at the hub and at the portal (0 mix-ups).
* **JWKS fetches during N sign-ins**: after one warm-up sign-in, N more real sign-ins
  (authorize -> login page or provider session -> callback -> token -> id_token checks) by a few
  browsers, counting the relying party's JWKS and discovery fetches (target: 0).
"""

from __future__ import annotations

import argparse
import hmac
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT), str(ROOT / "tests" / "peers")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

REDIRECT = "https://localhost:8443/oidc/callback"
SECRET = "bench-secret-" + "x" * 32
#: Seconds the storms' relying parties wait for each provider call (the setting's default is 5).
STORM_PROVIDER_TIMEOUT = 30


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _client() -> dict[str, Any]:
    return {
        "client_id": "bench",
        "client_secret": SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }


def bench_oidc(args: argparse.Namespace) -> dict[str, Any]:
    """The ``oidc`` section (see the module docstring)."""
    import jwt as pyjwt
    import requests
    from op_peer import OpenIDProvider, node_available
    from run import Contender, interleave, ratio, summary

    from qlikauth.bridges.oidc import OidcRelyingParty, OidcSettings
    from qlikauth.certgen import generate_certificates
    from qlikauth.store import MemoryStore

    why = node_available()
    if why:
        return {"status": "skipped", "reason": why}
    sign_ins = 50 if args.quick else 1000
    with tempfile.TemporaryDirectory(prefix="qlikauth-bench-oidc-") as tmp:
        generate_certificates(tmp, hosts=("localhost", "127.0.0.1"))
        with OpenIDProvider(tmp, clients=[_client()]) as op:
            rp = OidcRelyingParty(
                OidcSettings(
                    issuer=op.issuer,
                    client_id="bench",
                    client_secret=SECRET,
                    redirect_uri=REDIRECT,
                    ca_bundle=op.ca_bundle,
                    scopes=("openid", "email", "profile", "groups"),
                ),
                MemoryStore(),
            )
            browsers = {u: requests.Session() for u in ("alice", "bob")}

            def sign_in(user: str) -> Any:
                req = rp.begin(None)
                answer = op.sign_in(req.url, user, session=browsers[user])
                return rp.complete(req.cookie.value, answer["params"]), parse_qs(
                    urlsplit(req.url).query
                )["nonce"][0]

            first, nonce = sign_in("alice")  # warm-up: discovery + JWKS fetched once here
            token = first.id_token
            warm_jwks, warm_requests = rp.jwks.fetches, rp.http.requests

            # -- 1. validation: qlikauth vs PyJWT with the key preloaded ------------------------
            published = requests.get(f"{op.issuer}/jwks", verify=op.ca_bundle, timeout=10).json()[
                "keys"
            ]
            kid = pyjwt.get_unverified_header(token)["kid"]
            preloaded = next(
                k for k in pyjwt.PyJWKSet.from_dict({"keys": published}).keys if k.key_id == kid
            ).key

            def make_qlikauth() -> Any:
                return lambda: rp.validate_id_token(token, nonce=nonce)

            def make_pyjwt() -> Any:
                def call() -> Any:
                    claims = pyjwt.decode(
                        token,
                        preloaded,
                        algorithms=["RS256"],
                        audience="bench",
                        issuer=op.issuer,
                        leeway=60,
                        options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]},
                    )
                    if not hmac.compare_digest(claims["nonce"], nonce):
                        raise AssertionError("nonce")
                    return claims

                return call

            a = Contender("qlikauth validate_id_token", make_qlikauth)
            b = Contender("PyJWT decode, key preloaded", make_pyjwt)
            interleave([a, b], args.rounds, args.slice, 1, min_calls=20)
            validation = {
                "ratio_qlikauth_vs_pyjwt": round(ratio(a, b), 3),
                "contenders": {c.name: summary(c) for c in (a, b)},
                "token_bytes": len(token),
                "alg": pyjwt.get_unverified_header(token)["alg"],
            }
            jwks_during_validation = rp.jwks.fetches - warm_jwks

            # -- 2. JWKS fetches during many sign-ins with a warm cache ---------------------------
            t0 = time.perf_counter()
            lat: list[float] = []
            subjects_ok = 0
            for i in range(sign_ins):
                user = "alice" if i % 2 == 0 else "bob"
                s0 = time.perf_counter()
                login, _ = sign_in(user)
                lat.append(time.perf_counter() - s0)
                subjects_ok += login.claims["preferred_username"] == user
            wall = time.perf_counter() - t0
            provider_calls = rp.http.requests - warm_requests
            result = {
                "validation": validation,
                "sign_ins": sign_ins,
                "jwks_fetches_during_sign_ins": rp.jwks.fetches
                - warm_jwks
                - jwks_during_validation,
                "jwks_fetches_during_validation": jwks_during_validation,
                "provider_calls_per_sign_in": round(provider_calls / sign_ins, 3),
                "sign_ins_per_s": round(sign_ins / wall, 1),
                "sign_in_p50_ms": round(statistics.median(lat) * 1000, 1),
                "subjects_ok": subjects_ok,
            }
            for s in browsers.values():
                s.close()
            rp.close()
    if getattr(args, "storm_users", 0):
        result["storm"] = bench_oidc_storm(args)
    return result


def bench_oidc_storm(args: argparse.Namespace) -> dict[str, Any]:
    """N users at once: portal /oidc/login -> provider login -> callback -> ticket -> hub, each as
    themselves.

    The portal (bench/oidc_storm_app.py) runs on gunicorn with one worker and 16 threads: one
    process, so its MemoryStore holds every sign-in's state (several workers would share Redis).
    """
    import os
    import secrets

    import requests
    from _procs import (
        EmulatorProcess,
        Gunicorn,
        free_port,
        hub_with_ticket,
        storm,
        storm_figures,
    )
    from op_peer import OpenIDProvider, node_available

    why = node_available()
    if why:
        return {"status": "skipped", "reason": why}
    users = args.storm_users
    port = free_port()
    portal = f"http://127.0.0.1:{port}"
    accounts = {
        f"bench{i:03d}": {
            "password": f"pw-{i}",
            "claims": {
                "sub": f"sub-{i:03d}",
                "email": f"bench{i:03d}@example.com",
                "email_verified": True,
                "name": f"Bench {i}",
                "groups": [f"Group{i:03d}"],
            },
        }
        for i in range(users)
    }
    client = {
        "client_id": "storm",
        "client_secret": SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": [f"{portal}/oidc/callback"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    with (
        EmulatorProcess(proxies=[{"prefix": "portal", "method": "ticket"}]) as emu,
        OpenIDProvider(emu.certs_dir, clients=[client], accounts=accounts) as op,
    ):
        oidc = {
            "ISSUER": op.issuer,
            "CLIENT_ID": "storm",
            "CLIENT_SECRET": SECRET,
            "REDIRECT_URI": f"{portal}/oidc/callback",
            "CA_BUNDLE": op.ca_bundle,
            "SCOPES": "openid email profile groups",
            "COOKIE_NAME": "qlikauth-oidc",
            "COOKIE_SECURE": "false",
            # The provider here is one node process on the same 2 cores, answering 200 users'
            # five requests each: under other load its token endpoint queued a callback's token
            # request past the default 5 s (a 504, a lost sign-in that is the provider's).
            "TIMEOUT": STORM_PROVIDER_TIMEOUT,
        }
        env = {
            **os.environ,
            "QLIKAUTH_QPS_NODES": emu.qps_url,
            "QLIKAUTH_CERTS": str(emu.certs_dir),
            "QLIKAUTH_HUB_URL": emu.hub_urls["portal"],
            "QLIKAUTH_VIRTUAL_PROXY": "portal",
            "QLIKAUTH_OIDC": json.dumps(oidc),
            "PORTAL_SECRET_KEY": secrets.token_hex(32),
        }
        _log(f"oidc storm: gunicorn -w 1 --threads 16 on {portal}, {users} users")
        with Gunicorn(
            "oidc_storm_app:app", port, workers=1, threads=16, env=env, ready_path="/whoami"
        ):
            root = str(emu.certs_dir / "root.pem")
            results: list[dict[str, Any]] = [{} for _ in range(users)]

            def sign_in(i: int, barrier: Any) -> None:
                name = f"bench{i:03d}"
                res = results[i]
                res.update(user=name, ok=False)
                browser = requests.Session()
                browser.trust_env = False
                at_op = requests.Session()
                step = ["waiting"]
                barrier.wait()
                try:
                    t0 = time.perf_counter()
                    step[0] = "/oidc/login"
                    r = browser.get(f"{portal}/oidc/login", allow_redirects=False, timeout=60)
                    assert r.status_code == 302, f"login {r.status_code}"
                    step[0] = "provider"
                    answer = op.sign_in(r.headers["location"], name, session=at_op)
                    step[0] = "callback"
                    r = browser.get(answer["url"], allow_redirects=False, timeout=60)
                    assert r.status_code == 302, f"callback {r.status_code}: {r.text[:200]}"
                    r = hub_with_ticket(browser, r.headers["location"], root, 60, step)
                    res["seconds"] = time.perf_counter() - t0
                    who = r.json()
                    res["hub_user"] = f"{who.get('userDirectory')}\\{who.get('userId')}"
                    res["portal_user"] = browser.get(f"{portal}/whoami", timeout=60).json()["user"]
                    res["ok"] = True
                except Exception as exc:  # counted, reported
                    res["error"] = f"{step[0]}: {type(exc).__name__}: {exc}"[:300]
                finally:
                    browser.close()
                    at_op.close()

            wall = storm(users, sign_in, join_within=180)

        # The provider's own cost: the same users at once doing only what the provider does for a
        # sign-in (authorize, login page, login, resume, then the token request), driven by a
        # relying party in this process, no portal, no Qlik.
        from qlikauth.bridges.oidc import OidcRelyingParty, OidcSettings
        from qlikauth.store import MemoryStore

        rp = OidcRelyingParty(
            OidcSettings(
                issuer=op.issuer,
                client_id="storm",
                client_secret=SECRET,
                redirect_uri=f"{portal}/oidc/callback",
                ca_bundle=op.ca_bundle,
                timeout=STORM_PROVIDER_TIMEOUT,
                scopes=("openid", "email", "profile", "groups"),
            ),
            MemoryStore(),
        )
        rp.complete(*_begin_at(rp, op, "bench000"))  # warm-up: discovery and JWKS fetched once
        alone: list[dict[str, Any]] = [{} for _ in range(users)]

        def provider_only(i: int, barrier: Any) -> None:
            res = alone[i]
            res.update(ok=False)
            barrier.wait()
            try:
                t0 = time.perf_counter()
                login = rp.complete(*_begin_at(rp, op, f"bench{i:03d}"))
                res["seconds"] = time.perf_counter() - t0
                res["ok"] = login.claims["email"] == f"bench{i:03d}@example.com"
            except Exception as exc:  # counted, reported
                res["error"] = f"provider: {type(exc).__name__}: {exc}"[:300]

        provider_wall = storm(users, provider_only, join_within=180)
        rp.close()
    done = [r for r in results if r.get("ok")]
    expected = {r["user"]: f"OIDC\\{r['user']}@example.com" for r in results}
    mixups = sum(
        1
        for r in done
        if r["hub_user"].lower() != expected[r["user"]].lower()
        or (r["portal_user"] or "").lower() != expected[r["user"]].lower()
    )
    provider = storm_figures(users, alone, provider_wall)
    return {
        **storm_figures(users, results, wall),
        "mixups": mixups,
        "provider_alone": {
            k: provider[k]
            for k in ("completed", "sign_ins_per_s", "p50_ms", "p99_ms", "first_errors")
        },
        "server": "gunicorn -w 1 --threads 16 --keep-alive 0 (bench/oidc_storm_app.py); "
        "provider: oidc-provider on node",
    }


def _begin_at(rp: Any, op: Any, user: str) -> tuple[str, dict[str, str]]:
    """A sign-in begun by ``rp`` and completed at the provider by ``user`` in a fresh browser:
    the binding cookie's value and the callback's parameters, for ``rp.complete``."""
    import requests

    req = rp.begin(None)
    with requests.Session() as browser:
        return req.cookie.value, op.sign_in(req.url, user, session=browser)["params"]


def oidc_rows(o: dict[str, Any]) -> list[str]:
    """Rows for bench/run.py's table."""
    if "validation" not in o:
        return [f"| OIDC | {o.get('status')} | - | {o.get('reason')} |"]
    v = o["validation"]
    q, p = (
        v["contenders"]["qlikauth validate_id_token"],
        v["contenders"]["PyJWT decode, key preloaded"],
    )
    return [
        f"| OIDC id_token validation ({v['alg']}, warm JWKS): qlikauth / PyJWT with the key "
        "preloaded | "
        f"**{v['ratio_qlikauth_vs_pyjwt']:.2f}x** | >= 0.5x | qlikauth {q['per_s_median']:.0f} "
        "tokens/s "
        f"(p50 {q['p50_ms']:.3f} ms), PyJWT {p['per_s_median']:.0f}/s (p50 {p['p50_ms']:.3f} ms); "
        f"JWKS fetches meanwhile: {o['jwks_fetches_during_validation']} |",
        f"| OIDC sign-ins with a warm cache: JWKS fetches during {o['sign_ins']:,} sign-ins | "
        f"**{o['jwks_fetches_during_sign_ins']}** | 0 | provider calls per sign-in "
        f"{o['provider_calls_per_sign_in']} "
        f"(the token request); {o['sign_ins_per_s']:.0f} sign-ins/s sequential, p50 "
        f"{o['sign_in_p50_ms']:.1f} ms; "
        f"signed in as themselves {o['subjects_ok']}/{o['sign_ins']} |",
    ] + (
        []
        if "storm" not in o
        else [
            f"| OIDC sign-in storm: {o['storm']['users']} users at once (portal -> provider -> "
            "callback -> ticket -> hub) | "
            f"{o['storm']['sign_ins_per_s']:.0f} sign-ins/s, "
            f"{o['storm']['completed']}/{o['storm']['users']} signed in | "
            f"all signed in as themselves, 0 mix-ups | p50 {o['storm']['p50_ms']:.0f} ms, p99 "
            f"{o['storm']['p99_ms']:.0f} ms; "
            f"mix-ups {o['storm']['mixups']}"
            + (
                "; the provider alone (the same users at once, its five requests each, no "
                "portal): "
                f"{o['storm']['provider_alone']['sign_ins_per_s']:.0f} sign-ins/s, "
                f"{o['storm']['provider_alone']['completed']}/{o['storm']['users']}"
                if "provider_alone" in o["storm"]
                else ""
            )
            + (
                f"; errors {o['storm']['errors']}: {'; '.join(o['storm']['first_errors'])[:300]}"
                if o["storm"]["errors"]
                else ""
            )
            + " |"
        ]
    )


def main(argv: list[str] | None = None) -> int:
    from _procs import run_standalone

    return run_standalone(
        __doc__.splitlines()[0],
        bench_oidc,
        oidc_rows,
        argv,
        head=("| Benchmark | Ratio (median of rounds) | Target | Context |", "|---|---|---|---|"),
    )


if __name__ == "__main__":
    sys.exit(main())
