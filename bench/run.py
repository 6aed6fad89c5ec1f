#!/usr/bin/env python
"""Every qlikauth benchmark in one command: ``.venv/bin/python bench/run.py [--quick] [--json
FILE]``.

The machine is shared and noisy, so every headline figure is a *ratio measured side by side*:
contenders run interleaved in rounds (A, B, C, A, B, C, ...) for the same time slice each, and
the figure is the median of the per-round ratios. Absolute numbers are printed for context.
The emulator always runs in its own process (never a thread here: the GIL would make server
and client compete). Everything binds 127.0.0.1; every process started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT), str(ROOT / "integrations")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from _procs import CannedProcess, EmulatorProcess, memory_worker, rss_kib  # noqa: E402

FIXED_XRF = (
    "abcdefghijklmnop"  # what the community scripts send; the SDK makes a fresh one per call
)


# -- measuring helpers -------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


class Contender:
    """One way of doing the thing: ``call()`` once; ``setup``/``teardown`` around all rounds."""

    def __init__(
        self,
        name: str,
        make: Callable[[], Callable[[], Any]],
        close: Callable[[], None] | None = None,
    ):
        self.name = name
        self.make = make
        self.close = close or (lambda: None)
        self.rates: list[float] = []
        self.latencies: list[float] = []
        self.calls = 0


def run_slice(
    call_factories: list[Callable[[], Any]], seconds: float, min_calls: int
) -> tuple[int, float, list[float]]:
    """Run one call function per thread for ``seconds`` (at least ``min_calls`` per thread)."""
    lats: list[list[float]] = [[] for _ in call_factories]
    counts = [0] * len(call_factories)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(call_factories) + 1)
    deadline = [0.0]

    def worker(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        pc = time.perf_counter
        my = lats[i]
        n = 0
        try:
            while True:
                t0 = pc()
                call()
                t1 = pc()
                my.append(t1 - t0)
                n += 1
                if t1 >= deadline[0] and n >= min_calls:
                    break
        except BaseException as exc:  # surfaced after the slice
            errors.append(exc)
        counts[i] = n

    if len(call_factories) == 1:
        deadline[0] = time.perf_counter() + seconds
        barrier = threading.Barrier(1)
        t0 = time.perf_counter()
        worker(0, call_factories[0])
        wall = time.perf_counter() - t0
    else:
        ts = [
            threading.Thread(target=worker, args=(i, c), daemon=True)
            for i, c in enumerate(call_factories)
        ]
        for t in ts:
            t.start()
        deadline[0] = time.perf_counter() + seconds
        t0 = time.perf_counter()
        barrier.wait()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts), wall, [x for lst in lats for x in lst]


def interleave(
    contenders: list[Contender], rounds: int, seconds: float, threads: int, min_calls: int = 3
) -> None:
    """Rounds of A, B, C, ... each for ``seconds``; rates and latencies go on the contenders."""
    calls = {c.name: [c.make() for _ in range(threads)] for c in contenders}
    for c in contenders:  # warm-up: connections open, imports done
        for f in calls[c.name]:
            f()
    for r in range(rounds):
        order = contenders if r % 2 == 0 else list(reversed(contenders))
        for c in order:
            n, wall, lats = run_slice(calls[c.name], seconds, min_calls)
            c.rates.append(n / wall)
            c.latencies.extend(lats)
            c.calls += n


def ratio(a: Contender, b: Contender) -> float:
    """Median over rounds of a's rate / b's rate (rounds are aligned)."""
    return statistics.median(x / y for x, y in zip(a.rates, b.rates, strict=True))


def summary(c: Contender) -> dict[str, Any]:
    return {
        "per_s_median": round(statistics.median(c.rates), 1),
        "p50_ms": round(pct(c.latencies, 50) * 1000, 3),
        "p99_ms": round(pct(c.latencies, 99) * 1000, 3),
        "calls": c.calls,
        "per_s_rounds": [round(x, 1) for x in c.rates],
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- 1. ticket requests --------------------------------------------------------------------
def bench_tickets(args: argparse.Namespace) -> dict[str, Any]:
    import http.client

    import requests
    import urllib3

    from qlikauth import Certificates, QlikUser, QpsClient

    out: dict[str, Any] = {}
    with (
        EmulatorProcess() as emu,
        CannedProcess(emu.certs_dir) as canned,
        CannedProcess(emu.certs_dir, stack=True) as stack,
    ):
        certs = Certificates.from_dir(emu.certs_dir)
        user = QlikUser("BENCH", "jdoe", [("group", "Sales"), ("group", "Finance")])
        body = json.dumps(user.to_qps()).encode()
        host, port = "localhost", int(emu.qps_url.rsplit(":", 1)[1])
        url = f"{emu.qps_url}/qps/ticket?xrfkey={FIXED_XRF}"
        path = f"/qps/ticket?xrfkey={FIXED_XRF}"
        cert = (str(emu.certs_dir / "client.pem"), str(emu.certs_dir / "client_key.pem"))
        root = str(emu.certs_dir / "root.pem")
        headers = {
            "X-Qlik-Xrfkey": FIXED_XRF,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Content-Length": str(len(body)),
        }

        for mode, threads in (("sequential", 1), ("concurrent", args.threads)):
            clients: list[Any] = []
            client = QpsClient(emu.qps_url, certs, pool_maxsize=threads)
            clients.append(client)

            def make_sdk(client: Any = client) -> Callable[[], Any]:
                return lambda: client.request_ticket(user)

            def make_per_request() -> Callable[[], Any]:
                # The community-script pattern: a new requests.post (new TLS handshake) per ticket.
                def call() -> Any:
                    r = requests.post(
                        url,
                        json=user.to_qps(),
                        headers={"X-Qlik-Xrfkey": FIXED_XRF},
                        cert=cert,
                        verify=root,
                        timeout=10,
                    )
                    r.raise_for_status()
                    return r.json()["Ticket"]

                return call

            def make_floor(clients: list[Any] = clients, port: int = port) -> Callable[[], Any]:
                # The floor: one persistent http.client connection, the same SSL context, no SDK.
                conn = http.client.HTTPSConnection(
                    host, port, context=certs.client_ssl_context(), timeout=10
                )
                clients.append(conn)

                def call() -> Any:
                    conn.request("POST", path, body, headers)
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 201:
                        raise RuntimeError(f"floor: {r.status}")
                    return json.loads(data)["Ticket"]

                return call

            pool = urllib3.HTTPSConnectionPool(
                host,
                port,
                ssl_context=certs.client_ssl_context(),
                maxsize=threads,
                block=True,
                retries=False,
            )
            clients.append(pool)

            def make_urllib3(pool: Any = pool) -> Callable[[], Any]:
                def call() -> Any:
                    r = pool.urlopen("POST", path, body=body, headers=headers, redirect=False)
                    if r.status != 201:
                        raise RuntimeError(f"urllib3: {r.status}")
                    return json.loads(r.data)["Ticket"]

                return call

            def make_floor_canned(clients: list[Any] = clients) -> Callable[[], Any]:
                # The same floor client against a trivial TLS server answering a canned ticket.
                return make_floor(clients, canned.port)

            def make_floor_stack(clients: list[Any] = clients) -> Callable[[], Any]:
                # ... and against the emulator's server stack answering the canned
                # ticket (no Qlik logic).
                return make_floor(clients, stack.port)

            cs = [
                Contender("qlikauth QpsClient", make_sdk),
                Contender("requests.post per ticket", make_per_request),
                Contender("floor: bare http.client", make_floor),
                Contender("urllib3 pool (context)", make_urllib3),
                Contender("floor vs canned-ticket server", make_floor_canned),
                Contender("floor vs server stack, canned ticket", make_floor_stack),
            ]
            before = emu.stats()
            log(
                f"tickets {mode}: {args.rounds} rounds x {len(cs)} contenders x {args.slice:g}s, "
                f"{threads} thread(s)"
            )
            interleave(cs, args.rounds, args.slice, threads)
            after = emu.stats()
            for c in clients:
                c.close()
            sdk, per, floor, u3, canned_floor, stack_floor = cs
            out[mode] = {
                "emulator_vs_canned": round(ratio(floor, canned_floor), 2),
                "server_stack_vs_canned": round(ratio(stack_floor, canned_floor), 2),
                "threads": threads,
                "ratio_vs_per_request": round(ratio(sdk, per), 2),
                "ratio_vs_floor": round(ratio(sdk, floor), 2),
                "urllib3_vs_floor": round(ratio(u3, floor), 2),
                "contenders": {c.name: summary(c) for c in cs},
                "emulator_qps_requests": after["qps_requests"] - before["qps_requests"],
                "emulator_connections": after["connections_accepted"]
                - before["connections_accepted"],
            }
    return out


# -- 4. memory ------------------------------------------------------------------------------
def bench_memory(args: argparse.Namespace) -> dict[str, Any]:
    import multiprocessing as mp

    ttl = 1.0
    checkpoints = [args.mem_small, args.mem_large]
    out: dict[str, Any] = {"ticket_ttl_s": ttl, "checkpoints": []}
    with EmulatorProcess(ticket_ttl=ttl) as emu:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=memory_worker,
            args=(child, emu.qps_url, str(emu.certs_dir), checkpoints, 4),
            daemon=True,
        )
        log(f"memory: {checkpoints[-1]} tickets (ttl {ttl:g}s) with 4 threads")
        proc.start()
        child.close()
        try:
            base_emu = emu.stats()
            while True:
                if not parent.poll(600):
                    raise RuntimeError("memory worker stalled")
                msg = parent.recv()
                if msg == "done":
                    break
                st = emu.stats()
                out["checkpoints"].append(
                    {
                        "tickets": msg["tickets"],
                        "seconds": round(msg["seconds"], 2),
                        "client_rss_mib": round(msg["rss_kib"] / 1024, 1),
                        "client_peak_mib": round(msg["hwm_kib"] / 1024, 1),
                        "emulator_rss_mib": round(st["rss_kib"] / 1024, 1),
                        "emulator_peak_mib": round(st["hwm_kib"] / 1024, 1),
                        "emulator_outstanding_tickets": st["outstanding_tickets"],
                        "emulator_connections": st["connections_accepted"]
                        - base_emu["connections_accepted"],
                    }
                )
            # Once a ticket lifetime has passed, every unused ticket must be gone.
            time.sleep(ttl + 0.3)
            out["emulator_outstanding_after_ttl"] = emu.stats()["outstanding_tickets"]
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            parent.close()
    a, b = out["checkpoints"][0], out["checkpoints"][-1]
    out["client_peak_growth_mib"] = round(b["client_peak_mib"] - a["client_peak_mib"], 1)
    out["emulator_peak_growth_mib"] = round(b["emulator_peak_mib"] - a["emulator_peak_mib"], 1)
    return out


# -- 5. JWT and Qlik Cloud access tokens (bench_cloud.py) ------------------------------------
def bench_jwt(args: argparse.Namespace) -> dict[str, Any]:
    from bench_cloud import bench_cloud

    return bench_cloud(args)


# -- report ---------------------------------------------------------------------------------
def table(results: dict[str, Any]) -> str:
    rows = [
        "| Benchmark | Ratio (median of rounds) | Target | Context (absolute, this run) |",
        "|---|---|---|---|",
    ]
    t = results.get("tickets")
    if t:
        for mode in ("sequential", "concurrent"):
            m = t[mode]
            c = m["contenders"]
            sdk, per, floor = (
                c["qlikauth QpsClient"],
                c["requests.post per ticket"],
                c["floor: bare http.client"],
            )
            ctx = (
                f"qlikauth {sdk['per_s_median']:.0f}/s (p50 {sdk['p50_ms']:.2f} ms, p99 "
                f"{sdk['p99_ms']:.2f} ms); "
                f"per-request {per['per_s_median']:.0f}/s (p50 {per['p50_ms']:.2f}, p99 "
                f"{per['p99_ms']:.2f}); "
                f"floor {floor['per_s_median']:.0f}/s (p50 {floor['p50_ms']:.2f}, p99 "
                f"{floor['p99_ms']:.2f}); "
                f"urllib3 {c['urllib3 pool (context)']['per_s_median']:.0f}/s"
            )
            rows.append(
                f"| Tickets, {mode} ({m['threads']} thr): qlikauth / requests.post per ticket | "
                f"**{m['ratio_vs_per_request']:.2f}x** | >= 5x | {ctx} |"
            )
            rows.append(
                f"| Tickets, {mode}: qlikauth / bare http.client floor | "
                f"**{m['ratio_vs_floor']:.2f}x** | "
                f">= 0.6x | urllib3 pool / floor {m['urllib3_vs_floor']:.2f}x; QPS connections "
                "opened by "
                f"the run: {m['emulator_connections']} |"
            )
            cf = c["floor vs canned-ticket server"]
            rows.append(
                f"| Tickets, {mode}: floor against the emulator / against a canned-ticket TLS "
                "server | "
                f"**{m['emulator_vs_canned']:.2f}x** | >= 0.7x | emulator "
                f"{floor['per_s_median']:.0f}/s, "
                f"canned {cf['per_s_median']:.0f}/s (uvicorn + httptools on uvloop vs. one sendall "
                "per answer); "
                f"the emulator's server stack alone answering the canned ticket: "
                f"{m['server_stack_vs_canned']:.2f}x |"
            )
    pv = results.get("page_views")
    if pv:
        for fw in ("flask", "django"):
            if fw in pv:
                m = pv[fw]
                rows.append(
                    f"| Page view, {fw}: with qlikauth / without (time per view) | "
                    f"**{m['time_ratio']:.3f}x** "
                    f"({m['overhead_pct']:+.1f}%) | <= 1.05x, 0 QPS calls | with "
                    f"{m['with']['per_s_median']:.0f}/s, "
                    f"without {m['without']['per_s_median']:.0f}/s; QPS calls during "
                    f"{m['views_with']} views: "
                    f"{m['qps_calls_during_views']} |"
                )
    s = results.get("storm")
    if s:
        rows.append(
            f"| Sign-in storm: {s['users']} users at once, Flask portal on gunicorn | "
            f"{s['sign_ins_per_s']:.0f} sign-ins/s, {s['completed']}/{s['users']} signed in | all "
            "signed in, "
            f"all distinct, no mix-ups | p50 {s['p50_ms']:.0f} ms, "
            f"p99 {s['p99_ms']:.0f} ms; mix-ups {s['mixups']}, distinct tickets "
            f"{s['distinct_tickets']}, "
            f"hub identity ok {s['hub_identity_ok']}"
            + (
                f"; errors {s['errors']}: {'; '.join(s['first_errors'])[:300]}"
                if s["errors"]
                else ""
            )
            + " |"
        )
    mem = results.get("memory")
    if mem:
        a, b = mem["checkpoints"][0], mem["checkpoints"][-1]
        rows.append(
            f"| Memory: {a['tickets']:,} -> {b['tickets']:,} tickets (ttl "
            f"{mem['ticket_ttl_s']:g}s) | "
            f"peak RSS growth: client {mem['client_peak_growth_mib']:+.1f} MiB, emulator "
            f"{mem['emulator_peak_growth_mib']:+.1f} MiB | flat | client peak "
            f"{a['client_peak_mib']} -> "
            f"{b['client_peak_mib']} MiB, emulator peak {a['emulator_peak_mib']} -> "
            f"{b['emulator_peak_mib']} MiB; "
            f"outstanding tickets {b['emulator_outstanding_tickets']} |"
        )
    h = results.get("header_auth")
    if h and h.get("status") == "measured":
        c = h["contenders"]
        w, k, b = c["no identity cache"], c["as generated"], c["without auth_request"]
        ctx = (
            f"as generated {k['per_s_median']:.0f}/s (p50 {k['p50_ms']:.2f} ms), portal asked "
            f"{h['portal_calls_cached']} times in {k['calls']} requests; without "
            f"{b['per_s_median']:.0f}/s "
            f"(p50 {b['p50_ms']:.2f} ms); {h['threads']} threads"
        )
        rows.append(
            f"| Hub requests through nginx: header auth as generated (identity cache "
            f"{h['identity_cache_s']}s) / no auth_request | "
            f"**{h['ratio_generated_vs_without']:.2f}x** | "
            f">= 0.7x | {ctx} |"
        )
        rows.append(
            "| Hub requests through nginx: header auth with `--identity-cache 0` / no "
            "auth_request | "
            f"{h['ratio_uncached_vs_without']:.2f}x | - | {w['per_s_median']:.0f}/s (p50 "
            f"{w['p50_ms']:.2f} ms): "
            "every request asks the portal |"
        )
    elif h:
        rows.append(
            "| Hub requests through nginx: header auth as generated / no auth_request | "
            f"{h['status']} | "
            f">= 0.7x | {h['reason']} |"
        )
    j = results.get("jwt")
    if j:
        from bench_cloud import cloud_rows

        rows.extend(cloud_rows(j))
    o = results.get("oidc")
    if o:
        from bench_oidc import oidc_rows

        rows.extend(oidc_rows(o))
    sm = results.get("saml")
    if sm:
        from bench_saml import saml_rows

        rows.extend(saml_rows(sm))
    r = results.get("storm_ratios")
    if r:
        labels = {
            "oidc_provider_alone_vs_tickets": "the OIDC provider alone / ticket",
            "oidc_vs_its_provider_alone": "OIDC storm / its provider alone",
            "saml_vs_tickets": "**SAML / ticket** (target >= 0.7x)",
        }
        ctx = "; ".join(f"{labels[k]} {v:.2f}x" for k, v in r.items() if k in labels)
        rows.append(
            f"| Sign-in storms of {results['storm']['users']} users, same run: OIDC / ticket "
            "(sign-ins/s) | "
            f"**{r.get('oidc_vs_tickets', 0):.2f}x** | >= 0.7x (the provider's own cost apart) | "
            f"{ctx} |"
        )
    return "\n".join(rows)


def storm_ratios(results: dict[str, Any]) -> dict[str, float]:
    """Each SSO storm's sign-ins/s over the ticket storm's, in the same run (and the OIDC
    provider alone over it: the provider's own cost)."""
    base = (results.get("storm") or {}).get("sign_ins_per_s")
    if not base:
        return {}
    out: dict[str, float] = {}
    o = (results.get("oidc") or {}).get("storm") or {}
    if o.get("sign_ins_per_s"):
        out["oidc_vs_tickets"] = round(o["sign_ins_per_s"] / base, 3)
        if o.get("provider_alone", {}).get("sign_ins_per_s"):
            out["oidc_provider_alone_vs_tickets"] = round(
                o["provider_alone"]["sign_ins_per_s"] / base, 3
            )
            out["oidc_vs_its_provider_alone"] = round(
                o["sign_ins_per_s"] / o["provider_alone"]["sign_ins_per_s"], 3
            )
    st = (results.get("saml") or {}).get("storm") or {}
    if st.get("sign_ins_per_s"):
        out["saml_vs_tickets"] = round(st["sign_ins_per_s"] / base, 3)
    return out


SECTIONS = ("tickets", "page_views", "storm", "memory", "header_auth", "jwt", "oidc", "saml")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="small counts: a smoke run (seconds, not minutes)"
    )
    ap.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    ap.add_argument(
        "--storm-users",
        type=int,
        default=None,
        metavar="N",
        help="users in each sign-in storm (default: 200, 20 with --quick)",
    )
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {', '.join(SECTIONS)}",
    )
    args = ap.parse_args(argv)
    quick = args.quick
    args.rounds = 2 if quick else 9
    args.slice = 0.15 if quick else 0.6
    args.threads = 4 if quick else 8
    args.mem_small, args.mem_large = (500, 2000) if quick else (10_000, 100_000)
    args.storm_users = args.storm_users or (20 if quick else 200)
    args.views = 30 if quick else 400
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in wanted:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}")
    results: dict[str, Any] = {
        "quick": quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "method": "contenders interleaved in rounds; figure = median of per-round ratios",
    }
    funcs: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "tickets": bench_tickets,
        "memory": bench_memory,
        "jwt": bench_jwt,
    }
    try:
        from bench_oidc import bench_oidc

        funcs["oidc"] = bench_oidc
    except ImportError as exc:  # pragma: no cover
        log(f"OIDC benchmarks unavailable: {exc}")
    try:
        from bench_saml import bench_saml

        funcs["saml"] = bench_saml
    except ImportError as exc:  # pragma: no cover
        log(f"SAML benchmarks unavailable: {exc}")
    try:
        from bench_web import bench_page_views, bench_storm

        funcs["page_views"] = bench_page_views
        funcs["storm"] = bench_storm
    except ImportError as exc:  # pragma: no cover
        log(f"web benchmarks unavailable: {exc}")
    from bench_nginx import bench_header_auth

    funcs["header_auth"] = bench_header_auth
    started = time.perf_counter()
    for s in wanted:
        if s in funcs:
            t0 = time.perf_counter()
            results[s] = funcs[s](args)
            log(f"  {s} done in {time.perf_counter() - t0:.1f}s")
    results["storm_ratios"] = storm_ratios(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["bench_process_rss_mib"] = round(rss_kib()["rss_kib"] / 1024, 1)
    md = table(results)
    results["table_markdown"] = md
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
