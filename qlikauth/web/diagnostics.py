"""The portal's diagnostics page: what a device's browser can reach, tested from the device.

Opened on a phone or tablet (through its per-app VPN, in its managed browser), the page tests
from there: the portal over https, the hub over https, the CSRF token of the engine websocket
(readable only when the virtual proxy sends the CORS headers), the engine websocket itself
(with the proxy session cookie, the token and the portal's ``Origin``), the websocket kept open
past an idle minute, and a large transfer. It shows each result to the person holding the
device and posts them to the portal, which writes one log line with the user agent, so an
administrator sees which devices and gateways break what. Nothing secret is shown or logged:
the page never sees the proxy session cookie (HttpOnly), and the CSRF token is not reported.

The integrations mount it: :mod:`flask_qlikauth.diagnostics` and
:mod:`django_qlikauth.diagnostics`.
"""

from __future__ import annotations

import html
import json
import logging
from typing import Any

from ..engine import CSRF_HEADER
from ..exceptions import ConfigurationError

__all__ = ["diagnostics_page", "read_report", "payload", "TESTS", "MAX_REPORT_BYTES"]

log = logging.getLogger("qlikauth.diagnostics")

#: The tests the page runs, in order.
TESTS = ("portal", "hub", "csrf-token", "websocket", "websocket-hold", "transfer")
#: The largest report the portal reads.
MAX_REPORT_BYTES = 16 * 1024
#: The size of the transfer test's download, and the most a request may ask for.
PAYLOAD_BYTES = 2 * 1024 * 1024
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


def _proxy_url(hub_url: str) -> str:
    base = hub_url.split("?", 1)[0].rstrip("/")
    if base.endswith("/hub"):
        base = base[: -len("/hub")]
    return base + "/"


def diagnostics_page(
    hub_url: str,
    report_url: str,
    payload_url: str,
    *,
    hold_seconds: float = 65.0,
    app_id: str = "engineData",
) -> str:
    """The page (HTML with its script); ``hub_url`` is the virtual proxy's https hub."""
    if not hub_url.startswith("https://"):
        raise ConfigurationError("the diagnostics page needs the hub's https URL (HUB_URL).")
    config = {
        "hub": hub_url,
        "proxy": _proxy_url(hub_url),
        "report": report_url,
        "payload": payload_url,
        "payloadBytes": PAYLOAD_BYTES,
        "hold": float(hold_seconds),
        "app": app_id,
        "csrfHeader": CSRF_HEADER,
    }
    # JSON inside <script>: "</" is escaped so no value can close the element.
    data = json.dumps(config).replace("</", "<\\/")
    rows = "".join(
        f'<tr id="result-{t}" data-status="pending"><th>{html.escape(t)}</th>'
        '<td class="status">waiting</td><td class="detail"></td></tr>'
        for t in TESTS
    )
    return _PAGE.replace("{{ROWS}}", rows).replace("{{CONFIG}}", data)


def read_report(body: bytes, user_agent: str | None) -> dict[str, Any]:
    """Check a report the page posted and log it (one line, with the user agent); returns it.

    ValueError when the body is not a report (too large, not JSON, unknown tests).
    """
    if len(body) > MAX_REPORT_BYTES:
        raise ValueError(f"a diagnostics report is at most {MAX_REPORT_BYTES} bytes.")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("a diagnostics report is a JSON object.") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or len(results) > len(TESTS):
        raise ValueError("a diagnostics report has a list of results.")
    clean = []
    for item in results:
        if (
            not isinstance(item, dict)
            or item.get("test") not in TESTS
            or item.get("status") not in ("ok", "fail", "skip")
        ):
            raise ValueError("each result names a known test and ok, fail or skip.")
        detail = str(item.get("detail", ""))[:300]
        detail = "".join(c if c.isprintable() else " " for c in detail)
        clean.append({"test": item["test"], "status": item["status"], "detail": detail})
    agent = "".join(c if c.isprintable() else " " for c in (user_agent or "unknown"))[:300]
    summary = ", ".join(f"{r['test']}={r['status']}" for r in clean)
    failed = [r for r in clean if r["status"] == "fail"]
    level = logging.WARNING if failed else logging.INFO
    log.log(
        level,
        "qlikauth diagnostics from %r: %s%s",
        agent,
        summary,
        "".join(f"; {r['test']}: {r['detail']}" for r in failed),
    )
    return {"user_agent": agent, "results": clean}


