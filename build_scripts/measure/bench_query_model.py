"""The browser's MiniLM against float32 MiniLM on short queries: what quantising it costs.

Usage: python -m build_scripts.measure.bench_query_model [--site SITE]
[--queries wordnet|python|both] [--glosses 1000] [--passages 1000]

Queries: the demo's (``measure_demo``'s WordNet and Python lists), WordNet
glosses and Python-docs passages cut to their first 3-11 words. Each is
embedded by the float32 model (the reference; it matches
sentence-transformers to cosine 0.9999) and by the model a site ships
(the int8 export of ``site/bundle.py``, or ``--site``'s own). Printed: the
least, 1st-percentile and mean cosine between the two, and with ``--site``
how many of the site's top-10 ids the browser's vectors keep.
"""

import argparse
import json
import os

import numpy as np


def queries(kind, glosses, passages, seed=0):
    """The queries of ``kind`` ("wordnet", "python" or "both")."""
    from build_scripts.measure.bench_embedding import python_docs_passages, wordnet_glosses
    from build_scripts.measure.measure_demo import QUERIES

    rng = np.random.default_rng(seed)
    out = []
    if kind in ("wordnet", "both"):
        texts = [t.split(": ", 1)[-1] for t in wordnet_glosses(glosses, seed)]  # the gloss
        out += QUERIES["wordnet"] + [" ".join(t.split()[:int(rng.integers(3, 12))])
                                     for t in texts]
    if kind in ("python", "both"):
        out += QUERIES["python"] + [" ".join(t.split()[:int(rng.integers(3, 12))])
                                    for t in python_docs_passages(passages, seed)]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", help="a site made by lorann-wasm site: its model and index")
    ap.add_argument("--queries", choices=("wordnet", "python", "both"), default="both",
                    help="which queries: a site's own kind makes its top-10 figure meaningful")
    ap.add_argument("--glosses", type=int, default=1000)
    ap.add_argument("--passages", type=int, default=1000)
    args = ap.parse_args(argv)
    from lorann_wasm.embed.minilm import MiniLM, minilm_model_dir
    from lorann_wasm.site.bundle import browser_model, site_encoder
    from lorann_wasm.user_cache import user_cache

    texts = queries(args.queries, args.glosses, args.passages)
    reference = MiniLM.from_model_dir(minilm_model_dir()).encode(texts)
    if args.site:
        search = json.load(open(os.path.join(args.site, "site.json")))["search"]
        shipped = site_encoder(args.site, search)
    else:
        with open(browser_model(user_cache("models")), "rb") as f:
            shipped = MiniLM.from_bytes(f.read())
    vectors = shipped.encode(texts)
    cos = np.sum(vectors * reference, axis=1)
    print(f"{len(texts)} queries: cosine to float32 least {cos.min():.4f}, "
          f"1st percentile {np.percentile(cos, 1):.4f}, mean {cos.mean():.5f}")
    if args.site:
        from lorann_wasm import LorannIndex
        index = LorannIndex.load(os.path.join(args.site, search["index"]))
        want, got = index.search(reference, 10), index.search(vectors, 10)
        same = np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(want, got)])
        print(f"the site's top 10: {100 * same:.1f} % of the ids float32's vectors find")


if __name__ == "__main__":
    main()
