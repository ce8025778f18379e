#!/usr/bin/env bash
# The main job: set up the machine, build the demo index (cached after the
# first run), assemble the static site and serve it on 127.0.0.1.
# Usage: bash build_scripts/run_demo.sh [--port 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
bash build_scripts/setup.sh
PYTHON=${PYTHON:-python3}
"$PYTHON" -m build_scripts.build_site --demo
exec "$PYTHON" -m build_scripts.serve site "$@"
