#!/usr/bin/env python
"""SAML benchmarks: what qlikauth's checks cost on top of pysaml2, and a sign-in storm.

``.venv/bin/python bench/bench_saml.py [--quick]`` alone, or the ``saml`` section of
``bench/run.py``.

* **ACS cost**: a pool of responses signed by the local IdP (pysaml2's Server, xmlsec1,
  RSA-SHA256, response and assertion signed), each answering its own AuthnRequest of one
  browser. qlikauth's ``SamlServiceProvider.acs`` (every guard and check, the one-time request
  and the replay cache included; the state a call uses up is put back before the next use of
  the same response) against pysaml2's own ``Saml2Client.parse_authn_request_response`` on the
  same bytes (outstanding request and ``conv_info`` passed), interleaved in rounds, one thread;
  the figure is the median of per-round time ratios (target: at most 1.3x).
* **Storm** (``storm`` in :mod:`bench_web` style): N users at once through the IdP's login,
  the ACS of the Flask portal on gunicorn, the ticket, the hub (see :func:`bench_saml_storm`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

SP_BASE = "https://portal.example.com/qlik/saml/"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench_acs(args: argparse.Namespace) -> dict[str, Any]:
    """ACS handling: qlikauth / pysaml2 on the same signed responses (see the module docstring)."""
    from run import Contender, interleave, summary
    from saml2 import BINDING_HTTP_POST

    from qlikauth.bridges.saml import SamlServiceProvider, SamlSettings, xmlsec_version
    from qlikauth.emulator.saml_idp import SamlIdp
    from qlikauth.store import MemoryStore

    pool_size = 6 if args.quick else 24
    with tempfile.TemporaryDirectory(prefix="qlikauth-bench-saml-") as tmp:
        idp = SamlIdp(key_dir=tmp)
        settings = SamlSettings.from_settings({"BASE_URL": SP_BASE, "IDP_METADATA": idp.metadata()})
        store = MemoryStore()
        sp = SamlServiceProvider(settings, store=store, replay_cache=MemoryStore(when_full="refuse"))
        idp.add_sp_metadata(sp.metadata())
        pool: list[tuple[dict[str, str], str, str, bytes]] = []  # form, token, request id, stored record
        token = None
        _log(f"  saml: signing {pool_size} responses")
        for _ in range(pool_size):
            start = sp.login("/reports", token)
            if start.cookie is not None:
                token = start.cookie.value
            info = idp.parse_authn_request(start.redirect.location)
            xml = idp.response_xml("alice", in_response_to=info.id, acs_url=info.acs_url,
                                   sp_entity_id=info.sp_entity_id, sign_response=True, sign_assertion=True)
            record = store.get(f"qlikauth:saml:req:{info.id}")
            assert record is not None and token is not None
            pool.append((idp.post_form(xml, info.relay_state), token, info.id, record))
        conv_info = {"remote_addr": None, "request_uri": settings.acs_url, "entity_id": settings.sp_entity_id,
                     "endpoints": {"assertion_consumer_service": [settings.acs_url]}}

        def make_qlikauth() -> Any:
            i = [0]

            def call() -> Any:
                form, tok, req_id, record = pool[i[0] % pool_size]
                i[0] += 1
                # put back what the previous use of this response consumed (microseconds: dict operations)
                store.put(f"qlikauth:saml:req:{req_id}", record, 600)
                store.delete(f"qlikauth:saml:used:{req_id}")
                sp.replay_cache = MemoryStore(when_full="refuse")  # a fresh replay cache: this id was used
                a = sp.acs(form, tok)
                assert a.name_id == "alice@example.com"
                return a
            return call

        def make_pysaml2() -> Any:
            i = [0]

            def call() -> Any:
                form, _tok, req_id, _record = pool[i[0] % pool_size]
                i[0] += 1
                resp = sp.client.parse_authn_request_response(form["SAMLResponse"], BINDING_HTTP_POST,
                                                              outstanding={req_id: "/reports"}, conv_info=conv_info)
                assert resp.name_id.text == "alice@example.com"
                return resp
            return call

        a = Contender("qlikauth SamlServiceProvider.acs", make_qlikauth)
        b = Contender("pysaml2 parse_authn_request_response", make_pysaml2)
        interleave([a, b], args.rounds, max(args.slice, 0.3 if args.quick else 1.0), 1, min_calls=2)
        # time ratio: qlikauth's time per response / pysaml2's (median over rounds)
        import statistics

        ratio = statistics.median(y / x for x, y in zip(a.rates, b.rates, strict=True))
        result = {"ratio_time_qlikauth_vs_pysaml2": round(ratio, 3),
                  "contenders": {c.name: summary(c) for c in (a, b)}, "responses": pool_size,
                  "response_bytes": len(pool[0][0]["SAMLResponse"]), "xmlsec1": xmlsec_version(),
                  "signed": "response and assertion, RSA-SHA256"}
        idp.stop()
    return result


def bench_saml(args: argparse.Namespace) -> dict[str, Any]:
    """The ``saml`` section: ACS cost, then the storm when the web glue is available."""
    out: dict[str, Any] = {"acs": bench_acs(args)}
    try:
        from bench_web import bench_saml_storm  # type: ignore[attr-defined]
    except ImportError:
        out["storm"] = {"status": "not run", "reason": "the SAML storm needs the web flows"}
    else:
        out["storm"] = bench_saml_storm(args)
    return out


def saml_rows(s: dict[str, Any]) -> list[str]:
    """Rows for bench/run.py's table."""
    rows = []
    acs = s.get("acs")
    if acs:
        q = acs["contenders"]["qlikauth SamlServiceProvider.acs"]
        p = acs["contenders"]["pysaml2 parse_authn_request_response"]
        rows.append(f"| SAML ACS (signed response + assertion, RSA-SHA256): qlikauth / pysaml2 parse_authn_request_response "
                    f"(time per response) | **{acs['ratio_time_qlikauth_vs_pysaml2']:.3f}x** | <= 1.3x | qlikauth "
                    f"{q['per_s_median']:.1f}/s (p50 {q['p50_ms']:.1f} ms), pysaml2 {p['per_s_median']:.1f}/s "
                    f"(p50 {p['p50_ms']:.1f} ms); {acs['responses']} responses of {acs['response_bytes']} b64 bytes; "
                    f"{acs['xmlsec1']} |")
    st = s.get("storm")
    if st and "users" in st:
        rows.append(f"| SAML sign-in storm: {st['users']} users at once, IdP -> ACS -> ticket -> hub, Flask on gunicorn | "
                    f"{st['sign_ins_per_s']:.0f} sign-ins/s, {st['completed']}/{st['users']} signed in | all signed in, "
                    f"0 mix-ups | p50 {st['p50_ms']:.0f} ms, p99 {st['p99_ms']:.0f} ms; mix-ups {st['mixups']}; "
                    f"groups ok {st['groups_ok']}" + (f"; errors {st['errors']}: {'; '.join(st['first_errors'])[:300]}"
                                                      if st.get("errors") else "") + " |")
    elif st:
        rows.append(f"| SAML sign-in storm | {st.get('status')} | - | {st.get('reason')} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    args.rounds, args.slice = (2, 0.15) if args.quick else (9, 0.6)
    args.storm_users = 20 if args.quick else 200
    result = bench_saml(args)
    print("\n".join(saml_rows(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
