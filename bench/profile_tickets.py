#!/usr/bin/env python
"""Function calls and client CPU per ticket: ``.venv/bin/python bench/profile_tickets.py``.

A deterministic companion to the throughput ratios of ``bench/run.py``: one ``QpsClient``
thread requests tickets from the emulator (its own process); cProfile counts the Python
function calls per ticket (1,000 tickets) and ``time.thread_time`` the client thread's CPU
per ticket (5 x 1,000 tickets, min and median). Used to decide the transport (bench/README.md).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (str(HERE), str(HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def main() -> None:
    """Print calls per ticket and client CPU microseconds per ticket."""
    from _procs import EmulatorProcess

    from qlikauth import Certificates, QlikUser, QpsClient

    user = QlikUser("BENCH", "jdoe", [("group", "Sales")])
    n = 1000
    with EmulatorProcess() as emu:
        certs = Certificates.from_dir(emu.certs_dir)
        with QpsClient(emu.qps_url, certs, pool_maxsize=1) as client:
            for _ in range(200):
                client.request_ticket(user)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(n):
                client.request_ticket(user)
            profile.disable()
            print(f"function calls per ticket: {pstats.Stats(profile).total_calls / n:.0f}")
            cpu = []
            for _ in range(5):
                t0 = time.thread_time()
                for _ in range(n):
                    client.request_ticket(user)
                cpu.append((time.thread_time() - t0) / n * 1e6)
            cpu.sort()
            print(f"client thread CPU per ticket: min {cpu[0]:.0f} us, median {cpu[2]:.0f} us")


if __name__ == "__main__":
    main()
