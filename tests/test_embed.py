"""The NumPy MiniLM encoder against the reference (tokenizers + sentence-transformers)."""

import os

import numpy as np
import pytest

from lorann_wasm import LorannIndex
from lorann_wasm.embed.minilm import minilm_model_dir
from lorann_wasm.bench.datasets import synset_text, wordnet_synsets
from lorann_wasm.embed.minilm import MiniLM, erf, export_weights

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CRAFTED = [
    "", "   ", "Hello, world!", "HELLO WORLD", "don't stop—won't stop…", "“quoted” ‘text’ «guillemets»",
    "e-mail: someone@example.com, url: https://example.org/a_b?c=d&e=f#g", "3.14159 + 2.71828 = 5.85987",
    "1,000,000 dollars (USD) or €900,000", "Ångström, café, naïve, résumé, Zürich, São Paulo, Mötley Crüe",
    "ÉCOLE ÉLÉMENTAIRE", "Straße und Fluß", "日本語のテキストと English mixed", "中文分词测试", "한국어 문장입니다",
    "Ελληνικά γράμματα", "Русский текст с ёлкой", "العربية نص", "हिन्दी पाठ", "emoji 😀🎉👍 test",
    "tab\tseparated\tvalues", "new\nline\r\nendings", "zero\u200bwidth\u200djoiner", "control\x00char\x07s\x1b",
    "replacement \ufffd char", "combining e\u0301 and a\u0308", "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3, "xqzvbnmlkjh wqrtplkj zzzzzz", "C++ C# F# .NET",
    "#hashtag @mention $money %percent ^caret &amp *star", "a--b__c..d,,e;;f", "'''quotes'''",
    "(parentheses) [brackets] {braces} <angles>", "I.B.M. U.S.A. e.g. i.e.", "12:30pm 2024-10-24T10:00Z",
    "½ ¼ ¾ ² ³ µ ° ± × ÷", "ﬁ ligature ﬂ", "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ", "non\u00a0breaking\u2003spaces",
    "dog, domestic dog, Canis familiaris: a member of the genus Canis",
]


def _random_strings(n, seed=0):
    rng = np.random.default_rng(seed)
    pool = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.;:!?'\"-()[]/\\&%$#@")
    pool += list("éèêëàâäôöûüçñåøæœßÉÀÖÜ") + ["中", "文", "日", "本", "😀", "\t", "\u0301", "—", "…"]
    return ["".join(rng.choice(pool, rng.integers(1, 60))) for _ in range(n)]


@pytest.fixture(scope="module")
def model():
    return MiniLM.from_model_dir(minilm_model_dir())


@pytest.fixture(scope="module")
def reference():
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(minilm_model_dir(), device="cpu")


@pytest.fixture(scope="module")
def glosses():
    synsets = wordnet_synsets()
    pick = np.random.default_rng(1).choice(len(synsets), 300, replace=False)
    return [synset_text(synsets[i]) for i in pick]


def test_tokenizer_matches_reference_ids(model, reference, glosses):
    texts = CRAFTED + _random_strings(260) + glosses
    assert len(texts) >= 500
    mismatches = []
    for text in texts:
        want = reference.tokenizer(text, truncation=True, max_length=256)["input_ids"]
        if model.tokenizer.encode(text) != want:
            mismatches.append(text)
    assert mismatches == []


def test_long_text_is_truncated_like_the_reference(model, reference):
    text = " ".join(["word"] * 400)
    ids = model.tokenizer.encode(text)
    assert len(ids) == 256 and ids[0] == model.tokenizer.cls and ids[-1] == model.tokenizer.sep
    assert ids == reference.tokenizer(text, truncation=True, max_length=256)["input_ids"]


def test_erf_is_accurate():
    import math
    x = np.linspace(-6, 6, 2001, dtype=np.float32)
    want = np.array([math.erf(v) for v in x.astype(np.float64)])
    assert np.abs(erf(x.astype(np.float64)) - want).max() < 1.5e-7  # the approximation
    assert np.abs(erf(x) - want).max() < 5e-7  # plus float32 rounding


def test_embeddings_match_sentence_transformers(model, reference, glosses):
    texts = [t for t in CRAFTED if t.strip()][:40] + glosses[:200]
    ours = model.encode(texts)
    ref = reference.encode(texts, normalize_embeddings=True, batch_size=32)
    cos = np.sum(ours * ref, axis=1)
    assert len(texts) >= 200 and cos.min() >= 0.9999, cos.min()
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, rtol=1e-5)
    assert model.encode("a single string").shape == (384,)
    with pytest.raises(TypeError):
        model.encode(["fine", 3])


