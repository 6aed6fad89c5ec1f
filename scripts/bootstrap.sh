#!/usr/bin/env bash
# Set up a fresh machine for qlikauth: a virtualenv in .venv with qlikauth and its extras installed
# in editable mode; with --system also the Debian packages the tests use, and with --system or
# --test the npm test peers (the demo needs neither, nor npm).
# It never starts or stops the machine's services: the tests start their own nginx and Redis
# on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

want_system=0
want_peers=0
for arg in "$@"; do
  case "$arg" in
    --system) want_system=1; want_peers=1 ;;
    --test) want_peers=1 ;;
    *) echo "usage: scripts/bootstrap.sh [--system] [--test]" >&2; exit 2 ;;
  esac
done

if [ "$want_system" = 1 ]; then
  # nginx: header-auth tests; chromium: browser tests; redis-server: shared state. xmlsec1 only for
  # bench/bench_saml.py's comparison with pysaml2 on that binary: qlikauth's SAML (and every test and
  # demo) verifies, signs and decrypts in process with the xmlsec package from the saml extra.
  missing=()
  for pkg in nginx chromium xmlsec1 redis-server; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "==> installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.qlikauth-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing qlikauth and its test dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[all,dev]'
  touch "$stamp"
fi

# npm test peers (a real SAML IdP on another stack, a certified OpenID provider, ...): each
# tests/peers/NAME/ holds a package.json and its package-lock.json; `npm ci` installs exactly that.
[ "$want_peers" = 1 ] || exit 0
for lock in tests/peers/*/package-lock.json; do
  [ -f "$lock" ] || continue
  dir=$(dirname "$lock")
  if [ ! -f "$dir/node_modules/.qlikauth-installed" ] || [ "$lock" -nt "$dir/node_modules/.qlikauth-installed" ]; then
    command -v npm >/dev/null 2>&1 || { echo "npm is needed for the test peers in $dir (Node 20+)" >&2; exit 1; }
    echo "==> installing the npm test peer in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$dir/node_modules/.qlikauth-installed"
  fi
done
