"""The ``lorann-wasm`` command: build, search, info, bench.

Every failure ends with one ``lorann-wasm: error: ...`` line and a non-zero
exit code (2 for bad usage, 1 otherwise), never a traceback.
"""

import argparse
import contextlib
import inspect
import json
import os
import signal
import sys
import time

import numpy as np

from . import __version__
from .metrics import DISTANCES
from .params import INT8_SCALES, QUANTIZATION_BITS, RERANK_DTYPES, TARGET_RECALL, IndexParams

EXIT_USAGE, EXIT_ERROR = 2, 1


class CliError(Exception):
    """An error to report on one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"lorann-wasm: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


class _Bars:
    """A build reporter drawing one tqdm bar per stage (plain lines without tqdm)."""

    def __init__(self):
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self.tqdm, self.bars, self.t0 = tqdm, {}, time.perf_counter()

    def __call__(self, msg):
        line = f"[{time.perf_counter() - self.t0:6.1f}s] {msg}"
        if self.tqdm:
            self.tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def step(self, stage, done, total):
        if self.tqdm is None:
            if done == total:
                self(f"{stage}: done")
            return
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = self.tqdm(total=total, desc=stage, file=sys.stderr,
                                               leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self.bars[stage]
            self(f"{stage}: done")


def _recall(text):
    """A target recall in (0, 1] (validated as the library does)."""
    from .params import check_target_recall

    try:
        return check_target_recall(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a recall in (0, 1], got {text!r}") from None


def _megabytes(text):
    """A size in MB, from 0 to 1e12, as bytes (an int)."""
    try:
        mb = float(text)
    except ValueError:
        mb = -1.0
    if not 0 <= mb <= 1e12:  # (NaN fails too)
        raise argparse.ArgumentTypeError(f"expected a number of MB from 0 to 1e12, got {text!r}")
    return int(round(mb * 1e6))


def _recall_or_none(text):
    return None if text.lower() == "none" else _recall(text)


def _read(path, key="train", what="input"):
    from .io import read_vectors
    try:
        return read_vectors(path, key)
    except FileNotFoundError:
        raise CliError(f"{what} file {path} does not exist") from None


#: below this many vectors the CLI builds without a process pool by default:
#: starting worker processes costs more than the regressions they share
POOL_MIN_VECTORS = 100_000


@contextlib.contextmanager
def _dask_executor(address, what):
    """An executor on the Dask cluster whose scheduler is at ``address``."""
    try:
        from distributed import Client
    except ImportError:
        raise CliError("--dask-scheduler needs Dask (pip install 'lorann_wasm[dask]')") from None
    try:
        client = Client(address, timeout=30)
    except OSError as exc:
        raise CliError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        print(f"{what} on the Dask cluster at {address}", file=sys.stderr)
        yield client.get_executor()


@contextlib.contextmanager
def _executor(args, n):
    """The executor for the per-cluster regressions (None: in this process)."""
    if args.dask_scheduler:
        if args.workers is not None:
            raise CliError("give --workers or --dask-scheduler, not both")
        with _dask_executor(args.dask_scheduler, "regressions") as executor:
            yield executor
        return
    workers = args.workers
    if workers is None:
        workers = (os.cpu_count() or 1) if n >= POOL_MIN_VECTORS else 1
    if workers < 1:
        raise CliError(f"--workers must be >= 1, got {workers}")
    if workers == 1:
        yield None
        return
    from .training.parallel import process_pool
    print(f"regressions in a pool of {workers} worker processes", file=sys.stderr)
    with process_pool(workers) as pool:
        yield pool


def _attributes(args, n):
    """The --attributes file's columns, or None."""
    if not args.attributes:
        return None
    from .filtering.files import read_attributes
    try:
        return read_attributes(args.attributes, n)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None


#: help of each build option; its default and choices come from
#: IndexParams.for_data and params.py, so they are stated once
BUILD_HELP = {
    "distance": "the distance searched",
    "n_clusters": "IVF clusters (default: about sqrt(n), see the README)",
    "global_dim": "dimension of the global projection (default: from the data's)",
    "rank": "rank of each cluster's scorer",
    "train_size": "training points per cluster for each regression, as a multiple",
    "quantization_bits": "bits per value of each point's scorer row (4 halves what a lazy "
                         "query fetches per probed point, for a little recall)",
    "rerank_dtype": "how the rerank vectors are stored",
    "int8_scales": "int8 rerank vectors: a scale per dimension or per vector",
    "rerank_dims": "store rerank vectors along the data's top S principal directions "
                   "(fewer bytes per point; default: every dimension)",
    "seed": "random seed of the build",
}
_CHOICES = {"distance": DISTANCES, "rerank_dtype": RERANK_DTYPES, "int8_scales": INT8_SCALES,
            "quantization_bits": QUANTIZATION_BITS}


