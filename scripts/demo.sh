#!/usr/bin/env bash
# The demo on a fresh machine: installs qlikauth into .venv and runs `qlikauth demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/qlikauth demo "$@"
