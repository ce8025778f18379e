#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine: Debian
# packages (data sets) and Python packages. Safe to run again: it installs
# only what is missing. Usage: bash build_scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(dataset-fashion-mnist)

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
