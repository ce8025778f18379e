"""Lazy loading measured: bytes and latency per query, cold and warm, in Chromium.

    python -m build_scripts.measure.measure_lazy [--n 250000] [--dim 384] [--clusters 4]

Builds (once, cached) an index of seeded low-rank-mixture data with float32
rerank vectors (about 400 MB for the defaults), serves it from 127.0.0.1 and,
in headless Chromium without request interception, opens it lazily and runs
200 queries (cold), then the last 10 again (warm: their clusters are
cached); for comparison it also loads the whole file. The same lazy passes
run in CPython over the local file. Prints one JSON object and writes it to
``results/lazy/results.json``.
"""

import argparse
import json
import os
import statistics
import time

import numpy as np

from build_scripts.browser import chromium
from lorann_wasm.site.explorer import build_explorer_site
from lorann_wasm.site.runtime import default_cache
from lorann_wasm.site.serve import serve_in_background
from lorann_wasm.bench.datasets import low_rank_mixture
from lorann_wasm.lazy import FileReader, LazyIndex
from lorann_wasm.training.out_of_core import build_file

N_QUERIES = 200
WARM = 10
CACHE_BYTES = 96 << 20

RUN = """async ([url, count, warm, c, cacheBytes]) => {
  const q = new Float32Array(await (await fetch("indexes/big.queries.bin")).arrayBuffer());
  const engine = await window.LorannEngine.create({});
  const t0 = performance.now();
  const info = await engine.loadIndex(url, { lazy: true, cacheBytes });
  const openMs = performance.now() - t0;
  const dim = info.dim;
  const pass = async (from) => {
    const out = [];
    for (let i = from; i < count; i++) {
      const r = await engine.search(q.subarray(i * dim, (i + 1) * dim), 10, { clustersToSearch: c });
      out.push({ ms: r.ms, fetchMs: r.fetched.ms, bytes: r.fetched.bytes, requests: r.fetched.requests });
    }
    return out;
  };
  const firstStart = performance.now();
  const cold = await pass(0);
  const firstMs = cold[0].ms;
  const warmRuns = await pass(count - warm);
  engine.terminate();
  const whole = await window.LorannEngine.create({});
  const t1 = performance.now();
  await whole.loadIndex(url);
  const r = await whole.search(q.subarray(0, dim), 10, { clustersToSearch: c });
  const wholeFirstMs = performance.now() - t1;
  whole.terminate();
  return { info, openMs, firstMs, cold, warm: warmRuns, wholeFirstMs, wholeOk: r.ids.length };
}"""


def cached_index(n, dim):
    folder = os.path.join(default_cache(), "indexes")
    os.makedirs(folder, exist_ok=True)
    # "-rc": files with row checksums (a probed cluster's vectors fetched per candidate)
    path = os.path.join(folder, f"lazy-{n}x{dim}-rc.lorann")
    data = low_rank_mixture(n + N_QUERIES, dim, seed=41)
    if not os.path.exists(path):
        build_file(data[:n], path, distance="l2", n_clusters=int(round(1.4 * np.sqrt(n))),
                   verbose=True)
    return path, data[n:]


def summary(runs):
    ms = [r["ms"] for r in runs]
    return {"queries": len(runs), "mean_bytes": round(statistics.mean(r["bytes"] for r in runs)),
            "mean_requests": round(statistics.mean(r["requests"] for r in runs), 1),
            "median_ms": round(statistics.median(ms), 2),
            "median_network_ms": round(statistics.median(r.get("fetchMs", 0) for r in runs), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def cpython_passes(path, queries, clusters):
    lazy = LazyIndex(FileReader(path), cache_bytes=CACHE_BYTES)
    runs = []
    for i, q in enumerate(list(queries) + list(queries[-WARM:])):
        t = time.perf_counter()
        lazy.search(q, 10, clusters_to_search=clusters)
        runs.append({"ms": (time.perf_counter() - t) * 1000, "bytes": lazy.last_fetch["bytes"],
                     "requests": lazy.last_fetch["requests"]})
    return {"cold": summary(runs[:len(queries)]), "warm": summary(runs[len(queries):])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=250_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=4, help="clusters_to_search")
    ap.add_argument("--site", default="site-lazy")
    ap.add_argument("--out", default="results/lazy")
    args = ap.parse_args(argv)
    path, queries = cached_index(args.n, args.dim)
    size = os.path.getsize(path)
    build_explorer_site(args.site)
    target = os.path.join(args.site, "indexes")
    os.makedirs(target, exist_ok=True)
    os.link(path, os.path.join(target, "big.lorann"))
    queries.tofile(os.path.join(target, "big.queries.bin"))
    server, url = serve_in_background(args.site)
    try:
        with chromium() as browser:
            page = browser.new_context().new_page()
            page.goto(url + "bench.html")
            page.wait_for_function("window.LorannEngine !== undefined")
            got = page.evaluate(RUN, ["indexes/big.lorann", N_QUERIES, WARM, args.clusters,
                                      CACHE_BYTES])
    finally:
        server.shutdown()
    at_open = got["info"]["fetched"]["bytes"]
    first = at_open + got["cold"][0]["bytes"]
    result = {
        "file_bytes": size, "n": args.n, "dim": args.dim,
        "n_clusters": got["info"]["n_clusters"], "clusters_to_search": args.clusters,
        "cache_bytes": CACHE_BYTES,
        "browser": {
            "open_ms": round(got["openMs"], 1), "bytes_at_open": at_open,
            "first_query_bytes": first, "first_query_fraction": round(first / size, 5),
            "first_query_ms": round(got["firstMs"], 1),
            "cold": summary(got["cold"]), "warm": summary(got["warm"]),
            "whole_file_first_result_ms": round(got["wholeFirstMs"], 1),
        },
        "cpython_local_file": cpython_passes(path, queries, args.clusters),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
