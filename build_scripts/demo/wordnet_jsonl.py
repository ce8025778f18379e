"""Write every WordNet 3.0 synset as a JSON Lines collection for `lorann-wasm site`.

Usage: python -m build_scripts.demo.wordnet_jsonl OUT.jsonl
One record per synset: id, title (its lemmas), text (its gloss), pos and
lexname (lexicographer file). Title and text embed as the benchmark's
``wordnet-minilm`` texts do, so the two share the embedding cache.
"""

import argparse
import json
import os
import sys

from lorann_wasm.atomic import atomic_output
from lorann_wasm.bench.datasets import POS_NAMES, wordnet_synsets


def wordnet_documents(synsets):
    """The synsets as site records: lemmas as title, gloss as text, part of speech and
    lexicographer file as fields. ``title: text`` is the benchmark's ``synset_text``,
    so the site and the benchmark share embeddings."""
    return [{"id": s["id"], "title": ", ".join(s["lemmas"]), "text": s["gloss"],
             "pos": POS_NAMES[s["pos"]], "lexname": s["lexname"]} for s in synsets]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the .jsonl file to write")
    out = ap.parse_args(argv).out
    docs = wordnet_documents(wordnet_synsets())
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_output(out) as f:
        for doc in docs:
            f.write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
    print(f"wordnet-jsonl: {out}: {len(docs):,} synsets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
