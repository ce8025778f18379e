#!/usr/bin/env bash
# The whole test suite: set up the machine, then run pytest. Exits non-zero
# when any test fails (or when no test ran).
set -euo pipefail
cd "$(dirname "$0")/.."
bash build_scripts/setup.sh --tests
exec "${PYTHON:-python3}" -m pytest "$@"
