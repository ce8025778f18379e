"""Out-of-core build at scale: time and peak memory for millions of vectors.

    python -m build_scripts.measure.bench_build [--sizes 1000000,4000000] [--dims 128,384]
                                        [--modes 1,2,dask] [--out results/build-scale]

For each size and dimension, seeded synthetic data (a Gaussian mixture) is
written once to a ``.npy`` file in the cache, then ``lorann-wasm build
--out-of-core`` runs in a subprocess with 1 or 2 worker processes or on a
local Dask cluster (2 workers x 1 thread). Peak memory is sampled every
50 ms as the summed RSS of the build process, its children and the Dask
workers; the build process's own peak is the kernel's high-water mark (VmHWM),
polled while it runs. (Not ru_maxrss: on Linux a child inherits its parent's
peak across fork and exec.)
Writes ``results.json`` and ``table.md``.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

from lorann_wasm.params import IndexParams
from lorann_wasm.training.out_of_core import memory_bound

from lorann_wasm.site.runtime import default_cache as cache_dir

MB = 2 ** 20


def synthetic(n, d, seed=0):
    """A cached (n, d) float32 .npy of a 1,000-component Gaussian mixture."""
    path = os.path.join(cache_dir(), "scale", f"mixture-{n}x{d}-seed{seed}.npy")
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, d)).astype(np.float32) * 2
    tmp = path + ".part"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
    step = 1 << 16
    for s in range(0, n, step):
        m = min(step, n - s)
        out[s:s + m] = centers[rng.integers(0, 1000, m)] + rng.standard_normal((m, d), np.float32)
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def _rss(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _hwm(pid):
    """The kernel's peak RSS (VmHWM) of a live process, bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def run_build(path, out, mode, scheduler=None, dask_pids=(), distance="ip"):
    cmd = [sys.executable, "-m", "lorann_wasm", "build", path, "-o", out, "--out-of-core",
           "--rerank-dtype", "int8", "--distance", distance]
    cmd += ["--dask-scheduler", scheduler] if mode == "dask" else ["--workers", str(mode)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = {"tree": 0, "main": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["main"] = max(peak["main"], _hwm(proc.pid))
            total = _rss(proc.pid) + sum(_rss(c) for c in _children(proc.pid))
            total += sum(_rss(p) for p in dask_pids) if mode == "dask" else 0
            peak["tree"] = max(peak["tree"], total)
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout = proc.stdout.read()
    _, status, _ = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    if status != 0:
        raise RuntimeError(f"build failed ({status}): {' '.join(cmd)}\n{stdout}")
    proc.returncode = 0
    return {"seconds": round(seconds, 1), "main_peak_mb": round(peak["main"] / MB),
            "tree_peak_mb": round(peak["tree"] / MB), "file_mb": round(os.path.getsize(out) / MB, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000000,4000000")
    ap.add_argument("--dims", default="128,384")
    ap.add_argument("--modes", default="1,2,dask")
    ap.add_argument("--real", default="",
                    help="also real data sets, e.g. fashion-mnist,wordnet-minilm (recall@10 "
                         "with the default search settings is reported for them)")
    ap.add_argument("--out", default="results/build-scale")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    modes = [m if m == "dask" else int(m) for m in args.modes.split(",")]
    cluster = client = None
    dask_pids = []
    if "dask" in modes:
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        dask_pids = list(client.run(os.getpid).values())
    rows = []
    json_path = os.path.join(args.out, "results.json")
    jobs = [(n, d, None) for n in [int(s) for s in args.sizes.split(",") if s]
            for d in [int(s) for s in args.dims.split(",")]]
    jobs += [(None, None, name) for name in args.real.split(",") if name]
    try:
        for n, d, name in jobs:
            if name:
                from lorann_wasm import LorannIndex
                from lorann_wasm.bench.datasets import load
                from lorann_wasm.training.tuning import recall_at_k
                ds = load(name)
                path = os.path.join(cache_dir(), "scale", f"{name}.npy")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                np.save(path, ds.train)
                n, d = ds.train.shape
                distance = ds.distance
            else:
                path, distance = synthetic(n, d), "ip"
            bound, parts = memory_bound(n, d, IndexParams.for_data(n, d, rerank_dtype="int8"))
            for mode in modes:
                out = os.path.join(cache_dir(), "scale", f"index-{n}x{d}.lorann")
                result = run_build(path, out, mode, cluster.scheduler_address if cluster else None,
                                   dask_pids, distance)
                row = {"data": name or "synthetic", "n": n, "d": d, "mode": mode,
                       "data_mb": round(n * d * 4 / MB), "bound_mb": round(bound / MB), **result}
                if name:
                    found = LorannIndex.load(out).search(ds.queries, 10)
                    row["recall@10"] = round(recall_at_k(found, ds.neighbors, 10), 4)
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(json_path, "w") as f:
                    json.dump(rows, f, indent=1)
                os.unlink(out)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    lines = ["| data | n | d | data MB | executor | build s | peak RSS, build process MB | "
             "peak RSS incl. workers MB | stated bound MB | file MB | recall@10 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mode = "Dask (2 x 1 thread)" if r["mode"] == "dask" else f"{r['mode']} process" + \
            ("es" if r["mode"] != 1 else "")
        lines.append(f"| {r['data']} | {r['n']:,} | {r['d']} | {r['data_mb']:,} | {mode} | "
                     f"{r['seconds']} | {r['main_peak_mb']:,} | {r['tree_peak_mb']:,} | "
                     f"{r['bound_mb']:,} | {r['file_mb']:,} | {r.get('recall@10', '')} |")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
