"""A small portal for the shared-state test: two of these processes share one STATE_STORE.

It uses the store API the way the sign-in flows do: a sign-in started here leaves its one-time
state in the store (``put``), the callback consumes it (``take``, so it works once, on whichever
process the browser reaches), and an assertion id is recorded in a replay cache (``add`` on a
store that refuses when full). Run: ``STATE_STORE=redis://... PORTAL_PORT=5001 python state_portal.py``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets

from flask import Flask, jsonify, request

from qlikauth.exceptions import StoreError
from qlikauth.store import open_store

log = logging.getLogger("state_portal")
PORT = int(os.environ["PORTAL_PORT"])

app = Flask(__name__)
states = open_store(os.environ["STATE_STORE"], namespace="portal-signin")
replay = open_store(os.environ["STATE_STORE"], namespace="portal-replay", max_items=1000, when_full="refuse")


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
    states.put(f"state:{state}", json.dumps({"user": request.args["user"], "started_on": PORT}).encode(), ttl=300)
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
