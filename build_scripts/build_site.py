"""Assemble the static site: pages, Pyodide, wheels and index files.

Usage:
  python -m build_scripts.build_site [--out site] [--index NAME=PATH[:TITLE]]... [--demo]

``--demo`` builds (or reuses from the cache) the demo index: Fashion-MNIST,
60,000 images, l2, int8 rerank vectors. The site is plain files: serve it
with ``python -m build_scripts.serve site`` or any static server.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

from build_scripts.pyodide_assets import CORE_FILES, default_cache, ensure_assets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(ROOT, "web")


def build_wheel(dest):
    """Build the lorann_wasm wheel into ``dest``; returns its file name."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp, ROOT],
                       check=True, stdout=subprocess.DEVNULL)
        (wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
        name = os.path.basename(wheel)
        shutil.copy(wheel, os.path.join(dest, name))
    return name


def copy_pyodide(dest, with_scipy=False):
    """Copy the verified runtime; NumPy always, SciPy + OpenBLAS on request."""
    src = ensure_assets()
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(src, "pyodide-lock.json")) as f:
        lock = json.load(f)
    wanted = ["numpy"] + (["scipy", "openblas"] if with_scipy else [])
    for name in CORE_FILES + tuple(lock["packages"][p]["file_name"] for p in wanted):
        shutil.copy(os.path.join(src, name), os.path.join(dest, name))
    verify_copied(dest, lock, wanted)


def verify_copied(dest, lock, packages):
    from build_scripts.pyodide_assets import AssetError, sha256
    for pkg in packages:
        entry = lock["packages"][pkg]
        if sha256(os.path.join(dest, entry["file_name"])) != entry["sha256"]:
            raise AssetError(f"{entry['file_name']} changed while copying")


def code_fingerprint():
    """A short hash of the lorann_wasm sources: cached builds are keyed by it."""
    import hashlib
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

    path = os.path.join(default_cache(), "indexes", f"fashion-mnist-int8-{code_fingerprint()}.lorann")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print("build-site: building the Fashion-MNIST demo index (60,000 x 784)...",
              file=sys.stderr, flush=True)
        train, _ = fashion_mnist()
        LorannIndex(train, distance="l2", rerank_dtype="int8").build(verbose=True).save(path)
    return path


def cached_model(dtype="int8"):
    """Path of the exported MiniLM weights for the browser, made on first use."""
    from lorann_wasm.bench.datasets import minilm_model_dir
    from lorann_wasm.embed.minilm import MiniLM, export_weights

    path = os.path.join(default_cache(), "models", f"minilm-{dtype}-{code_fingerprint()}.safetensors")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = export_weights(MiniLM.from_model_dir(minilm_model_dir()), dtype)
        with open(path + ".partial", "wb") as f:
            f.write(data)
        os.replace(path + ".partial", path)
    return path


def wordnet_index():
    """``(index path, synsets)`` for every WordNet synset, embedded and indexed (cached)."""
    from lorann_wasm import LorannIndex
    from lorann_wasm.bench.datasets import wordnet_minilm

    vectors, synsets = wordnet_minilm()
    path = os.path.join(default_cache(), "indexes", f"wordnet-minilm-int8-{code_fingerprint()}.lorann")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print(f"build-site: indexing {len(vectors):,} WordNet definitions...", file=sys.stderr,
              flush=True)
        LorannIndex(vectors, distance="ip", rerank_dtype="int8").build(verbose=True).save(path)
    return path, synsets


def add_text_index(site, name, path, synsets, model_path, title):
    """Publish a text index: the index, one [pos, lemmas, gloss] row per id, the model."""
    entry = add_index(site, name, path, title)
    rows = [[s["pos"], ", ".join(s["lemmas"]), s["gloss"]] for s in synsets]
    if len(rows) != entry["n"]:
        raise ValueError(f"{len(rows)} texts for an index of {entry['n']} vectors")
    entry["texts"] = f"indexes/{name}.texts.json"
    with open(os.path.join(site, entry["texts"]), "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False, separators=(",", ":"))
    os.makedirs(os.path.join(site, "models"), exist_ok=True)
    entry["model"] = f"models/{name}-minilm.safetensors"
    shutil.copy(model_path, os.path.join(site, entry["model"]))
    entry["model_bytes"] = os.path.getsize(model_path)
    return entry


def add_index(site, name, path, title=None, preview=None):
    """Copy an index file into the site and describe it in the manifest."""
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


def build_site(out, indexes=(), demo=False, with_scipy=False, text_indexes=(), explorer=False):
    """Assemble ``out`` from scratch; returns the site manifest.

    ``demo``: the WordNet semantic-search index and model; ``explorer``: the
    Fashion-MNIST index for the vector explorer; ``indexes``: (name, path,
    title) of further index files; ``text_indexes``: (name, path, synsets,
    model path, title) of further text indexes.
    """
    staging = out.rstrip("/") + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, "wheels"))
    for name in os.listdir(WEB):
        shutil.copy(os.path.join(WEB, name), os.path.join(staging, name))
    copy_pyodide(os.path.join(staging, "pyodide"), with_scipy)
    wheel = build_wheel(os.path.join(staging, "wheels"))
    entries = []
    if demo:
        path, synsets = wordnet_index()
        entries.append(add_text_index(staging, "wordnet", path, synsets, cached_model(),
                                      f"WordNet 3.0 definitions ({len(synsets):,}, MiniLM, int8)"))
    for name, path, synsets, model_path, title in text_indexes:
        entries.append(add_text_index(staging, name, path, synsets, model_path, title))
    if explorer:
        entries.append(add_index(staging, "fashion-mnist", fashion_mnist_index(),
                                 "Fashion-MNIST (60,000 images, l2, int8)", preview=[28, 28]))
    for name, path, title in indexes:
        entries.append(add_index(staging, name, path, title))
    manifest = {"wheel": f"wheels/{wheel}", "indexes": entries}
    with open(os.path.join(staging, "site.json"), "w") as f:
        json.dump(manifest, f, indent=2)
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
    ap.add_argument("--out", default=os.path.join(ROOT, "site"))
    ap.add_argument("--index", type=_parse_index, action="append", default=[],
                    metavar="NAME=PATH[:TITLE]")
    ap.add_argument("--demo", action="store_true",
                    help="include the WordNet semantic-search demo (index, model, texts)")
    ap.add_argument("--explorer", action="store_true",
                    help="include the Fashion-MNIST index for the vector explorer")
    ap.add_argument("--with-scipy", action="store_true", help="also ship SciPy + OpenBLAS")
    args = ap.parse_args(argv)
    try:
        manifest = build_site(args.out, args.index, args.demo, args.with_scipy,
                              explorer=args.explorer)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"build-site: error: {exc}", file=sys.stderr)
        return 1
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    print(f"build-site: {args.out}: {len(manifest['indexes'])} index(es), "
          f"{total / 1e6:.1f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
