"""Where a single query's time goes, natively and under Pyodide, stage by stage.

    python -m build_scripts.measure.profile_query [--dataset wordnet-minilm] [--setting 24x400]
        [--rerank-dtype int8] [--queries 300] [--no-pyodide]

Loads (building once, cached as ``bench_browser`` does) the data set's index,
times each stage of single searches (``lorann_wasm.bench.stages``) natively
and under the same Pyodide the browser worker runs (in Node, from the
verified offline runtime), and prints microseconds per query and the rate of
each stage's multiply-adds side by side. Best of five passes over the queries.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

from build_scripts.measure.bench_browser import cached_index, load_dataset  # noqa: E402
from lorann_wasm import LorannIndex  # noqa: E402
from lorann_wasm.bench.stages import stage_times  # noqa: E402
from lorann_wasm.site.runtime import ensure_assets  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Node: load the verified Pyodide and its NumPy, mount folders, run one Python file.
LOADER = """
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
const [folder, code, ...mounts] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(join(folder, "pyodide.mjs")).href);
const py = await loadPyodide({ indexURL: folder + "/", stdout: (line) => console.log(line) });
const wheel = readdirSync(folder).find((f) => f.startsWith("numpy-") && f.endsWith(".whl"));
await py.loadPackage(join(folder, wheel), { messageCallback: () => {} });
for (const dir of mounts) {
  py.FS.mkdirTree(dir);
  py.FS.mount(py.FS.filesystems.NODEFS, { root: dir }, dir);
}
py.runPython(readFileSync(code, "utf8"));
"""

IN_PYODIDE = """
import json, sys
sys.path.insert(0, {repo!r})
import numpy as np
from lorann_wasm import LorannIndex
from lorann_wasm.bench.stages import stage_times
rows = stage_times(LorannIndex.load({index!r}), np.load({queries!r}), {c}, {r})
print("STAGES " + json.dumps(rows))
"""


def in_pyodide(index_path, queries, c, r):
    """:func:`stage_times` under Pyodide in Node: its rows, or a reason it could not run."""
    if shutil.which("node") is None:
        return "node is not installed"
    folder = ensure_assets()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "queries.npy"), queries)
        with open(os.path.join(tmp, "loader.mjs"), "w") as f:
            f.write(LOADER)
        with open(os.path.join(tmp, "profile.py"), "w") as f:
            f.write(IN_PYODIDE.format(repo=REPO, index=index_path, c=c, r=r,
                                      queries=os.path.join(tmp, "queries.npy")))
        mounts = [REPO, tmp, os.path.dirname(index_path)]
        run = subprocess.run(["node", os.path.join(tmp, "loader.mjs"), folder,
                              os.path.join(tmp, "profile.py"), *mounts],
                             capture_output=True, text=True)
    for line in run.stdout.splitlines():
        if line.startswith("STAGES "):
            return json.loads(line[len("STAGES "):])
    tail = (run.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return f"Pyodide run failed (exit {run.returncode}): {tail}"


def _rate(macs, us):
    """Billions of multiply-adds per second, or "-" for a stage without products."""
    return f"{macs / us / 1e3:.2f}" if macs else "-"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="wordnet-minilm")
    ap.add_argument("--setting", default="24x400", help="clusters x reranked")
    ap.add_argument("--rerank-dtype", default="int8", choices=("float32", "float16", "int8"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--no-pyodide", action="store_true", help="native timings only")
    args = ap.parse_args(argv)
    try:
        c, r = (int(v) for v in args.setting.split("x"))
    except ValueError:
        ap.error(f"--setting must look like 24x400, got {args.setting!r}")
    if args.queries < 1:
        ap.error("--queries must be >= 1")

    data, queries, _, distance = load_dataset(args.dataset, args.queries)
    queries = np.ascontiguousarray(queries[:args.queries], dtype=np.float32)
    index_path = cached_index(args.dataset, data, distance, {"rerank_dtype": args.rerank_dtype})
    native = stage_times(LorannIndex.load(index_path), queries, c, r)
    wasm = None if args.no_pyodide else in_pyodide(index_path, queries, c, r)
    if isinstance(wasm, str):
        print(f"profile-query: Pyodide skipped: {wasm}", file=sys.stderr)
        wasm = None

    print(f"\n{args.dataset}, {args.rerank_dtype} rerank vectors, {c} clusters, {r} reranked, "
          f"{len(queries)} single queries (us per query, best of 5 passes)")
    print(f"{'stage':<20} {'native us':>10} {'G MAC/s':>8}" + (
        f" {'Pyodide us':>11} {'G MAC/s':>8}" if wasm else ""))
    for i, (name, us, macs) in enumerate(native):
        line = f"{name:<20} {us:>10.1f} {_rate(macs, us):>8}"
        if wasm:
            line += f" {wasm[i][1]:>11.1f} {_rate(macs, wasm[i][1]):>8}"
        print(line)
    stages = sum(us for name, us, _ in native[:-1])
    print(f"{'sum of stages':<20} {stages:>10.1f}" + (
        f" {'':>8} {sum(row[1] for row in wasm[:-1]):>11.1f}" if wasm else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
