"""Browser benchmark: LoRANN vs exact search under Pyodide in headless Chromium.

Builds (or reuses) an index, assembles a site with it plus held-out queries
and their exact neighbours, opens ``bench.html`` in a fresh (cold) browser
context and reports: time from page open to the first search result, bytes
transferred, and recall@10 with single-query and batch QPS for several search
settings and for exact search on the same index. Prints a table, writes JSON.

Single queries are timed in ``--runs`` passes and the fastest is reported
(as ``lorann-wasm bench`` keeps the best of its runs), with the first pass
beside it: that one also pays for V8 optimising the runtime's hot
WebAssembly, which the first few hundred queries after boot run slower for.

Usage: python -m build_scripts.measure.bench_browser [--dataset fashion-mnist]
       [--queries 1000] [--settings 8x100,6x50,16x200] [--runs 3] [--json out.json]
"""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

from build_scripts.browser import chromium, open_context
from lorann_wasm.site.explorer import build_explorer_site
from lorann_wasm.site.runtime import default_cache
from lorann_wasm.site.serve import serve_in_background

#: exact search over the stored vectors finds at least this share of the true
#: neighbours (int8 vectors: 0.99 on wordnet-minilm); less means the ground
#: truth belongs to other data
EXACT_RECALL_MIN = 0.9


def load_dataset(name, n_queries):
    """``(data, queries, neighbors, distance)`` for a named data set (held-out queries)."""
    from lorann_wasm.bench.datasets import NAMES, load
    if name not in NAMES:
        raise SystemExit(f"bench-browser: unknown dataset {name!r}; expected one of {NAMES}")
    ds = load(name, n_queries=n_queries)
    return ds.train, ds.queries, ds.neighbors, ds.distance


def cached_index(name, data, distance, kwargs):
    """Path of the index of ``data`` built with ``kwargs``, built on first use.

    Keyed by the data's own bytes, the build arguments and the package's code:
    the same data set with another number of held-out queries (which changes
    the indexed rows) never reuses a build whose ids mean other points."""
    from build_scripts.demo.fashion_index import code_fingerprint
    from lorann_wasm import LorannIndex

    data = np.ascontiguousarray(data)
    content = hashlib.blake2b(f"{data.shape} {data.dtype} {distance}".encode(), digest_size=6)
    content.update(data.data)
    tag = "-".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    path = os.path.join(default_cache(), "indexes",
                        f"bench-{name}-{tag}-{content.hexdigest()}-{code_fingerprint()}.lorann")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        LorannIndex(data, distance=distance, **kwargs).build(verbose=True).save(path)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=300, help="queries timed one at a time")
    ap.add_argument("--runs", type=int, default=3,
                    help="passes over the single queries; the fastest is reported, the first "
                         "(which also pays for the browser optimising the runtime) beside it")
    ap.add_argument("--settings", default="0x0,6x50,16x200",
                    help="clusters x rerank pairs; 0x0 = the index's defaults")
    ap.add_argument("--rerank-dtype", default="int8", choices=("float32", "float16", "int8"),
                    help="rerank vectors in the index file (int8: about 1/4 of the bytes)")
    ap.add_argument("--rerank-dims", type=int, metavar="S",
                    help="rerank vectors along the data's top S principal directions")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    data, queries, neighbors, distance = load_dataset(args.dataset, args.queries)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    print(f"bench-browser: {args.dataset}: {data.shape[0]} x {data.shape[1]}, "
          f"{len(queries)} held-out queries, {distance}", flush=True)
    build = {"rerank_dtype": args.rerank_dtype}
    if args.rerank_dims:
        build["rerank_dims"] = args.rerank_dims
    index_path = cached_index(args.dataset, data, distance, build)
    truth = np.ascontiguousarray(neighbors[:, :10], dtype=np.int32)

    site = os.path.join(default_cache(), "bench-site")
    build_explorer_site(site, [("bench", index_path, args.dataset)])
    queries.tofile(os.path.join(site, "indexes", "bench.queries.bin"))
    truth.tofile(os.path.join(site, "indexes", "bench.truth.bin"))
    server, url = serve_in_background(site)
    os.environ["LORANN_SERVE_QUIET"] = "1"
    query = (f"bench.html?index=indexes/bench.lorann&queries=indexes/bench.queries.bin"
             f"&truth=indexes/bench.truth.bin&count={len(queries)}&k=10"
             f"&single={args.single}&runs={args.runs}&settings={args.settings}&exact=50")
    transferred = []
    with chromium() as browser:
        context, guard = open_context(browser, url)
        context.on("requestfinished",
                   lambda r: transferred.append((r.url, r.sizes()["responseBodySize"])))
        page = context.new_page()
        start = time.perf_counter()
        page.goto(url + query)
        page.wait_for_function("window.benchResult !== undefined", timeout=30 * 60 * 1000)
        result = page.evaluate("window.benchResult")
        wall = time.perf_counter() - start
        context.close()
    server.shutdown()
    if "error" in result:
        print(f"bench-browser: error in the page: {result['error']}", file=sys.stderr)
        return 1
    if guard.blocked:
        print(f"bench-browser: requests left localhost: {guard.blocked}", file=sys.stderr)
        return 1

    exact = next(r for r in result["rows"] if r["method"] == "exact")
    if exact["recall"] < EXACT_RECALL_MIN:
        print(f"bench-browser: exact search has recall@10 {exact['recall']:.3f} against the "
              f"ground truth: the truth does not describe this index ({index_path})",
              file=sys.stderr)
        return 1

    index_bytes = os.path.getsize(index_path)
    boot_bytes = sum(size for u, size in transferred
                     if "bench.queries" not in u and "bench.truth" not in u)
    print(f"\nChromium, Pyodide 0.27.7, {args.dataset}, k=10 (wall {wall:.0f}s)")
    print(f"cold time to first result: {result['timeToFirstResultMs'] / 1000:.2f} s; "
          f"bytes for page + runtime + index: {boot_bytes / 1e6:.1f} MB "
          f"(index file {index_bytes / 1e6:.1f} MB)")
    print(f"{'method':<8} {'clusters':>8} {'rerank':>6} {'recall@10':>9} {'single q/s':>10} "
          f"{'batch q/s':>10} {'x exact single':>14} {'x exact batch':>13} "
          f"{'single ms (in worker)':>21} {'first pass q/s':>14}")
    for r in result["rows"]:
        print(f"{r['method']:<8} {r.get('clustersToSearch', '-'):>8} {r.get('pointsToRerank', '-'):>6} "
              f"{r['recall']:>9.4f} {r['qpsSingle']:>10.1f} {r['qpsBatch']:>10.1f} "
              f"{r['qpsSingle'] / exact['qpsSingle']:>14.1f} {r['qpsBatch'] / exact['qpsBatch']:>13.1f} "
              + (f"{r['msSingle']:>14.2f} ({r['msSingleInWorker']:.2f}) "
                 f"{r['qpsSingleFirstPass']:>14.1f}" if "msSingle" in r else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": args.dataset, "index_bytes": index_bytes,
                       "bytes_transferred": boot_bytes, **result}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
