"""The same MiniLM forward pass in PyTorch, for building sites faster (CPython only).

Optional: used by ``lorann-wasm site --encoder torch`` when PyTorch is
installed; the browser and the default stay with :mod:`.minilm` (NumPy).
Tokenising, batching by length and mean pooling are :mod:`.minilm`'s, so
both encoders see the same inputs. On a CPU with native bfloat16 products
(AVX-512 BF16 or AMX: ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) the
matrix products run in bfloat16 with float32 accumulation and everything
else in float32; elsewhere in float32. Measured on 2 cores of an AMD EPYC
with AVX-512 BF16 against sentence-transformers (float32): cosine at
least 0.99997 on 256 Python-docs passages and 2,048 WordNet glosses.
"""

import json
import os

import numpy as np

from ..format import safetensors_io
from .minilm import length_batches, pad_batch
from .tokenizer import WordPieceTokenizer



def native_bfloat16():
    """Whether this CPU multiplies bfloat16 matrices natively (PyTorch's oneDNN check)."""
    import torch
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class TorchMiniLM:
    """``encode(texts) -> (n, 384)`` unit-length float32 embeddings, as :class:`.MiniLM`."""

    def __init__(self, folder, precision=None):
        import torch

        self.torch = torch
        with open(os.path.join(folder, "model.safetensors"), "rb") as f:
            tensors, _ = safetensors_io.decode(f.read(), require_checksum=False)
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        self.layers = cfg.get("num_hidden_layers", 6)
        self.heads = cfg.get("num_attention_heads", 12)
        self.eps = cfg.get("layer_norm_eps", 1e-12)
        self.w = {k.removeprefix("bert."): torch.from_numpy(np.array(v, dtype=np.float32))
                  for k, v in tensors.items() if not k.endswith("position_ids")}
        for i in range(self.layers):
            p = f"encoder.layer.{i}.attention.self."
            self.w[p + "qkv.weight"] = torch.cat([self.w[p + s + ".weight"]
                                                  for s in ("query", "key", "value")])
            self.w[p + "qkv.bias"] = torch.cat([self.w[p + s + ".bias"]
                                                for s in ("query", "key", "value")])
        self.tokenizer = WordPieceTokenizer(os.path.join(folder, "vocab.txt"))
        if precision is None:
            precision = "bfloat16" if native_bfloat16() else "float32"
        if precision not in ("bfloat16", "float32"):
            raise ValueError(f"precision must be 'bfloat16' or 'float32', got {precision!r}")
        self.precision = precision

    @property
    def key(self):
        """The embedding cache's name for this encoder's vectors."""
        return f"all-MiniLM-L6-v2-torch-{self.precision}"

    def _forward(self, ids, mask):
        torch = self.torch
        F = torch.nn.functional
        w = self.w
        b, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        hidden = x.shape[-1]

        def norm(h, name):
            return F.layer_norm(h, (hidden,), w[name + ".weight"], w[name + ".bias"], self.eps)

        def dense(h, name):
            return F.linear(h, w[name + ".weight"], w[name + ".bias"])

        x = norm(x, "embeddings.LayerNorm")
        bias = ((mask - 1.0) * 1e9)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            qkv = dense(x, p + "attention.self.qkv").view(b, length, 3, self.heads, -1)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
            context = context.transpose(1, 2).reshape(b, length, hidden)
            x = norm(x + dense(context, p + "attention.output.dense"),
                     p + "attention.output.LayerNorm")
            h = F.gelu(dense(x, p + "intermediate.dense"))
            x = norm(x + dense(h, p + "output.dense"), p + "output.LayerNorm")
        x = x.float()
        pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(pooled, dim=1, eps=1e-12)

    def embed_ids(self, batch):
        """Embeddings of a list of token-id lists (padded together), (b, hidden)."""
        torch = self.torch
        ids, mask = (torch.from_numpy(a) for a in pad_batch(batch))
        ids = ids.long()
        with torch.inference_mode(), torch.autocast(
                "cpu", dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            return self._forward(ids, mask).float().numpy()

    def encode(self, texts, progress=None):
        """Unit-length embeddings of a list of str: (n, hidden) float32."""
        tokens = [self.tokenizer.encode(t) for t in texts]
        out = np.empty((len(texts), self.w["embeddings.LayerNorm.weight"].shape[0]), np.float32)
        done = 0
        lengths = np.array([len(t) for t in tokens], dtype=np.intp)
        for rows in length_batches(lengths):
            out[rows] = self.embed_ids([tokens[i] for i in rows])
            done += len(rows)
            if progress:
                progress(done, len(texts))
        return out
