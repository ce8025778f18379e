"""``lorann-wasm bench-filters DATASET``: filtered search at every selectivity.

One index with the data's own attributes (Fashion-MNIST: ``class``;
wordnet-minilm: ``pos`` and ``lexname``) plus ``rand``, integers 0..999 drawn
independently of the vectors, so ``rand < 500 / 100 / 10 / 1`` passes 50 %,
10 %, 1 % and 0.1 % of the points. For every filter, against exact filtered
ground truth (brute force over the passing rows' original vectors):
recall@k, single-query QPS and the paths taken; beside it the single-query
QPS of the unfiltered tuned default and of exact search over just the
passing rows (an :class:`.ExactIndex` of them, the best a user with the
rows already selected could do), and for a lazily loaded copy of the
index the bytes fetched per cold query, filtered and not. Single-threaded;
writes ``filters.json`` and ``filters.md`` to ``--out``.
"""

import json
import os
import sys
import tempfile
import time

FILTERS = {
    # every class (queries come from all classes: most are far from the passing points)
    "fashion-mnist": [(f"class = {name}", {"class": name}) for name in (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
        "Bag", "Ankle boot")] + [
        ("class in footwear", {"class": {"in": ["Sandal", "Sneaker", "Ankle boot"]}}),
    ],
    "wordnet-minilm": [
        ("pos = noun", {"pos": "noun"}),
        ("pos = verb", {"pos": "verb"}),
        ("pos = adverb", {"pos": "adverb"}),
        ("lexname = noun.animal", {"lexname": "noun.animal"}),
        ("lexname = verb.weather", {"lexname": "verb.weather"}),
        ("lexname = noun.motive", {"lexname": "noun.motive"}),
    ],
}
INDEPENDENT = [(f"rand < {t}", {"rand": {"lt": t}}) for t in (500, 100, 10, 1)]


def add_arguments(p):
    p.add_argument("dataset", choices=sorted(FILTERS))
    p.add_argument("--queries", type=int, default=1000, help="held-out queries (1000)")
    p.add_argument("--limit", type=int, help="index only the first N points (quick runs)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--rerank-dtype", default="float32", choices=("float32", "float16", "int8"))
    p.add_argument("--lazy-queries", type=int, default=100,
                   help="cold queries per filter through a lazily loaded copy (100; 0: skip)")
    p.add_argument("--out", help="output folder (default results/filters-DATASET)")


def _single(fn, queries):
    """Results of ``fn(q)`` for each query and the mean seconds per call."""
    start = time.perf_counter()
    out = [fn(q) for q in queries]
    return out, (time.perf_counter() - start) / len(queries)


def _recall(found, truth, k):
    hits = total = 0
    for f, t in zip(found, truth):
        t = t[t >= 0][:k]
        hits += len(set(f[f >= 0].tolist()) & set(t.tolist()))
        total += len(t)
    return hits / total if total else 1.0


