"""The worker's Python entry points, exercised with plain buffers in CPython."""

import json

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import LorannIndex
from lorann_wasm.bridge import Session


@pytest.fixture(scope="module")
def session_and_index():
    data = clustered(2000, 24, seed=9)
    index = LorannIndex(data, rank=8, distance="l2").build()
    session = Session()
    info = json.loads(session.load(memoryview(index.to_bytes())))
    assert info["n"] == 2000 and info["dim"] == 24 and info["bytes"] == len(index.to_bytes())
    return session, index, data


def test_search_matches_the_index(session_and_index):
    session, index, data = session_and_index
    q = data[:5] + 0.1
    ids, d = session.search(q.tobytes(), 5, 7, 0, 0)
    want_ids, want_d = index.search(q, 7, return_distances=True)
    assert ids.dtype == np.int32 and ids.shape == (35,)
    assert np.array_equal(ids.reshape(5, 7), want_ids) and np.array_equal(d.reshape(5, 7), want_d)
    one, _ = session.search(q[0].tobytes(), 1, 7, 3, 20)
    assert np.array_equal(one, index.search(q[0], 7, clusters_to_search=3, points_to_rerank=20))
    ex, _ = session.exact_search(q.tobytes(), 5, 7)
    assert np.array_equal(ex.reshape(5, 7), index.exact_search(q, 7))


def test_vectors_round_trip(session_and_index):
    session, _, data = session_and_index
    got = session.vectors(np.array([0, 17, 1999], np.int32).tobytes())
    np.testing.assert_array_equal(got.reshape(3, 24), data[[0, 17, 1999]])
    with pytest.raises(ValueError, match=r"ids must be in \[0, 2000\)"):
        session.vectors(np.array([2000], np.int32).tobytes())


def test_errors_are_value_errors(session_and_index):
    session, _, _ = session_and_index
    with pytest.raises(ValueError, match="dimension 23 but the index has dimension 24"):
        session.search(np.zeros(23, np.float32).tobytes(), 1, 5)
    with pytest.raises(ValueError, match="a batch of 2 queries cannot hold 5 values"):
        session.search(np.zeros(5, np.float32).tobytes(), 2, 5)
    with pytest.raises(ValueError, match="no index is loaded"):
        Session().search(np.zeros(24, np.float32).tobytes(), 1, 5)
    fresh = Session()
    with pytest.raises(ValueError, match="invalid index file"):
        fresh.load(b"garbage!" * 10)
    assert fresh.index is None


def test_text_search_through_the_bridge(session_and_index):
    from lorann_wasm.embed.minilm import MiniLM, export_weights
    from lorann_wasm.embed.minilm import minilm_model_dir

    model = MiniLM.from_model_dir(minilm_model_dir())
    data = model.encode(["a cat", "a dog", "a violin", "to sprint", "a house"] * 10)
    index = LorannIndex(data, rank=8, n_clusters=4, distance="ip").build(target_recall=None)
    session = Session()
    session.load(index.to_bytes())
    with pytest.raises(ValueError, match="no text encoder"):
        session.embed(json.dumps(["cat"]))
    info = json.loads(session.load_encoder(export_weights(model, "int8")))
    assert info["hidden_size"] == 384
    # the worker's text search: embed, then the same plan / finish as any search
    vector = session.embed(json.dumps(["a kitten"]))
    session.plan(vector.tobytes(), 1, 3)
    ids, dists = session.finish()
    assert ids.shape == (3,) and ids[0] % 5 == 0
    vecs = session.embed(json.dumps(["a cat", "a violin"])).reshape(2, 384)
    assert float(vecs[0] @ data[0]) > 0.99 and float(vecs[1] @ data[2]) > 0.99
    with pytest.raises(ValueError, match="JSON list of strings"):
        session.embed(json.dumps("a cat"))
    # a site's model: the word pieces beyond its head are asked for, then supplied
    from lorann_wasm.embed.minilm import split_token_rows
    small, rows = split_token_rows(export_weights(model, "int8"), [0, 100, 101, 102])
    info = json.loads(session.load_encoder(small))
    assert info["token_row_bytes"] == 388
    need = json.loads(session.token_ranges(json.dumps(["a violin"])))
    assert len(need["ids"]) == 2 and need["ranges"][0] == [need["ids"][0] * 388,
                                                          need["ids"][0] * 388 + 388]
    with pytest.raises(ValueError, match="not loaded"):
        session.embed(json.dumps(["a violin"]))
    session.add_tokens(json.dumps(need["ids"]), b"".join(rows[a:b] for a, b in need["ranges"]))
    assert np.allclose(session.embed(json.dumps(["a violin"])), vecs[1], atol=1e-6)
    session.add_tokens("all", rows)
    assert json.loads(session.token_ranges(json.dumps(["zygomorphic"]))) == {"ids": [], "ranges": []}
    with pytest.raises(ValueError, match="not a lorann_wasm-minilm weights file|invalid"):
        session.load_encoder(index.to_bytes())


def test_supply_takes_the_responses_back_to_back_in_one_buffer(tmp_path):
    """The worker hands a round's responses over in one buffer (one copy out of JS):
    the same answer as one buffer per range; a buffer of the wrong length is refused."""
    from lorann_wasm.bridge import Session
    from lorann_wasm.lazy import FileReader

    data = np.random.default_rng(2).standard_normal((3000, 24)).astype(np.float32)
    LorannIndex(data, rank=8, seed=1).build(target_recall=None).save(tmp_path / "i.lorann")
    raw = (tmp_path / "i.lorann").read_bytes()
    answers = []
    for joined in (False, True):
        session = Session()
        session.load_lazy(FileReader(str(tmp_path / "i.lorann")))
        need = json.loads(session.plan(data[:3].tobytes(), 3, 5))
        while need["ranges"]:
            parts = [raw[a:b] for a, b in need["ranges"]]
            need = json.loads(session.supply(b"".join(parts) if joined else parts))
        answers.append(session.finish()[0].tolist())
    assert answers[0] == answers[1] and len(answers[0]) == 15
    session = Session()
    session.load_lazy(FileReader(str(tmp_path / "i.lorann")))
    need = json.loads(session.plan(data[:1].tobytes(), 1, 5))
    with pytest.raises(ValueError, match="bytes"):
        session.supply(b"".join(raw[a:b] for a, b in need["ranges"]) + b"x")
    # the clusters that have come may go first (supply_part at a cut), the rest after
    need = json.loads(session.plan(data[:3].tobytes(), 3, 5))
    cut = need["cuts"][len(need["cuts"]) // 2]
    assert 0 < cut < len(need["ranges"]) and need["cuts"][-1] == len(need["ranges"])
    with pytest.raises(ValueError, match="bytes"):
        session.supply_part(cut, b"".join(raw[a:b] for a, b in need["ranges"][:cut]) + b"x")
    with pytest.raises(ValueError, match="are asked for"):
        session.supply_part(len(need["ranges"]) + 1, b"")
    session.supply_part(cut, b"".join(raw[a:b] for a, b in need["ranges"][:cut]))
    need = json.loads(session.supply(b"".join(raw[a:b] for a, b in need["ranges"][cut:])))
    while need["ranges"]:
        assert need["cuts"] == []  # the candidates' vectors come whole
        need = json.loads(session.supply(b"".join(raw[a:b] for a, b in need["ranges"])))
    assert session.finish()[0].tolist() == answers[0]
