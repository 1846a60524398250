#!/usr/bin/env bash
# Set up and run every check: generated-code freshness, ruff, mypy, and the
# test suite (against the real kube-apiserver from ../shared/kube).
# Extra arguments go to pytest, e.g. `./scripts/test.sh -m slow` for the long
# soak/fault/rotation tests, or `./scripts/test.sh tests/gateway`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

if [ -d ../shared/kube ]; then
  echo "[test] building/starting the real kube-apiserver (../shared/kube)"
  KUBE_WITH_NAD=1 ../shared/kube/up.sh
fi

echo "[test] generated code is fresh"
.venv/bin/python scripts/genproto.py --check
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] mypy"
.venv/bin/mypy .
echo "[test] pytest"
exec .venv/bin/python -m pytest "$@"
