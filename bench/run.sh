#!/usr/bin/env bash
# Every benchmark from a fresh clone: bootstrap .venv (scripts/bootstrap.sh), then bench/run.py.
# Arguments go to bench/run.py (e.g. bench/run.sh --quick, bench/run.sh --json bench/results.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python bench/run.py "$@"
