#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --system
export QLIKAUTH_REQUIRE_ALL=1   # in the full run, a missing nginx/chromium fails instead of skipping
exec .venv/bin/python -m pytest "$@"