def test_int8_weights_small_and_faithful(model, glosses):
    """The browser's weights: the layers' matrices 7-bit with a float16 scale per 128
    values (they gzip smaller), the rest int8 a row; its query vectors keep cosine
    >= 0.995 to float32's and their top 10 the same ids on >= 95 % of places."""
    import gzip

    from lorann_wasm.format import safetensors_io

    blob = export_weights(model, "int8")
    assert len(blob) < 0.30 * 90_868_376  # model.safetensors is 90.9 MB of float32
    tensors, _ = safetensors_io.decode(blob)
    dense = tensors["encoder.layer.0.intermediate.dense.weight"]
    scale = tensors["encoder.layer.0.intermediate.dense.weight.scale"]
    assert dense.dtype == np.int8 and np.abs(dense).max() == 63
    assert scale.dtype == np.float16 and scale.shape == (1536, 384 // 128)
    assert tensors["embeddings.word_embeddings.weight.scale"].shape == (30522,)
    layers = b"".join(v.tobytes() for k, v in tensors.items()
                      if k.startswith("encoder.") and v.dtype == np.int8)
    assert len(gzip.compress(layers)) < 0.85 * len(layers)  # int8 a row: ~0.9
    small = MiniLM.from_bytes(blob)
    corpus = model.encode(glosses)
    index = LorannIndex(corpus, distance="ip", n_clusters=8, rank=16).build(target_recall=None)
    queries = [g.split(":")[0] for g in glosses[:100]]  # the lemmas as short queries
    full, int8 = model.encode(queries), small.encode(queries)
    assert np.sum(full * int8, axis=1).min() >= 0.995
    a = index.search(full, 10, clusters_to_search=8, points_to_rerank=300)
    b = index.search(int8, 10, clusters_to_search=8, points_to_rerank=300)
    assert np.mean([np.intersect1d(x, y).size / 10 for x, y in zip(a, b)]) >= 0.95
    f16 = MiniLM.from_bytes(export_weights(model, "float16"))
    assert np.sum(full * f16.encode(queries), axis=1).min() >= 0.9999


def test_word_piece_rows_split_off_and_read_when_needed(model, glosses):
    """A site's model keeps the rows of its frequent word pieces; a query's other rows
    come from the token-rows file (by Range in the page) and give the same vectors."""
    from lorann_wasm.embed.minilm import WORD_ROWS, split_token_rows
    blob = export_weights(model, "int8")
    whole = MiniLM.from_bytes(blob)
    head_ids = [0, 100, 101, 102, *range(1996, 3000)]
    small, rows = split_token_rows(blob, head_ids)
    width = 384 + 4
    assert len(rows) == len(model.tokenizer.vocab) * width and len(small) < len(blob) - 10e6
    part = MiniLM.from_bytes(small)
    texts = [g.split(":")[0] for g in glosses[:50]]
    missing = part.missing_tokens(texts)
    assert len(missing) and not np.isin(missing, head_ids).any()
    with pytest.raises(ValueError, match="not loaded"):
        part.encode(texts)
    part.add_token_rows(missing, b"".join(rows[i * width:(i + 1) * width] for i in missing))
    assert not len(part.missing_tokens(texts))
    assert np.array_equal(part.encode(texts), whole.encode(texts))
    full = MiniLM.from_bytes(small, tokens=rows)
    assert full.known_tokens is None and np.array_equal(full.w[WORD_ROWS], whole.w[WORD_ROWS])
    with pytest.raises(ValueError, match="token rows"):
        part.add_token_rows([5, 6], rows[:width])
    with pytest.raises(ValueError, match="token rows"):
        part.add_token_rows([10 ** 6], rows[:width])


def test_weights_file_is_validated(model):
    blob = bytearray(export_weights(model, "int8"))
    blob[len(blob) // 2] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        MiniLM.from_bytes(bytes(blob))
    index_file = LorannIndex(np.eye(40, dtype=np.float32), rank=4, n_clusters=2).build(
        target_recall=None).to_bytes()
    with pytest.raises(ValueError, match="not a lorann_wasm-minilm weights file"):
        MiniLM.from_bytes(index_file)


def test_long_texts_are_read_only_as_far_as_needed(model, reference, monkeypatch):
    from lorann_wasm.embed import tokenizer as tk

    rng = np.random.default_rng(7)
    words = _random_strings(400, seed=3) + ["\u00e9\u0301", "a\tb", "x\r\ny"]
    # texts of every length around the window, cut in the middle of words and marks
    for n in (50, 300, 900, 2000):
        text = " ".join(rng.choice(words, n))
        want = reference.tokenizer(text, truncation=True, max_length=256)["input_ids"]
        assert model.tokenizer.encode(text) == want
    monkeypatch.setattr(tk, "WINDOW_CHARS", 37)  # many windows: still the same ids
    text = " ".join(rng.choice(words, 300))
    assert model.tokenizer.encode(text) == reference.tokenizer(
        text, truncation=True, max_length=256)["input_ids"]
    monkeypatch.undo()
    read = []
    real = model.tokenizer.basic_tokens
    monkeypatch.setattr(model.tokenizer, "basic_tokens", lambda t: read.append(len(t)) or real(t))
    megabyte = "the quick brown fox jumps over the lazy dog " * 25_000
    assert len(model.tokenizer.encode(megabyte)) == 256
    assert sum(read) <= 2 * tk.WINDOW_CHARS  # not the whole megabyte


def test_encoders_refuse_what_is_not_text(model):
    with pytest.raises(TypeError, match="str"):
        model.tokenizer.encode(["a list"])
    with pytest.raises(TypeError, match="list of str"):
        model.encode({"a": 1})
    with pytest.raises(TypeError, match="strings"):
        model.encode(["ok", 3])


def test_torch_encoder_matches_the_reference(model, reference, glosses):
    """The optional PyTorch encoder (bfloat16 products where the CPU has them) keeps
    cosine >= 0.999 to sentence-transformers, on short glosses and 200-token passages."""
    from lorann_wasm.embed.torch_encoder import TorchMiniLM
    torch_model = TorchMiniLM(minilm_model_dir())
    long = [" ".join(glosses[i:i + 12]) for i in range(0, 120, 12)]  # ~200 word pieces each
    texts = glosses[:150] + long
    assert max(len(model.tokenizer.encode(t)) for t in long) >= 180
    ours = torch_model.encode(texts)
    ref = reference.encode(texts, normalize_embeddings=True, batch_size=32)
    cos = np.sum(ours * ref, axis=1)
    assert cos.min() >= 0.999, (torch_model.precision, cos.min())
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, rtol=1e-5)


def test_batches_follow_length_within_a_token_budget():
    from lorann_wasm.embed.minilm import length_batches
    lengths = np.array([5, 200, 7, 30, 200, 6, 120, 3] * 40)
    batches = length_batches(lengths, budget=600, most=16)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))  # each text once
    assert (np.diff(lengths[flat]) >= 0).all()  # shortest first
    for rows in batches:
        assert len(rows) <= 16 and (len(rows) == 1 or len(rows) * lengths[rows].max() <= 600)


