#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine: Debian
# packages (data sets) and Python packages. Safe to run again: it installs
# only what is missing. Usage: bash build_scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# data sets, the browser for the Playwright tests, Node's npm for fetching Pyodide
DEBIAN_PACKAGES=(dataset-fashion-mnist chromium)
command -v npm >/dev/null 2>&1 || DEBIAN_PACKAGES+=(npm)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
echo "setup: installing Python packages (lorann_wasm, NumPy, SciPy, test tools)"
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test,fast]"

# Pyodide runtime + NumPy wheel, verified against the official lock file (cached).
"$PYTHON" -m build_scripts.pyodide_assets >/dev/null