def _build_options(parser):
    """The options of :func:`IndexParams.for_data` (``--n-clusters`` ...), with its defaults."""
    signature = inspect.signature(IndexParams.for_data).parameters
    for name, text in BUILD_HELP.items():
        default = signature[name].default
        choices = _CHOICES.get(name)
        kind = dict(type=_number_or_none) if name == "quantization_bits" else (
            dict() if choices else dict(type=int))
        if choices:
            kind["choices"] = choices
        shown = "none" if default is None and choices else default
        metavar = {"rerank_dims": "S", "quantization_bits": "{8,4,none}"}.get(name)
        parser.add_argument("--" + name.replace("_", "-"), default=default, metavar=metavar,
                            help=text + (f" (default {shown})" if shown is not None else ""),
                            **kind)


def _number_or_none(text):
    return None if text == "none" else int(text) if text.isdigit() else text


def _build_kwargs(args):
    return {name: getattr(args, name) for name in BUILD_HELP}


def cmd_build(args):
    if args.out_of_core:
        return _build_out_of_core(args)
    from .index import LorannIndex

    data = _read(args.input, args.key)
    print(f"read {args.input}: {data.shape[0]:,} vectors x {data.shape[1]} dims", file=sys.stderr)
    training = _read(args.training_queries, what="training queries") if args.training_queries else None
    t0 = time.perf_counter()
    index = LorannIndex(data, attributes=_attributes(args, data.shape[0]), **_build_kwargs(args))
    with _executor(args, data.shape[0]) as executor:
        index.build(training_queries=training, verbose=_Bars(),
                    target_recall=args.target_recall, executor=executor)
    build_s = time.perf_counter() - t0
    index.save(args.output)
    _report_build(args, index.params, build_s)
    if index.params.get("tuning"):
        _report_tuning(index, args)


