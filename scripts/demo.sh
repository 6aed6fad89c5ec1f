#!/usr/bin/env bash
# The demo on a fresh machine: installs qlikauth into .venv, then starts the QPS emulator and the
# example Flask portal against it, and prints the portal URL. Ctrl-C stops both.
#   PORTAL_PORT=5000 ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PORTAL_PORT="${PORTAL_PORT:-5000}"
echo "==> starting the emulator and the Flask portal; open http://localhost:${PORTAL_PORT}/ (users alice, bob, carol; password demo)"
exec .venv/bin/python examples/flask_portal/app.py "$@"
