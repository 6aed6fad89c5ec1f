"""A faithful local Qlik Proxy Service node and hub over real TLS, for demos, tests and benchmarks.

>>> from qlikauth.emulator import Emulator, VirtualProxy
>>> with Emulator(virtual_proxies=[VirtualProxy("portal", method="ticket")]) as emu:  # doctest:
+SKIP
...     emu.qps_url, emu.hub_url_for("portal")

Served by uvicorn (httptools, uvloop, wsproto) through :mod:`qlikauth.emulator.serving`, so the
code here is Qlik's behaviour only; needs the ``emulator`` extra (``pip install
'qlikauth[emulator]'``). See ``docs/emulator.md`` and :mod:`qlikauth.pytest_plugin` for a fixture.
"""

from __future__ import annotations

from .faults import FAULT_KINDS, Fault
from .proxy import VirtualProxy
from .server import Emulator, EmulatorCluster
from .state import EmulatorState, HeaderRecord, SessionRecord, TicketRecord

__all__ = [
    "Emulator",
    "EmulatorCluster",
    "VirtualProxy",
    "Fault",
    "FAULT_KINDS",
    "EmulatorState",
    "HeaderRecord",
    "SessionRecord",
    "TicketRecord",
]
