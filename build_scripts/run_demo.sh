#!/usr/bin/env bash
# The main job, through the product path: set up the machine, write WordNet
# 3.0 as a JSONL collection, make its search site with `lorann-wasm site`
# (embedding every definition with the NumPy MiniLM the first time, cached
# after) with the vector explorer on a Fashion-MNIST index beside it, and
# serve it on 127.0.0.1.
# Usage: bash build_scripts/run_demo.sh [--port 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash build_scripts/setup.sh
PYTHON=${PYTHON:-python3}
CACHE=${LORANN_WASM_CACHE:-$HOME/.cache/lorann_wasm}
"$PYTHON" -m build_scripts.demo.wordnet_jsonl "$CACHE/wordnet.jsonl"
FASHION=$("$PYTHON" -m build_scripts.demo.fashion_index)
"$PYTHON" -m lorann_wasm site "$CACHE/wordnet.jsonl" -o site --facet-field pos --facet-field lexname \
  --title "WordNet 3.0: every definition, searched by meaning" \
  --explorer-index "fashion-mnist=$FASHION:Fashion-MNIST (60,000 images, l2, int8)" \
  --explorer-image fashion-mnist=28x28
echo "run-demo: ready after $((SECONDS - start)) s"
exec "$PYTHON" -m lorann_wasm serve site "$@"
