"""How much recall ``rerank_dims`` costs, and how many bytes it saves, on a data set.

For each S, the rerank vectors are coded as the index codes them (int8 per
dimension by default) along the data's top S principal directions, and exact
top-k search over those codes is scored against the true neighbours: the
most recall any search setting can reach with them. Usage:
python -m build_scripts.measure.bench_rerank_dims [--dataset wordnet-minilm]
[--dims 256,288,304,320,all] [--rerank-dtype int8]
"""

import argparse

import numpy as np

from lorann_wasm.bench.datasets import NAMES, load
from lorann_wasm.metrics import prepare
from lorann_wasm.query.rerank import brute_force
from lorann_wasm.query.vectors import RerankVectors
from lorann_wasm.training.pipeline import sample_rows
from lorann_wasm.training.projection import PROJECTION_SAMPLE, fit_projection
from lorann_wasm.training.tuning import recall_at_k


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="wordnet-minilm", choices=NAMES)
    ap.add_argument("--dims", default="256,288,304,320,336,all",
                    help="comma-separated S values; 'all' = every dimension, no basis")
    ap.add_argument("--rerank-dtype", default="int8", choices=("float32", "float16", "int8"))
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args(argv)

    ds = load(args.dataset)
    data = prepare(ds.train, ds.distance, "data")
    queries = prepare(ds.queries, ds.distance, "queries")
    n, d = data.shape
    rows = sample_rows(np.random.default_rng(0), n, PROJECTION_SAMPLE)
    full_basis = fit_projection(data[rows], d)
    itemsize = np.dtype(args.rerank_dtype).itemsize
    print(f"{ds.name}: {n:,} x {d} ({ds.distance}), {len(queries)} queries, "
          f"{args.rerank_dtype} codes")
    print(f"{'stored dims':>11} {'bytes/point':>11} {'recall@' + str(args.k) + ' ceiling':>18}")
    for spec in args.dims.split(","):
        s = d if spec.strip() == "all" else int(spec)
        basis = None if spec.strip() == "all" else np.ascontiguousarray(full_basis[:, :s])
        vectors = RerankVectors.encode(data, args.rerank_dtype, basis=basis)
        found, _ = brute_force(vectors, queries, args.k, ds.distance)
        ceiling = recall_at_k(found, ds.neighbors, args.k)
        print(f"{spec.strip():>11} {s * itemsize:>11} {ceiling:>18.4f}", flush=True)


if __name__ == "__main__":
    main()
