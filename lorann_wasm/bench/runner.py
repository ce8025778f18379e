"""``lorann-wasm bench DATASET``: every method on the same data, in one process.

Single-threaded (OpenMP/OpenBLAS/MKL pinned to one thread before NumPy
loads), so ratios between methods are meaningful even on a noisy machine.
For each method and each query setting: recall@k, single-query QPS (one
query at a time) and batch QPS (all queries in one call), each the best of
``--runs`` timings, the methods taking turns setting by setting (as
ann-benchmarks keeps the best of its runs); plus build time and index
bytes. Writes results.json, results.csv, pareto.md and recall_qps.png to
``--out``.
"""

import argparse
import json
import os
import sys
import time

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _count(text):
    """A whole number of at least 1, for argparse."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_arguments(p):
    p.add_argument("dataset", help="fashion-mnist, wordnet-minilm, synthetic, or an "
                   "ann-benchmarks .hdf5 file (train/test/neighbors)")
    p.add_argument("--queries", type=_count, default=1000, help="held-out queries (1000)")
    p.add_argument("--limit", type=int, help="index only the first N points (quick runs)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--methods", default="lorann_wasm,exact,lorann-cpp,faiss-ivf,faiss-hnsw",
                   help="comma-separated subset of these and numpy-ivf, lorann_wasm-floor "
                        "(the NumPy floors of IVF-Flat and of this package's query path)")
    p.add_argument("--rerank-dtype", default="float32", choices=("float32", "float16", "int8"))
    p.add_argument("--rerank-dims", type=int, metavar="S",
                   help="lorann_wasm stores rerank vectors along S principal directions")
    p.add_argument("--single", type=_count, default=1000, help="queries timed one at a time")
    p.add_argument("--runs", type=_count, default=3,
                   help="timings of every setting, methods in turn; the best is kept (3)")
    p.add_argument("--out", help="output folder (default results/DATASET)")


def pin_threads():
    """Re-run this process with one BLAS/OpenMP thread if it was not started so."""
    if all(os.environ.get(v) == "1" for v in THREAD_VARS):
        return
    env = dict(os.environ, **{v: "1" for v in THREAD_VARS})
    os.execve(sys.executable, [sys.executable, "-m", "lorann_wasm"] + sys.argv[1:], env)


def _load(args):
    import numpy as np
    from .datasets import NAMES, load
    if args.dataset in NAMES:
        return load(args.dataset, n_queries=args.queries, limit=args.limit)
    from ..io import read_hdf5
    from .datasets import Dataset
    if not os.path.exists(args.dataset):
        raise ValueError(f"unknown dataset {args.dataset!r}: not one of {NAMES} and not a file")
    train = np.ascontiguousarray(read_hdf5(args.dataset, "train"), dtype=np.float32)
    if args.limit:
        raise ValueError("--limit does not apply to .hdf5 files (their ground truth is fixed)")
    queries = read_hdf5(args.dataset, "test")[:args.queries].astype(np.float32)
    neighbors = read_hdf5(args.dataset, "neighbors")[:args.queries]
    import h5py
    with h5py.File(args.dataset, "r") as f:
        metric = f.attrs.get("distance", "euclidean")
    distance = {"euclidean": "l2", "angular": "cosine", "dot": "ip"}.get(str(metric), "l2")
    return Dataset(os.path.basename(args.dataset), train, queries, distance, neighbors)


def _time_batch(fn, min_seconds=0.3):
    start, calls = time.perf_counter(), 0
    while True:
        out = fn()
        calls += 1
        if time.perf_counter() - start >= min_seconds:
            return out, (time.perf_counter() - start) / calls


def _time_setting(algo, setting, queries, single_q, k):
    """One timing of one setting: its batch results (``found``) and both speeds."""
    found, batch_s = _time_batch(lambda: algo.batch_query(queries, k, **setting))
    start = time.perf_counter()
    for q in single_q:
        algo.query(q, k, **setting)
    single_s = (time.perf_counter() - start) / len(single_q)
    return {"method": algo.name, "setting": setting, "found": found,
            "qps_single": 1 / single_s, "qps_batch": len(queries) / batch_s}


def _keep_best(best, algo, i, row, meta, neighbors, k):
    """Fold one timing of ``algo``'s setting ``i`` into ``best`` (recall from its
    first timing, each speed the best so far) and print it."""
    import numpy as np
    from ..training.tuning import recall_at_k
    if (algo.name, i) not in best:
        row["recall"] = recall_at_k(np.asarray(row.pop("found")), neighbors, k)
        row.update(meta["methods"][algo.name])
        row.pop("tuning", None)
        best[algo.name, i] = row
    else:
        kept = best[algo.name, i]
        for speed in ("qps_single", "qps_batch"):
            kept[speed] = max(kept[speed], row[speed])
    kept = best[algo.name, i]
    print(f"  {algo.name:14} {json.dumps(row['setting']):48} recall {kept['recall']:.4f}  "
          f"single {row['qps_single']:9.0f} q/s  batch {row['qps_batch']:9.0f} q/s",
          file=sys.stderr)


def _methods(args, n, dim):
    from ..params import default_global_dim, default_n_clusters
    from .algorithms import (CppLorann, Exact, FaissHNSW, FaissIVFFlat, LorannWasm,
                             LorannWasmFloor, NumpyIVFFlat)
    c, g = default_n_clusters(n), default_global_dim(dim)
    ours = {"n_clusters": c, "global_dim": g, "rerank_dtype": args.rerank_dtype,
            "rerank_dims": args.rerank_dims}
    table = {
        "lorann_wasm": lambda: LorannWasm(**ours),
        "lorann_wasm-floor": lambda: LorannWasmFloor(**ours),
        "exact": Exact,
        "lorann-cpp": lambda: CppLorann(c, g),
        "faiss-ivf": lambda: FaissIVFFlat(c),
        "faiss-hnsw": FaissHNSW,
        "numpy-ivf": lambda: NumpyIVFFlat(c),
    }
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in table]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; expected some of {sorted(table)}")
    return [(m, table[m]()) for m in chosen]


def run_benchmark(args):
    pin_threads()  # (before anything imports NumPy: BLAS reads the variables at import)
    from .report import write_reports

    ds = _load(args)
    n, dim = ds.train.shape
    k = args.k
    queries = ds.queries
    single_q = queries[:args.single]
    print(f"{ds.name}: {n:,} x {dim} ({ds.distance}), {len(queries)} held-out queries, k={k}, "
          "single thread", file=sys.stderr)
    meta = {"dataset": ds.name, "n": n, "dim": dim, "distance": ds.distance,
            "queries": len(queries), "k": k, "methods": {}}
    fitted = []
    for key, algo in _methods(args, n, dim):
        if not algo.available():
            print(f"{algo.name}: not installed, skipped (pip install 'lorann_wasm[bench]')",
                  file=sys.stderr)
            continue
        t0 = time.perf_counter()
        try:
            algo.fit(ds.train, ds.distance)
        except Exception as exc:  # a peer may refuse the data (C++ LoRANN: d < 64)
            if key == "lorann_wasm":
                raise
            print(f"{algo.name}: cannot index this data, skipped: {exc}", file=sys.stderr)
            continue
        build_s = time.perf_counter() - t0
        nbytes = algo.index_bytes()
        meta["methods"][algo.name] = {"build_seconds": build_s, "index_bytes": nbytes}
        if key == "lorann_wasm":
            meta["methods"][algo.name]["tuning"] = algo.index.params.get("tuning")
        print(f"{algo.name}: built in {build_s:.1f}s, {nbytes / 1e6:.1f} MB", file=sys.stderr)
        fitted.append(algo)
    # Methods take turns setting by setting (their grids line up: the same
    # clusters x rerank settings for both LoRANNs), so a slow spell of the
    # machine, which lasts seconds, falls on the methods being compared alike;
    # odd runs reverse the order. Each setting keeps its best run.
    best = {}
    settings = [algo.settings() for algo in fitted]
    for run in range(args.runs):
        print(f"run {run + 1} of {args.runs}", file=sys.stderr)
        turns = list(zip(fitted, settings))[::-1 if run % 2 else 1]
        for i in range(max(map(len, settings), default=0)):
            for algo, grid in turns:
                if i < len(grid):
                    _keep_best(best, algo, i, _time_setting(algo, grid[i], queries, single_q, k),
                               meta, ds.neighbors, k)
    rows = list(best.values())
    out = args.out or os.path.join("results", ds.name)
    write_reports(out, meta, rows)
