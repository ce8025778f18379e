#!/usr/bin/env bash
# The main job: set up the machine, build a LoRANN index on real data
# (Fashion-MNIST, 60,000 x 784) and print recall and speed next to exact search.
set -euo pipefail
cd "$(dirname "$0")/.."
bash build_scripts/setup.sh
exec "${PYTHON:-python3}" -m build_scripts.bench_core "$@"