def run(args):
    from .runner import pin_threads
    pin_threads()
    import numpy as np

    from ..exact import ExactIndex
    from ..index import LorannIndex
    from ..lazy import FileReader, LazyIndex
    from .datasets import load

    ds = load(args.dataset, n_queries=args.queries, limit=args.limit)
    n = len(ds.train)
    rng = np.random.default_rng(7)
    attributes = dict(ds.attributes, rand=rng.integers(0, 1000, n))
    filters = FILTERS[args.dataset] + INDEPENDENT
    k, queries = args.k, ds.queries
    print(f"{ds.name}: {n:,} x {ds.train.shape[1]}, {len(queries)} queries, k={k}, "
          "single thread", file=sys.stderr)
    t0 = time.perf_counter()
    index = LorannIndex(ds.train, attributes=attributes, distance=ds.distance,
                        rerank_dtype=args.rerank_dtype).build()
    build_s = time.perf_counter() - t0
    tuning = index.params.get("tuning") or {}
    print(f"built in {build_s:.1f} s (clusters_to_search={index.params['clusters_to_search']}, "
          f"points_to_rerank={index.params['points_to_rerank']}, filter_factors="
          f"{tuning.get('filter_factors', 'untuned')})", file=sys.stderr)
    plain, plain_s = _single(lambda q: index.search(q, k), queries)
    plain_recall = _recall(plain, ds.neighbors, k)
    lazy = None
    if args.lazy_queries:
        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "index.lorann")
        index.save(path)
        lazy = LazyIndex(FileReader(path), cache_bytes=0)  # every query cold
        lazy_q = queries[:args.lazy_queries]

    def cold_bytes(**filt):
        total = 0
        for q in lazy_q:
            lazy.search(q, k, **filt)
            total += lazy.last_fetch["bytes"]
        return total / len(lazy_q)

    base = {"label": "no filter", "passing": 1.0, "recall": plain_recall,
            "qps": 1 / plain_s, "paths": {"approximate": len(queries)}}
    if lazy is not None:
        base["lazy_bytes"] = cold_bytes()
    rows = [base]
    print(f"  {'no filter':26} recall {plain_recall:.4f}  {1 / plain_s:8.0f} q/s", file=sys.stderr)
    for label, where in filters:
        mask = _mask(index, where, n)
        rows_ok = np.flatnonzero(mask)
        exact = ExactIndex(ds.train[rows_ok], distance=ds.distance) if len(rows_ok) else None
        kk = min(k, len(rows_ok))
        truth = (rows_ok[exact.search(queries, kk)] if kk else
                 np.full((len(queries), 0), -1))
        paths = {}

        def filtered(q):
            ids = index.search(q, k, where=where)
            paths[index.last_plan.path] = paths.get(index.last_plan.path, 0) + 1
            return ids

        # the unfiltered baseline is timed again beside each filter: this machine's
        # speed drifts by tens of per cent over minutes
        plain_here = _single(lambda q: index.search(q, k), queries)[1]
        found, filt_s = _single(filtered, queries)
        exact_s = _single(lambda q: exact.search(q, kk), queries[:200])[1] if kk else 0.0
        bad = sum(int((~mask[f[f >= 0]]).sum()) for f in found)
        row = {"label": label, "where": where, "passing": float(mask.mean()),
               "recall": _recall(found, truth, k), "qps": 1 / filt_s,
               "qps_unfiltered_beside": 1 / plain_here,
               "qps_exact_passing": 1 / exact_s if exact_s else None,
               "paths": paths, "failing_returned": bad}
        if lazy is not None:
            row["lazy_bytes"] = cold_bytes(where=where)
        rows.append(row)
        print(f"  {label:26} {row['passing']:7.2%} recall {row['recall']:.4f}  "
              f"{row['qps']:8.0f} q/s ({row['qps'] * plain_here:.2f}x unfiltered)  "
              f"(exact over passing {row['qps_exact_passing'] or 0:8.0f} "
              f"q/s) {paths}" + (f"  lazy {row['lazy_bytes'] / 1e3:.0f} kB" if lazy else ""),
              file=sys.stderr)
    meta = {"dataset": ds.name, "n": n, "dim": int(ds.train.shape[1]), "k": k,
            "queries": len(queries), "build_seconds": build_s, "params": {
                key: index.params[key] for key in ("clusters_to_search", "points_to_rerank",
                                                    "n_clusters", "rank", "rerank_dtype")},
            "filter_factors": tuning.get("filter_factors")}
    out = args.out or os.path.join("results", f"filters-{ds.name}")
    _write(out, meta, rows)


def _mask(index, where, n):
    """Which points pass ``where``, computed by the index's own per-point test."""
    return index.stages.passing(where)


def _write(out, meta, rows):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "filters.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    base = rows[0]
    lines = [f"{meta['dataset']}: {meta['n']:,} points, {meta['queries']} queries, "
             f"k={meta['k']}, tuned default {meta['params']}, budget factors "
             f"{meta['filter_factors']}", "",
             "| filter | passing | recall@10 | single q/s | unfiltered q/s, timed beside | × "
             "unfiltered | exact over passing q/s | paths | lazy kB/query |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ex = r.get("qps_exact_passing")
        beside = r.get("qps_unfiltered_beside", base["qps"])
        lines.append(
            f"| {r['label']} | {r['passing']:.2%} | {r['recall']:.4f} | {r['qps']:,.0f} | "
            f"{beside:,.0f} | {r['qps'] / beside:.2f} | {'' if ex is None else f'{ex:,.0f}'} | "
            f"{', '.join(f'{p} {c}' for p, c in r['paths'].items())} | "
            f"{r.get('lazy_bytes', 0) / 1e3:,.0f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "filters.md"), "w") as f:
        f.write(text)
    print(text)
