#!/usr/bin/env bash
# The main job: set up the machine, embed every WordNet definition with the
# NumPy MiniLM encoder and index it (both cached after the first run),
# assemble the static site and serve it on 127.0.0.1.
# Usage: bash build_scripts/run_demo.sh [--port 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash build_scripts/setup.sh
PYTHON=${PYTHON:-python3}
"$PYTHON" -m build_scripts.build_site --demo --explorer
echo "run-demo: ready after $((SECONDS - start)) s"
exec "$PYTHON" -m lorann_wasm.site.serve site "$@"
