#!/usr/bin/env python
"""OpenID Connect benchmarks: id_token validation speed and JWKS fetches per sign-in.

``.venv/bin/python bench/bench_oidc.py [--quick]`` alone, or the ``oidc`` section of
``bench/run.py``. A real OpenID provider (tests/peers/oidc-provider on node) issues the tokens.

* **Validation**: one real id_token from the provider, validated over and over with a warm JWKS
  cache by qlikauth (``OidcRelyingParty.validate_id_token``: every check, signature by
  python-jose with the cryptography backend) and by PyJWT given the provider's key already
  loaded (``jwt.decode`` with algorithms, audience, issuer, leeway, required claims, then the
  nonce compared), interleaved in rounds; the figure is the median of per-round ratios.
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


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _client() -> dict[str, Any]:
    return {"client_id": "bench", "client_secret": SECRET, "token_endpoint_auth_method": "client_secret_basic",
            "redirect_uris": [REDIRECT], "grant_types": ["authorization_code"], "response_types": ["code"]}


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
            rp = OidcRelyingParty(OidcSettings(issuer=op.issuer, client_id="bench", client_secret=SECRET,
                                               redirect_uri=REDIRECT, ca_bundle=op.ca_bundle,
                                               scopes=("openid", "email", "profile", "groups")), MemoryStore())
            browsers = {u: requests.Session() for u in ("alice", "bob")}

            def sign_in(user: str) -> Any:
                req = rp.begin(None)
                answer = op.sign_in(req.url, user, session=browsers[user])
                return rp.complete(req.cookie.value, answer["params"]), parse_qs(urlsplit(req.url).query)["nonce"][0]

            first, nonce = sign_in("alice")  # warm-up: discovery + JWKS fetched once here
            token = first.id_token
            warm_jwks, warm_requests = rp.jwks.fetches, rp.http.requests

            # -- 1. validation: qlikauth vs PyJWT with the key preloaded ------------------------
            published = requests.get(f"{op.issuer}/jwks", verify=op.ca_bundle, timeout=10).json()["keys"]
            kid = pyjwt.get_unverified_header(token)["kid"]
            preloaded = next(k for k in pyjwt.PyJWKSet.from_dict({"keys": published}).keys if k.key_id == kid).key

            def make_qlikauth() -> Any:
                return lambda: rp.validate_id_token(token, nonce=nonce)

            def make_pyjwt() -> Any:
                def call() -> Any:
                    claims = pyjwt.decode(token, preloaded, algorithms=["RS256"], audience="bench", issuer=op.issuer,
                                          leeway=60, options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]})
                    if not hmac.compare_digest(claims["nonce"], nonce):
                        raise AssertionError("nonce")
                    return claims
                return call

            a = Contender("qlikauth validate_id_token", make_qlikauth)
            b = Contender("PyJWT decode, key preloaded", make_pyjwt)
            interleave([a, b], args.rounds, args.slice, 1, min_calls=20)
            validation = {"ratio_qlikauth_vs_pyjwt": round(ratio(a, b), 3),
                          "contenders": {c.name: summary(c) for c in (a, b)},
                          "token_bytes": len(token), "alg": pyjwt.get_unverified_header(token)["alg"]}
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
                "jwks_fetches_during_sign_ins": rp.jwks.fetches - warm_jwks - jwks_during_validation,
                "jwks_fetches_during_validation": jwks_during_validation,
                "provider_calls_per_sign_in": round(provider_calls / sign_ins, 3),
                "sign_ins_per_s": round(sign_ins / wall, 1),
                "sign_in_p50_ms": round(statistics.median(lat) * 1000, 1),
                "subjects_ok": subjects_ok,
            }
            for s in browsers.values():
                s.close()
            rp.close()
    return result


def oidc_rows(o: dict[str, Any]) -> list[str]:
    """Rows for bench/run.py's table."""
    if "validation" not in o:
        return [f"| OIDC | {o.get('status')} | - | {o.get('reason')} |"]
    v = o["validation"]
    q, p = v["contenders"]["qlikauth validate_id_token"], v["contenders"]["PyJWT decode, key preloaded"]
    return [
        f"| OIDC id_token validation ({v['alg']}, warm JWKS): qlikauth / PyJWT with the key preloaded | "
        f"**{v['ratio_qlikauth_vs_pyjwt']:.2f}x** | >= 0.5x | qlikauth {q['per_s_median']:.0f} tokens/s "
        f"(p50 {q['p50_ms']:.3f} ms), PyJWT {p['per_s_median']:.0f}/s (p50 {p['p50_ms']:.3f} ms); "
        f"JWKS fetches meanwhile: {o['jwks_fetches_during_validation']} |",
        f"| OIDC sign-ins with a warm cache: JWKS fetches during {o['sign_ins']:,} sign-ins | "
        f"**{o['jwks_fetches_during_sign_ins']}** | 0 | provider calls per sign-in {o['provider_calls_per_sign_in']} "
        f"(the token request); {o['sign_ins_per_s']:.0f} sign-ins/s sequential, p50 {o['sign_in_p50_ms']:.1f} ms; "
        f"signed in as themselves {o['subjects_ok']}/{o['sign_ins']} |",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    args.rounds, args.slice = (2, 0.15) if args.quick else (9, 0.6)
    result = bench_oidc(args)
    print("\n".join(["| Benchmark | Ratio (median of rounds) | Target | Context |", "|---|---|---|---|",
                     *oidc_rows(result)]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
