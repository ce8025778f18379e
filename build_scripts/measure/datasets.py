"""Make and cache the benchmark data sets (see lorann_wasm.bench.datasets).

Usage: python -m build_scripts.measure.datasets NAME [--limit N] [--queries 1000]
Prints the shapes once the data set and its exact ground truth are cached.
"""

import argparse
import sys

from lorann_wasm.bench.datasets import NAMES, load


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=NAMES)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N data points")
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args(argv)
    ds = load(args.name, n_queries=args.queries, limit=args.limit)
    print(f"{ds.name}: data {ds.train.shape}, queries {ds.queries.shape}, {ds.distance}, "
          f"ground truth {ds.neighbors.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
