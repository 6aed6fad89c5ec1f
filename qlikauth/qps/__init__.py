"""The mutual-TLS client for the Qlik Proxy Service (QPS) API, in five parts along its seams.

* :mod:`.client`: :class:`QpsClient`, the API calls (tickets, proxy sessions, users) and
  what is retried or tried on another node;
* :mod:`.transport`: the one transport, a requests adapter over bounded keep-alive
  connection pools per node, raising typed "could not connect" / "failed after
  sending" errors;
* :mod:`.errors`: those failures and QPS's error statuses turned into qlikauth's
  typed errors, with TLS diagnoses read from OpenSSL's codes;
* :mod:`.nodes`: node URLs and the virtual proxy prefix checked, node health;
* :mod:`.models`: :class:`Ticket`, :class:`ProxySession` and the ids qlikauth makes.
"""

from __future__ import annotations

from .client import QpsClient
from .models import TARGET_ID_RE, ProxySession, Ticket, new_session_id
from .nodes import check_virtual_proxy_prefix, normalise_node
from .transport import ConnectFailed, QpsAdapter, SendFailed

__all__ = [
    "QpsClient",
    "QpsAdapter",
    "Ticket",
    "ProxySession",
    "new_session_id",
    "normalise_node",
    "check_virtual_proxy_prefix",
    "ConnectFailed",
    "SendFailed",
    "TARGET_ID_RE",
]