def payload(size: int | None = None) -> bytes:
    """The transfer test's download: ``size`` bytes (default :data:`PAYLOAD_BYTES`)."""
    n = PAYLOAD_BYTES if size is None else size
    if not 0 < n <= MAX_PAYLOAD_BYTES:
        raise ValueError(f"size must be between 1 and {MAX_PAYLOAD_BYTES}.")
    return b"q" * n


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Qlik connection diagnostics</title>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
[data-status=ok] .status{color:#060}[data-status=fail] .status{color:#a00}</style></head>
<body><h1>Qlik connection diagnostics</h1>
<p>This page tests, from this device, what Qlik Sense needs. Open Qlik once from the portal
first (so this browser has a Qlik session), then keep this page open until it says
<em>done</em> (about a minute).</p>
<table><tbody>{{ROWS}}</tbody></table>
<p id="done" hidden>done: the results were sent to the portal's administrators.</p>
<script id="qlikauth-diagnostics" type="application/json">{{CONFIG}}</script>
<script>
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("qlikauth-diagnostics").textContent);
  var results = [];
  function set(test, status, detail) {
    var row = document.getElementById("result-" + test);
    row.dataset.status = status;
    row.querySelector(".status").textContent = status;
    row.querySelector(".detail").textContent = detail || "";
    results.push({test: test, status: status, detail: detail || ""});
  }
  function wsUrl(token) {
    var url = "wss://" + cfg.proxy.slice("https://".length) + "app/" + encodeURIComponent(cfg.app);
    return token ? url + "?qlik-csrf-token=" + encodeURIComponent(token) : url;
  }
  function portal() {
    if (location.protocol === "https:") { set("portal", "ok", "the portal is served over https"); }
    else { set("portal", "fail", "the portal is served over " + location.protocol +
      " : Qlik's session cookie and websockets need https"); }
  }
  function hub() {
    return fetch(cfg.hub, {mode: "no-cors", credentials: "include", cache: "no-store"})
      .then(function () { set("hub", "ok", "the hub answers over https"); return true; },
            function () { set("hub", "fail", "the hub cannot be reached over https from this " +
              "device: its name does not resolve here, the VPN does not route it, or its " +
              "certificate is not trusted"); return false; });
  }
  function token() {
    return fetch(cfg.proxy + "qps/csrftoken", {credentials: "include", cache: "no-store"})
      .then(function (r) {
        var t = r.headers.get(cfg.csrfHeader);
        if (t) { set("csrf-token", "ok", "the engine websocket's CSRF token was read"); return t; }
        if (r.status === 404) { set("csrf-token", "skip", "no token endpoint: a Qlik Sense " +
          "release before November 2024 needs none"); return null; }
        set("csrf-token", "fail", "the hub answered " + r.status + " without a token: this " +
          "browser has no Qlik session; open Qlik from the portal, then this page again");
        return null;
      }, function () {
        set("csrf-token", "fail", "the token cannot be read from the portal's page: the virtual " +
          "proxy must send Access-Control-Allow-Origin (the portal's origin), " +
          "Access-Control-Allow-Credentials: true and Access-Control-Expose-Headers: " +
          cfg.csrfHeader + " (QMC: Additional response headers)");
        return null;
      });
  }
  function websocket(t) {
    return new Promise(function (resolve) {
      var ws, opened = false, started = Date.now(), finished = false;
      function finish(holdStatus, holdDetail) {
        if (finished) { return; }
        finished = true;
        set("websocket-hold", holdStatus, holdDetail);
        try { ws.close(); } catch (e) { /* already closed */ }
        resolve();
      }
      try { ws = new WebSocket(wsUrl(t)); } catch (e) {
        set("websocket", "fail", "the websocket URL was refused by this browser");
        set("websocket-hold", "skip", "");
        resolve(); return;
      }
      ws.onopen = function () {
        opened = true;
        set("websocket", "ok", "the engine websocket opened with the Qlik session");
        setTimeout(function () {
          finish("ok", "still open after " + cfg.hold + " s without traffic");
        }, cfg.hold * 1000);
      };
      ws.onclose = function (ev) {
        if (!opened) {
          set("websocket", "fail", "the engine websocket did not open (code " + ev.code + "): " +
            "a gateway, proxy or VPN that does not pass websockets, the portal's host missing " +
            "from the virtual proxy's host allow list, or no Qlik session in this browser");
          finish("skip", "");
        } else {
          finish("fail", "closed after " + Math.round((Date.now() - started) / 1000) + " s " +
            "(code " + ev.code + "): an idle timeout in a gateway or VPN cuts Qlik's " +
            "websockets (MobileIron: TcpIdleTmoMs)");
        }
      };
    });
  }
  function transfer() {
    var started = Date.now();
    return fetch(cfg.payload, {cache: "no-store", credentials: "same-origin"})
      .then(function (r) { return r.arrayBuffer(); })
      .then(function (b) {
        if (b.byteLength === cfg.payloadBytes) {
          set("transfer", "ok", b.byteLength + " bytes in " + (Date.now() - started) + " ms");
        } else {
          set("transfer", "fail", "received " + b.byteLength + " of " + cfg.payloadBytes +
            " bytes: something in between cuts large answers");
        }
      }, function () { set("transfer", "fail", "the download broke off"); });
  }
  function report() {
    return fetch(cfg.report, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({results: results})})
      .then(function () { document.getElementById("done").hidden = false; },
            function () { document.getElementById("done").hidden = false; });
  }
  portal();
  hub().then(token).then(websocket).then(transfer).then(report);
})();
</script></body></html>
"""
