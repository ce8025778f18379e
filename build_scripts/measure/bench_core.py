"""CPython benchmark of the core: LorannIndex against ExactIndex on Fashion-MNIST.

Builds an l2 index on the 60,000 training images, queries it with held-out
test images, and prints recall@10 with single-query and batch QPS for a few
search settings (the defaults first), side by side with exact search, all in
one process and single-threaded. Usage: python -m build_scripts.measure.bench_core
[--queries 1000] [--json out.json]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from lorann_wasm.bench.datasets import fashion_mnist  # noqa: E402
from lorann_wasm import ExactIndex, LorannIndex  # noqa: E402
from lorann_wasm.training.tuning import recall_at_k  # noqa: E402


def timed(fn, *args, min_seconds=0.5, **kw):
    """``(result, seconds per call)``, repeating until ``min_seconds`` have passed."""
    start, calls = time.perf_counter(), 0
    while True:
        result = fn(*args, **kw)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return result, elapsed / calls


def qps_single(search, queries, **kw):
    start = time.perf_counter()
    out = np.array([search(q, 10, **kw) for q in queries])
    return out, len(queries) / (time.perf_counter() - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    train, test = fashion_mnist()
    queries = test[:args.queries]
    print(f"Fashion-MNIST: {train.shape[0]} x {train.shape[1]} points, "
          f"{queries.shape[0]} held-out queries, l2, k=10, single thread", flush=True)

    t0 = time.perf_counter()
    index = LorannIndex(train, distance="l2").build(verbose=True)
    build_s = time.perf_counter() - t0
    p = index.params
    size = len(index.to_bytes())
    print(f"built in {build_s:.1f}s: {p['n_clusters']} clusters, global_dim {p['global_dim']}, "
          f"rank {p['rank']}; file {size / 1e6:.1f} MB "
          f"({size / train.nbytes:.2f}x raw float32)", flush=True)

    exact = ExactIndex(train, distance="l2")
    truth, exact_batch_s = timed(exact.search, queries, 10)
    _, exact_single = qps_single(exact.search, queries[:200])
    exact_batch = len(queries) / exact_batch_s

    rows = [{"method": "ExactIndex", "clusters_to_search": None, "points_to_rerank": None,
             "recall@10": 1.0, "qps_single": exact_single, "qps_batch": exact_batch,
             "index_bytes": train.nbytes}]
    compact = LorannIndex(train, distance="l2", rerank_dtype="int8").build()
    compact_size = len(compact.to_bytes())
    runs = [("LorannIndex", index, size, c, r)
            for c, r in [(None, None), (6, 50), (8, 50), (16, 200)]]
    runs.append(("Lorann int8", compact, compact_size, None, None))
    for name, idx, nbytes, c, r in runs:
        kw = {"clusters_to_search": c, "points_to_rerank": r}
        found, batch_s = timed(idx.search, queries, 10, **kw)
        single, single_qps = qps_single(idx.search, queries, **kw)
        rows.append({"method": name, "clusters_to_search": c or p["clusters_to_search"],
                     "points_to_rerank": r or p["points_to_rerank"],
                     "recall@10": recall_at_k(found, truth, 10), "qps_single": single_qps,
                     "qps_batch": len(queries) / batch_s, "index_bytes": nbytes})

    print(f"\n{'method':<12} {'clusters':>8} {'rerank':>6} {'recall@10':>9} "
          f"{'single q/s':>10} {'batch q/s':>10} {'x exact (single/batch)':>24} {'MB':>6}")
    for row in rows:
        print(f"{row['method']:<12} {row['clusters_to_search'] or '-':>8} "
              f"{row['points_to_rerank'] or '-':>6} {row['recall@10']:>9.4f} "
              f"{row['qps_single']:>10.0f} {row['qps_batch']:>10.0f} "
              f"{row['qps_single'] / exact_single:>11.1f} / {row['qps_batch'] / exact_batch:<10.1f}"
              f" {row['index_bytes'] / 1e6:>6.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": "fashion-mnist", "build_seconds": build_s,
                       "index_bytes": size, "params": p, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
