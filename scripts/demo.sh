#!/usr/bin/env bash
# Set up (apt packages, .venv) and run the demo: the four services under the
# local supervisor, a pod attached to three networks through the shim.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m compose.demo "$@"