def test_embedding_reports_progress_and_a_summary(tmp_path, monkeypatch):
    """A long embedding says how far it is, how fast and how long is left, at least every
    REPORT_SECONDS; then what it did. Each finished unit is cached at once."""
    import io
    import time as _time

    from lorann_wasm.embed import parallel
    monkeypatch.setattr(parallel, "REPORT_SECONDS", 0.05)
    monkeypatch.setattr(parallel, "UNIT_TEXTS", 8)
    monkeypatch.setattr(parallel, "cache_name", lambda name: "fake")
    monkeypatch.setattr(parallel, "check_encoder", lambda name: name)

    def slow(name, texts, threads=None):
        _time.sleep(0.12)
        return np.array([[len(t), 1.0] for t in texts], np.float32)

    monkeypatch.setattr(parallel, "encode_unit", slow)
    texts = [f"text number {i}" for i in range(40)]
    out = io.StringIO()
    vectors = parallel.embed_collection(texts, "fake", cache_dir=tmp_path, workers=1,
                                        stream=out)
    assert vectors[:, 0].tolist() == [len(t) for t in texts]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("embedding: 40 passages to embed") and "0 from the cache" in lines[0]
    updates = [line for line in lines if " of 40 passages (" in line]
    assert len(updates) >= 5  # 5 units of 0.12 s, a line due every 0.05 s
    assert any("passages/s, about" in line and "left" in line for line in updates)
    assert lines[-1].startswith("embedding: embedded 40 passages in") and \
        lines[-1].endswith("0 came from the cache")
    again = io.StringIO()  # a second run finds everything cached: no work, no lines
    parallel.embed_collection(texts + texts[:3], "fake", cache_dir=tmp_path, stream=again)
    assert again.getvalue() == ""
    assert len(os.listdir(tmp_path / "fake")) == 5  # one cache file per unit