def _build_out_of_core(args):
    from .training.out_of_core import build_file
    from .training.sources import open_vectors

    def source(path, key, what):
        try:
            return open_vectors(path, key)
        except FileNotFoundError:
            raise CliError(f"{what} file {path} does not exist") from None

    data = source(args.input, args.key, "input")
    print(f"streaming {args.input}: {data.n:,} vectors x {data.d} dims", file=sys.stderr)
    training = (source(args.training_queries, "train", "training queries")
                if args.training_queries else None)
    if args.target_recall is not None:
        print("note: out-of-core builds are not auto-tuned; the search presets are the "
              "untuned defaults", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        with _executor(args, data.n) as executor:
            params = build_file(data, args.output, training_queries=training, executor=executor,
                                verbose=_Bars(), attributes=_attributes(args, data.n),
                                **_build_kwargs(args))
    finally:
        data.close()
    _report_build(args, params, time.perf_counter() - t0)


def _report_build(args, p, build_s):
    size = os.path.getsize(args.output)
    raw = p["n"] * p["dim"] * 4
    print(f"\nbuilt {args.output}: {p['n']:,} vectors, {p['n_clusters']} clusters, "
          f"global_dim {p['global_dim']}, rank {p['rank']}, rerank {p['rerank_dtype']}"
          + (f" along {p['rerank_dims']} of {p['dim']} directions" if p.get("rerank_dims") else ""))
    print(f"build time {build_s:.1f} s; file {size / 1e6:.1f} MB = {size / raw:.2f}x raw float32")
    print(f"default search: clusters_to_search={p['clusters_to_search']}, "
          f"points_to_rerank={p['points_to_rerank']}")
    if p.get("attributes"):
        print("attributes: " + ", ".join(f"{c['name']} ({c['kind']})" for c in p["attributes"]))


def _report_tuning(index, args):
    from .training.tuning import recall_at_k

    tuning = index.params["tuning"]
    held = None
    if os.path.splitext(args.input)[1].lower() in (".hdf5", ".h5"):
        try:
            held = (_read(args.input, "test"), _read(args.input, "neighbors"))
        except ValueError:
            held = None
    print(f"tuning on {tuning['queries']} held-out training queries (recall@{tuning['k']}):")
    header = "  target  clusters  rerank  tuned recall"
    print(header + ("  measured on held-out test queries" if held else ""))
    for target, c, r, rec in tuning["table"]:
        line = f"  {target:6.3f}  {c:8d}  {r:6d}  {rec:12.4f}"
        if held:
            found = index.search(held[0], tuning["k"], clusters_to_search=c, points_to_rerank=r)
            line += f"  {recall_at_k(found, held[1], tuning['k']):.4f}"
        print(line)


def cmd_search(args):
    from .index import LorannIndex

    if args.distances and not args.output:
        raise CliError("--distances needs -o (the ids file) too")
    index = LorannIndex.load(args.index)
    queries = _read(args.queries, args.key, what="queries")
    kw = {}
    if args.target_recall is not None:
        kw["target_recall"] = args.target_recall
    else:
        kw = {"clusters_to_search": args.clusters_to_search,
              "points_to_rerank": args.points_to_rerank}
    if args.where:
        try:
            kw["where"] = json.loads(args.where)
        except ValueError as exc:
            raise CliError(f"--where is not JSON: {exc}") from None
    if args.allow:
        try:
            kw["allow"] = np.load(args.allow, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CliError(f"--allow {args.allow}: {exc}") from None
    t0 = time.perf_counter()
    ids, dists = index.search(np.asarray(queries), args.k, return_distances=True, **kw)
    elapsed = time.perf_counter() - t0
    plan = index.last_plan
    if plan.filter is not None:
        print(f"filter: about {plan.passing:,.0f} of {index.n:,} points pass; path "
              f"{plan.path!r} ({'every passing point reranked' if plan.path == 'exact' else 'adaptive probing'})",
              file=sys.stderr)
    if args.output:
        np.save(args.output, ids)
        if args.distances:
            np.save(args.distances, dists)
        print(f"{len(ids)} queries in {elapsed:.2f} s ({len(ids) / elapsed:.0f} q/s); "
              f"ids written to {args.output}", file=sys.stderr)
    else:
        for row in ids:
            print(" ".join(map(str, row)))


def cmd_info(args):
    from .format.index_file import decode_index
    from .format.safetensors_io import decode

    with open(args.index, "rb") as f:
        buf = f.read()
    try:
        tensors, params = decode_index(buf)
        status = "ok"
    except ValueError as exc:
        raise CliError(f"{args.index}: {exc}") from None
    _, metadata = decode(buf)
    out = {"file": args.index, "bytes": len(buf), "format": metadata["format"],
           "format_version": int(metadata["format_version"]),
           "checksum": f"{metadata['checksum']} ({status})",
           "lazy_loading": "prefix_checksum" in metadata, "params": params.to_dict(),
           "arrays": {k: f"{v.dtype} {list(v.shape)} ({v.nbytes:,} bytes)"
                      for k, v in tensors.items()}}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['file']}: {out['bytes']:,} bytes, format {out['format']} v{out['format_version']}, "
          f"checksum {out['checksum']}")
    print("  lazy loading (HTTP Range): " + ("yes, prefix checksum present" if out["lazy_loading"]
                                             else "no: no prefix checksum (save it again)"))
    params = out["params"]
    tuning = params.pop("tuning", None)
    attributes = params.pop("attributes", None)
    for key, value in params.items():
        print(f"  {key:20} {value}")
    for col in attributes or ():
        values = col.get("values")
        print(f"  attribute {col['name']!r}: {col['kind']}" + (
            "" if values is None else f", {len(values)} values: "
            + ", ".join(values[:8]) + (", ..." if len(values) > 8 else "")))
    if tuning:
        print(f"  tuning (recall@{tuning['k']}, {tuning['queries']} queries): "
              + ", ".join(f"{t}->({c},{r})" for t, c, r, _ in tuning["table"]))
    print("arrays:")
    for name, desc in out["arrays"].items():
        print(f"  {name:20} {desc}")


def cmd_bench(args):
    from .bench.runner import run_benchmark
    run_benchmark(args)


def cmd_bench_filters(args):
    from .bench.filtered import run
    run(args)


