#!/usr/bin/env bash
# Idempotent set-up on a Debian machine, as root: system packages, then the
# Python virtualenv (.venv) with the project and its dev tools installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# prometheus: promtool, which checks and unit-tests compose/prometheus/alerts.yaml
apt_packages=(containernetworking-plugins iproute2 coreutils procps python3 python3-venv prometheus)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[setup] apt-get install ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
stamp=.venv/.installed-$(cat pyproject.toml constraints/*.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "[setup] creating .venv with $($python --version) and installing the project"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  # pip's and setuptools' chatter goes to a log, shown only when the install fails
  if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -c constraints/runtime.txt -c constraints/dev.txt -e '.[dev]'; } >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
