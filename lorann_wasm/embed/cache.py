"""A resumable on-disk cache of embeddings, keyed by the SHA-256 of each text.

One folder per model; each finished chunk of work is one small safetensors
file (``keys``: n x 32 hash bytes, ``vectors``: n x dim float32) written
atomically, so an interrupted run keeps every chunk it finished and a rerun
after editing one document embeds only the texts that changed.
"""

import hashlib
import os
import re
import sys

import numpy as np

from ..atomic import atomic_output
from ..format import safetensors_io

#: texts embedded per cache file: small enough to lose little on an interrupt
CHUNK = 256
FORMAT_NAME = "lorann_wasm-embeddings"


def text_key(text):
    """The cache key of one text: its UTF-8 SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Embeddings of texts under ``folder/model_key``, computed at most once."""

    def __init__(self, folder, model_key):
        if not re.fullmatch(r"[A-Za-z0-9._-]+", model_key):
            raise ValueError(f"model_key must be a plain name, got {model_key!r}")
        self.folder = os.path.join(os.fspath(folder), model_key)
        self._rows = self._parts = None  # read on first use, then kept up to date
        self._count = 0

    def _shards(self):
        if not os.path.isdir(self.folder):
            return []
        return sorted(f for f in os.listdir(self.folder) if re.fullmatch(r"\d{6}\.safetensors", f))

    def _load(self):
        """``(row of each key, vectors)`` of every finished chunk (read once)."""
        if self._rows is None:
            self._rows, self._parts, self._count = {}, [], 0
            for name in self._shards():
                with open(os.path.join(self.folder, name), "rb") as f:
                    try:
                        tensors, meta = safetensors_io.decode(f.read())
                    except ValueError:
                        continue  # a damaged chunk is embedded again, not trusted
                keys, vectors = tensors.get("keys"), tensors.get("vectors")
                if (meta.get("format") != FORMAT_NAME or keys is None or vectors is None
                        or keys.shape != (len(vectors), 32)):
                    continue
                self._add([bytes(k) for k in keys], vectors)
        return self._rows, self._parts

    def _add(self, keys, vectors):
        self._rows.update((k, self._count + i) for i, k in enumerate(keys))
        self._parts.append(vectors)
        self._count += len(vectors)

    def _save(self, keys, vectors):
        self._load()
        os.makedirs(self.folder, exist_ok=True)
        shards = self._shards()
        number = int(shards[-1][:6]) + 1 if shards else 0
        vectors = np.ascontiguousarray(vectors, np.float32)
        tensors = [("keys", np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 32)),
                   ("vectors", vectors)]
        head, chunks = safetensors_io.encode(tensors, {"format": FORMAT_NAME})
        with atomic_output(os.path.join(self.folder, f"{number:06d}.safetensors")) as f:
            f.write(head)
            for chunk in chunks:
                f.write(chunk)
        self._add(list(keys), vectors)

    def missing(self, texts):
        """``(key, text)`` of each distinct text of ``texts`` not cached yet, in order."""
        rows, _ = self._load()
        todo = {}
        for text in texts:
            key = text_key(text)
            if key not in rows:
                todo.setdefault(key, text)
        return list(todo.items())

    def save(self, keys, vectors):
        """Cache ``vectors`` (n, dim) of the texts whose keys are ``keys``: one chunk file."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ValueError(f"the encoder gave {vectors.shape[0]} vectors for {len(keys)} texts")
        self._save(keys, vectors)

    def vectors(self, texts):
        """``(len(texts), dim)`` float32: the cached embedding of each text (all cached)."""
        rows, parts = self._load()
        if not texts:
            dim = parts[0].shape[1] if parts else 0
            return np.zeros((0, dim), np.float32)
        if len(parts) > 1:  # joined once, kept joined
            parts[:] = [np.concatenate(parts)]
        table = parts[0]
        try:
            where = np.fromiter((rows[text_key(t)] for t in texts), np.intp, len(texts))
        except KeyError:
            raise ValueError("a text is not in the embedding cache (was it changed "
                             "while this ran?); run again") from None
        return np.ascontiguousarray(table[where])

    def embed(self, texts, encode, progress=None):
        """``(len(texts), dim)`` float32 embeddings; only texts never seen are encoded.

        ``encode(list of str) -> (n, dim)`` computes missing ones, CHUNK texts
        at a time, each chunk saved before the next starts; ``progress(done,
        total)`` is told how many of the missing texts are done. (Many texts:
        :func:`.parallel.embed_collection` runs the chunks in parallel.)
        """
        missing = self.missing(texts)
        if progress:
            progress(0, len(missing))
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start:start + CHUNK]
            self.save([k for k, _ in chunk], encode([t for _, t in chunk]))
            if progress:
                progress(min(start + CHUNK, len(missing)), len(missing))
        return self.vectors(texts)
