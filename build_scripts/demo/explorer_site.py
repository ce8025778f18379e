"""The demo's extra pages: the vector explorer and the benchmark page, with their indexes.

Usage:
  python -m build_scripts.demo.explorer_site --into SITE [--explorer] [--index NAME=PATH[:TITLE]]...
  python -m build_scripts.demo.explorer_site --out SITE  [--explorer] [--index NAME=PATH[:TITLE]]...

``--into`` adds them to a site made by ``lorann-wasm site`` (the demo's
WordNet search), linked from its page; ``--out`` makes a site of just these
pages. ``--explorer`` builds (or reuses from the cache) the Fashion-MNIST
index: 60,000 images, l2, int8 rerank vectors.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys

from lorann_wasm.site.builder import finish_manifest
from lorann_wasm.site.bundle import package_wheel, web_folder
from lorann_wasm.site.runtime import AssetError, copy_runtime
from lorann_wasm.user_cache import user_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: the explorer's and benchmark's pages, on top of the search site's engine
EXTRA_PAGES = ("explorer.html", "explorer.js", "bench.html", "bench.js", "engine.js",
               "worker.js", "records.js", "ranges.js", "style.css")


def code_fingerprint():
    """A short hash of the lorann_wasm sources: cached builds are keyed by it."""
    h = hashlib.sha256()
    pkg = os.path.join(ROOT, "lorann_wasm")
    for folder, _, files in sorted(os.walk(pkg)):
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()[:12]


def fashion_mnist_index():
    """Path of the cached Fashion-MNIST index (l2, int8), built on first use."""
    from build_scripts.datasets import fashion_mnist
    from lorann_wasm import LorannIndex

    path = user_cache("indexes", f"fashion-mnist-int8-{code_fingerprint()}.lorann")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print("build-site: building the Fashion-MNIST demo index (60,000 x 784)...",
              file=sys.stderr, flush=True)
        train, _ = fashion_mnist()
        LorannIndex(train, distance="l2", rerank_dtype="int8").build(verbose=True).save(path)
    return path


def add_index(site, name, path, title=None, preview=None):
    """Copy an index file into the site and describe it for the explorer."""
    from lorann_wasm import LorannIndex

    index = LorannIndex.load(path)  # validates before we publish it
    os.makedirs(os.path.join(site, "indexes"), exist_ok=True)
    rel = f"indexes/{name}.lorann"
    shutil.copy(path, os.path.join(site, rel))
    p = index.params
    entry = {"name": name, "title": title or name, "file": rel, "bytes": os.path.getsize(path),
             "n": p["n"], "dim": p["dim"], "distance": p["distance"]}
    if preview:
        entry["preview"] = preview
    return entry


def _entries(site, indexes, explorer):
    entries = []
    if explorer:
        entries.append(add_index(site, "fashion-mnist", fashion_mnist_index(),
                                 "Fashion-MNIST (60,000 images, l2, int8)", preview=[28, 28]))
    for name, path, title in indexes:
        entries.append(add_index(site, name, path, title))
    return entries


def _write_json(path, data):
    with open(path + ".partial", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".partial", path)


def add_to_site(site, indexes=(), explorer=False):
    """Add the pages and indexes to a ``lorann-wasm site`` folder; site.json changes
    last, listing every file and with a new version (the service worker's cache
    then covers the added pages, and a redeploy replaces it)."""
    with open(os.path.join(site, "site.json")) as f:
        manifest = json.load(f)
    web = web_folder()
    for name in EXTRA_PAGES:
        shutil.copy(os.path.join(web, name), os.path.join(site, name))
    manifest["indexes"] = _entries(site, indexes, explorer)
    manifest["links"] = [{"href": "explorer.html", "text": "Vector explorer"}]
    finish_manifest(site, manifest)
    return manifest


def build_explorer_site(out, indexes=(), with_scipy=False, explorer=False):
    """A site of just the explorer and benchmark pages, assembled beside ``out`` and
    renamed into place; returns its manifest."""
    staging = out.rstrip("/") + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, "wheels"))
    web = web_folder()
    for name in EXTRA_PAGES:
        shutil.copy(os.path.join(web, name), os.path.join(staging, name))
    copy_runtime(os.path.join(staging, "pyodide"), with_scipy)
    wheel = package_wheel(os.path.join(staging, "wheels"))
    manifest = {"wheel": f"wheels/{wheel}", "indexes": _entries(staging, indexes, explorer)}
    _write_json(os.path.join(staging, "site.json"), manifest)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    return manifest


def _parse_index(spec):
    name, _, rest = spec.partition("=")
    path, _, title = rest.partition(":")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH[:TITLE], got {spec!r}")
    return name, path, title or None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--into", help="a site made by lorann-wasm site")
    where.add_argument("--out", help="a new site of just these pages")
    ap.add_argument("--index", type=_parse_index, action="append", default=[],
                    metavar="NAME=PATH[:TITLE]")
    ap.add_argument("--explorer", action="store_true",
                    help="include the Fashion-MNIST index for the vector explorer")
    ap.add_argument("--with-scipy", action="store_true", help="also ship SciPy + OpenBLAS (--out)")
    args = ap.parse_args(argv)
    try:
        if args.into:
            manifest = add_to_site(args.into, args.index, args.explorer)
        else:
            manifest = build_explorer_site(args.out, args.index, args.with_scipy, args.explorer)
    except (OSError, ValueError, AssetError) as exc:
        print(f"build-site: error: {exc}", file=sys.stderr)
        return 1
    print(f"build-site: {args.into or args.out}: {len(manifest['indexes'])} index(es) for the explorer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
