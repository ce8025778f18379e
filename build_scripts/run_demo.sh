#!/usr/bin/env bash
# The main job, through the product path: set up the machine, write WordNet
# 3.0 as a JSONL collection, make its search site with `lorann-wasm site`
# (embedding every definition with the NumPy MiniLM the first time, cached
# after), add the vector explorer, and serve it on 127.0.0.1.
# Usage: bash build_scripts/run_demo.sh [--port 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash build_scripts/setup.sh
PYTHON=${PYTHON:-python3}
CACHE=${LORANN_WASM_CACHE:-$HOME/.cache/lorann_wasm}
"$PYTHON" -m build_scripts.demo.wordnet_jsonl "$CACHE/wordnet.jsonl"
"$PYTHON" -m lorann_wasm site "$CACHE/wordnet.jsonl" -o site --facet-field pos --facet-field lexname \
  --title "WordNet 3.0: every definition, searched by meaning"
"$PYTHON" -m build_scripts.demo.explorer_site --into site --explorer
echo "run-demo: ready after $((SECONDS - start)) s"
exec "$PYTHON" -m lorann_wasm serve site "$@"
