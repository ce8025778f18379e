"""Write every WordNet 3.0 synset as a JSON Lines collection for `lorann-wasm site`.

Usage: python -m build_scripts.wordnet_jsonl OUT.jsonl
One record per synset: id, title (its lemmas), text (its gloss), pos and
lexname (lexicographer file). Title and text embed as the benchmark's
``wordnet-minilm`` texts do, so the two share the embedding cache.
"""

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
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    docs = wordnet_documents(wordnet_synsets())
    os.makedirs(os.path.dirname(os.path.abspath(argv[0])), exist_ok=True)
    with atomic_output(argv[0]) as f:
        for doc in docs:
            f.write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
    print(f"wordnet-jsonl: {argv[0]}: {len(docs):,} synsets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