def cmd_site(args):
    from .site.builder import build_site
    from .site.documents import Fields
    from .site.runtime import AssetError

    fields = Fields(text=args.text_field, title=args.title_field, url=args.url_field,
                    id=args.id_field, extra=tuple(args.field))
    if args.cache_dir:
        os.environ["LORANN_WASM_CACHE"] = os.path.abspath(args.cache_dir)
    if args.dask_scheduler and args.workers is not None:
        raise CliError("give --workers or --dask-scheduler, not both")
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be >= 1, got {args.workers}")
    dask = (_dask_executor(args.dask_scheduler, "embedding and regressions")
            if args.dask_scheduler else contextlib.nullcontext())
    from .site.explorer import parse_explorer
    try:
        explorer = parse_explorer(args.explorer_index, args.explorer_image)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        with dask as executor:
            build_site(args.inputs, args.output, fields=fields, html_root=args.html_root,
                       vectors=args.vectors, passage_tokens=args.passage_tokens,
                       whole=args.whole, title=args.title, target_recall=args.target_recall,
                       facets=args.facet_field, encoder=args.encoder, executor=executor,
                       workers=args.workers,
                       prefetch_limit=args.prefetch_limit,
                       explorer=explorer)
    except AssetError as exc:
        raise CliError(str(exc)) from None
    serve = args.output
    from .site.paths import inside
    if args.html_root and inside(args.output, args.html_root):
        serve = args.html_root  # the pages the results link to are served beside it
    print(f"Made {args.output}. Try it: lorann-wasm serve {serve}")


def cmd_serve(args):
    from .site.serve import run
    code = run(args)
    if code:
        sys.exit(code)


def _parallel_arguments(parser, work, threshold, same):
    """--workers and --dask-scheduler for ``work``."""
    parser.add_argument("--workers", type=int, default=None,
                        help=f"processes for {work} (default: one per CPU {threshold}, else "
                             f"1); {same} for any count")
    parser.add_argument("--dask-scheduler", metavar="ADDRESS",
                        help=f"run {work} on this Dask cluster (e.g. tcp://host:8786); {same} "
                             "as a local run")


