"""The demo explorer's Fashion-MNIST index: 60,000 images, l2, int8 rerank vectors.

Usage: python -m build_scripts.demo.fashion_index
Builds the index the first time (cached by the library's code) and prints its
path, for ``lorann-wasm site --explorer-index fashion-mnist=PATH``.
"""

import hashlib
import os
import sys

from lorann_wasm.user_cache import user_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    from lorann_wasm import LorannIndex
    from lorann_wasm.bench.datasets import fashion_mnist

    path = user_cache("indexes", f"fashion-mnist-int8-{code_fingerprint()}.lorann")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print("fashion-index: building the Fashion-MNIST demo index (60,000 x 784)...",
              file=sys.stderr, flush=True)
        train, _ = fashion_mnist()
        LorannIndex(train, distance="l2", rerank_dtype="int8").build(verbose=True).save(path)
    return path


if __name__ == "__main__":
    print(fashion_mnist_index())
