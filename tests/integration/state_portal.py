"""A small portal for the shared-state test: two of these processes share one STATE_STORE.

The stores come from the web runtime and its ``STATE_STORE`` setting, as the integrations' do
(``runtime.store``, ``runtime.replay_cache``), and are used the way the sign-in flows use them: a
sign-in started here leaves its one-time state in the store (``put``), the callback consumes it
(``take``, so it works once, on whichever process the browser reaches), and an assertion id is
recorded in the replay cache (``add`` on a store that refuses when full).
Run: ``STATE_STORE=redis://... PORTAL_PORT=5001 python state_portal.py``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets

from flask import Flask, jsonify, request

from qlikauth.exceptions import StoreError
from qlikauth.web.runtime import build_runtime

log = logging.getLogger("state_portal")
PORT = int(os.environ["PORTAL_PORT"])

app = Flask(__name__)
# No QPS call is made here: the nodes and certificates are placeholders the settings require.
runtime = build_runtime(
    {
        "QPS_NODES": "https://localhost:4243",
        "CERTS": "/nonexistent",
        "HUB_URL": "https://localhost/hub/",
        "STATE_STORE": os.environ["STATE_STORE"],
    }
)
states = runtime.store
replay = runtime.replay_cache


@app.errorhandler(StoreError)
def store_down(exc: StoreError):
    # The full text (which store, what to do) goes to the log; the browser gets no internals.
    log.error("sign-in refused: %s", exc)
    return jsonify(error="Sign-in is unavailable right now; please try again shortly."), exc.status


@app.get("/")
def index():
    return jsonify(port=PORT)


@app.get("/signin/start")
def start():
    state = secrets.token_urlsafe(32)
    states.put(
        f"state:{state}",
        json.dumps({"user": request.args["user"], "started_on": PORT}).encode(),
        ttl=300,
    )
    return jsonify(state=state, started_on=PORT)


@app.get("/signin/finish")
def finish():
    raw = states.take(f"state:{request.args.get('state', '')}")
    if raw is None:
        return jsonify(error="unknown or already used sign-in state"), 400
    return jsonify(**json.loads(raw), finished_on=PORT)


@app.post("/acs")
def acs():
    if not replay.add(f"assertion:{request.form['assertion_id']}", b"1", ttl=600):
        return jsonify(error="this assertion was already used"), 409
    return jsonify(accepted_on=PORT)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    from werkzeug.serving import run_simple

    run_simple("127.0.0.1", PORT, app, threaded=True)