def make_parser():
    ap = _Parser(prog="lorann-wasm", description="LoRANN approximate nearest-neighbour search: "
                 "build index files offline, search them here or in the browser.")
    ap.add_argument("--version", action="version", version=f"lorann-wasm {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("build", help="build an index file from vectors")
    b.add_argument("input", help=".npy, .fvecs, .bvecs or ann-benchmarks .hdf5")
    b.add_argument("-o", "--output", required=True, help="the .lorann file to write")
    b.add_argument("--key", default="train", help="HDF5 dataset holding the vectors (train)")
    _build_options(b)
    b.add_argument("--target-recall", type=_recall_or_none, default=TARGET_RECALL,
                   help=f"tune search parameters for this recall@10 (default {TARGET_RECALL}; "
                        "'none' skips)")
    b.add_argument("--training-queries", help="example queries (same formats)")
    _parallel_arguments(b, "the per-cluster regressions", f"from {POOL_MIN_VECTORS:,} vectors "
                        "up", "the same file")
    b.add_argument("--attributes", metavar="FILE",
                   help="filterable columns, row i for vector i: .jsonl, .csv or .npz "
                        "(search them with --where)")
    b.add_argument("--out-of-core", action="store_true",
                   help="stream the input (.npy, .hdf5, .fvecs) instead of loading it: "
                        "bounded memory, no auto-tuning")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("search", help="search an index with a file of queries")
    s.add_argument("index")
    s.add_argument("queries", help=".npy, .fvecs, .bvecs or .hdf5 (--key test)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--key", default="test", help="HDF5 dataset holding the queries (test)")
    s.add_argument("--clusters-to-search", type=int)
    s.add_argument("--points-to-rerank", type=int)
    s.add_argument("--target-recall", type=_recall)
    s.add_argument("--where", metavar="JSON", help='only points whose attributes pass, e.g. '
                   '\'{"pos": "verb", "year": {"gte": 2000}}\'')
    s.add_argument("--allow", metavar="IDS.npy", help="only these ids (int array or boolean mask)")
    s.add_argument("-o", "--output", help="write ids (int64, queries x k) to this .npy")
    s.add_argument("--distances", help="also write distances to this .npy (with -o)")
    s.set_defaults(func=cmd_search)

    i = sub.add_parser("info", help="describe and verify an index file")
    i.add_argument("index")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    t = sub.add_parser("site", help="make a static, offline-first semantic search site",
                       description="Make a static search site for a collection: JSONL or CSV "
                       "files, or folders of Markdown, text or built HTML pages. Documents are "
                       "cut into passages, embedded with MiniLM (cached per text) and indexed; "
                       "the site searches in the browser, lazily and offline.")
    t.add_argument("inputs", nargs="*", metavar="INPUT",
                   help=".jsonl, .csv, .md, .txt, .html files or folders of them")
    t.add_argument("-o", "--output", required=True, help="the site folder to write")
    t.add_argument("--html-root", help="the root of your built site (links are relative to "
                   "it; the default input when none is given)")
    t.add_argument("--text-field", default="text", help="JSONL/CSV field with the text (text)")
    t.add_argument("--title-field", default="title", help="... with the title (title)")
    t.add_argument("--url-field", default="url", help="... with the link (url)")
    t.add_argument("--id-field", default="id", help="... with the id (id)")
    t.add_argument("--field", action="append", default=[], metavar="NAME",
                   help="a further field shown with each result (repeatable)")
    t.add_argument("--facet-field", action="append", default=[], metavar="NAME",
                   help="a field (strings or lists of strings) to filter results by, offered "
                        "on the page (repeatable; shown with each result too). For folders "
                        "of pages, 'section' is a page's top folder")
    t.add_argument("--vectors", help=".npy of one embedding per document, instead of MiniLM "
                   "(the page then offers the vector API only)")
    t.add_argument("--passage-tokens", type=int, default=200,
                   help="longest passage, in word pieces (16-254; default 200)")
    t.add_argument("--whole", action="store_true",
                   help="the page downloads index and records whole (small collections)")
    t.add_argument("--title", help="the search page's title")
    t.add_argument("--target-recall", type=_recall, default=TARGET_RECALL,
                   help=f"tune the index for this recall@10 (default {TARGET_RECALL})")
    t.add_argument("--prefetch-limit", type=_megabytes, default="150", metavar="MB",
                   help="after its first answer the page downloads the rest of the index and "
                        "records for offline use when they take at most this many MB "
                        "(default 150; 0: never)")
    t.add_argument("--explorer-index", action="append", default=[], metavar="NAME=PATH[:TITLE]",
                   help="an index file (lorann-wasm build) for the site's vector explorer, "
                        "a page linked from the search page that queries it by item or by "
                        "vector (repeatable)")
    t.add_argument("--explorer-image", action="append", default=[], metavar="NAME=WxH",
                   help="the explorer draws the vectors of index NAME as W x H images")
    t.add_argument("--encoder", choices=("numpy", "torch"), default="numpy",
                   help="what embeds the passages: numpy (the reference, default) or torch "
                        "(the same model in PyTorch, if installed: 3-4x faster where the CPU "
                        "has bfloat16 products)")
    _parallel_arguments(t, "embedding (and the regressions, on Dask)",
                        "from 1,000 passages to embed up", "the same site")
    t.add_argument("--cache-dir", metavar="DIR",
                   help="where embeddings, the browser model and the Pyodide runtime are "
                        "cached (default: $LORANN_WASM_CACHE, else ~/.cache/lorann_wasm)")
    t.set_defaults(func=cmd_site)

    from .site.serve import add_arguments as serve_arguments
    v = sub.add_parser("serve", help="serve a site folder on 127.0.0.1 (MIME types, HTTP Range)")
    serve_arguments(v)
    v.set_defaults(func=cmd_serve)

    from .bench.runner import add_arguments
    add_arguments(sub.add_parser("bench", help="benchmark against exact search and peers"))
    sub.choices["bench"].set_defaults(func=cmd_bench)
    from .bench.filtered import add_arguments as filter_arguments
    filter_arguments(sub.add_parser("bench-filters", help="benchmark filtered search at "
                                    "every selectivity against exact filtered search"))
    sub.choices["bench-filters"].set_defaults(func=cmd_bench_filters)
    return ap


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that temporary files are removed and
    worker processes stopped, as for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv=None):
    args = make_parser().parse_args(argv)
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        args.func(args)
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"lorann-wasm: {what}; no output was written or changed", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except (CliError, ValueError, TypeError, OSError, RuntimeError) as exc:
        msg = str(exc) if not isinstance(exc, OSError) or not exc.filename else \
            f"{exc.filename}: {exc.strerror}"
        print(f"lorann-wasm: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
