"""Embedding throughput and fidelity: each encoder beside sentence-transformers, in one run.

Usage: python -m build_scripts.measure.bench_embedding [--long 256] [--short 2048] [--encoders numpy,torch]

Real passages: Python-docs passages of up to 200 word pieces (Debian
``python3-doc``, cut as ``lorann-wasm site`` cuts them) and WordNet glosses
(``wordnet-base``). Each encoder embeds the same texts; reported are
passages/s in this process (its default threads), passages/s of one worker
(one thread, as in a pool: BLAS limited by ``threadpoolctl``), and the cosine to sentence-transformers in float32 (the
reference). Pools of workers run one such worker per core.
"""

import argparse
import os
import sys
import time

import numpy as np


def python_docs_passages(limit, seed=0):
    from lorann_wasm.embed.minilm import minilm_model_dir
    from lorann_wasm.embed.tokenizer import WordPieceTokenizer
    from lorann_wasm.site.documents import read_folder
    from lorann_wasm.site.passages import split_documents

    root = "/usr/share/doc/python3/html"
    docs = [d for sub in ("tutorial", "howto", "library")
            for d in read_folder(os.path.join(root, sub))]
    tokenizer = WordPieceTokenizer(os.path.join(minilm_model_dir(), "vocab.txt"))
    passages = [p.embed_text for p in split_documents(docs, tokenizer, 200)]
    pick = np.random.default_rng(seed).choice(len(passages), min(limit, len(passages)),
                                              replace=False)
    return [passages[i] for i in pick]


def wordnet_glosses(limit, seed=0):
    from lorann_wasm.bench.datasets import synset_text, wordnet_synsets
    synsets = wordnet_synsets()
    pick = np.random.default_rng(seed).choice(len(synsets), limit, replace=False)
    return [synset_text(synsets[i]) for i in pick]


def one_blas_thread():
    """NumPy's BLAS held to one thread, as in a pool worker (threadpoolctl)."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1)


def timed(encode, texts):
    encode(texts[:4])  # load and warm up
    t = time.perf_counter()
    vectors = encode(texts)
    return len(texts) / (time.perf_counter() - t), vectors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", type=int, default=256, help="Python-docs passages")
    ap.add_argument("--short", type=int, default=2048, help="WordNet glosses")
    ap.add_argument("--encoders", default="numpy,torch")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from lorann_wasm.embed.encoders import encode_unit, load_encoder
    from lorann_wasm.embed.minilm import minilm_model_dir

    sets = {"long": python_docs_passages(args.long), "short": wordnet_glosses(args.short)}
    reference = SentenceTransformer(minilm_model_dir(), device="cpu")
    rows = []
    truth = {}
    for name, texts in sets.items():
        rate, truth[name] = timed(lambda t: reference.encode(
            t, batch_size=64, normalize_embeddings=True), texts)
        rows.append(("sentence-transformers (float32)", name, rate, None, 1.0))
    import torch
    threads = torch.get_num_threads()
    for encoder in args.encoders.split(","):
        model = load_encoder(encoder)
        label = encoder + (f" ({model.precision})" if hasattr(model, "precision") else "")
        for name, texts in sets.items():
            torch.set_num_threads(threads)
            rate, vectors = timed(model.encode, texts)
            with one_blas_thread():
                one, _ = timed(lambda t: encode_unit(encoder, t, threads=1), texts)
            cos = float(np.sum(vectors * truth[name], axis=1).min())
            rows.append((label, name, rate, one, cos))
    torch.set_num_threads(threads)
    print(f"{os.cpu_count()} CPUs; {len(sets['long'])} Python-docs passages (long), "
          f"{len(sets['short'])} WordNet glosses (short)")
    print(f"{'encoder':34} {'texts':6} {'passages/s':>11} {'one thread':>11} {'min cosine':>11}")
    for label, name, rate, one, cos in rows:
        print(f"{label:34} {name:6} {rate:11.1f} {'' if one is None else f'{one:.1f}':>11} "
              f"{cos:11.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
