"""Filtered search: attribute columns, where/allow, both paths, lazy loading, the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import ExactIndex, LorannIndex
from lorann_wasm.filtering.columns import AttributeTable, check_columns
from lorann_wasm.lazy import FileReader, LazyIndex
from lorann_wasm.training.out_of_core import build_file

N, D = 4000, 24
DATA, QUERIES = np.split(clustered(N + 30, D, seed=21), [N])  # queries held out
RNG = np.random.default_rng(5)
YEAR = RNG.integers(1990, 2030, N)
SCORE = RNG.random(N)
CAT = np.array(["red", "green", "blue", "grey"])[RNG.integers(0, 4, N)]
FLAG = RNG.random(N) < 0.2
OPTIONAL = [None if i % 3 else "marked" for i in range(N)]
TAGS = [["x", "y", "z"][: i % 4] for i in range(N)]
ATTRIBUTES = {"year": YEAR, "score": SCORE, "cat": CAT, "flag": FLAG, "opt": OPTIONAL,
              "tags": TAGS}
HAS = {t: np.array([t in row for row in TAGS]) for t in "xyz"}

#: (where, the mask it means), covering every operator of every kind
CASES = [
    ({"year": 2000}, YEAR == 2000),
    ({"year": {"ne": 2000}}, YEAR != 2000),
    ({"year": {"in": [1991, 2011, 2029]}}, np.isin(YEAR, [1991, 2011, 2029])),
    ({"year": {"nin": [1991, 2011]}}, ~np.isin(YEAR, [1991, 2011])),
    ({"year": {"gte": 2000, "lt": 2004}}, (YEAR >= 2000) & (YEAR < 2004)),
    ({"year": {"gt": 2020, "lte": 2022}}, (YEAR > 2020) & (YEAR <= 2022)),
    ({"score": {"lt": 0.02}}, SCORE < 0.02),
    ({"score": {"gte": 0.5}, "cat": "red"}, (SCORE >= 0.5) & (CAT == "red")),
    ({"cat": "blue"}, CAT == "blue"),
    ({"cat": {"ne": "blue"}}, CAT != "blue"),
    ({"cat": {"in": ["red", "grey"]}}, np.isin(CAT, ["red", "grey"])),
    ({"cat": {"nin": ["red", "grey", "purple"]}}, ~np.isin(CAT, ["red", "grey"])),
    ({"cat": "purple"}, np.zeros(N, bool)),
    ({"flag": True}, FLAG),
    ({"flag": {"ne": True}}, ~FLAG),
    ({"opt": "marked"}, np.array([v == "marked" for v in OPTIONAL])),
    ({"opt": {"ne": "marked"}}, np.array([v != "marked" for v in OPTIONAL])),
    ({"tags": "y"}, HAS["y"]),
    ({"tags": {"any": ["x", "z"]}}, HAS["x"] | HAS["z"]),
    ({"tags": {"all": ["x", "z"]}}, HAS["x"] & HAS["z"]),
    ({"tags": {"all": ["x", "w"]}}, np.zeros(N, bool)),
    ({"tags": {"none": ["x"]}}, ~HAS["x"]),
    ({"tags": {"none": ["w"]}}, np.ones(N, bool)),
]


def exact_filtered(queries, mask, k, distance):
    """Ground truth: exact search over just the passing rows."""
    rows = np.flatnonzero(mask)
    kk = min(k, len(rows))
    if kk == 0:
        return np.full((len(queries), 0), -1)
    return rows[ExactIndex(DATA[rows], distance=distance).search(queries, kk)]


@pytest.fixture(scope="module", params=["l2", "ip"])
def index(request):
    return LorannIndex(DATA, attributes=ATTRIBUTES, distance=request.param, n_clusters=40,
                       rank=8, seed=1).build(tuning_queries=200)


@pytest.mark.parametrize("where,mask", CASES, ids=[json.dumps(w) for w, _ in CASES])
@pytest.mark.parametrize("path", ["exact", "filtered"])
def test_filtered_equals_exact_filtered_search(index, where, mask, path):
    """Probing every cluster and reranking every candidate, both paths are exact."""
    truth = exact_filtered(QUERIES, mask, 10, index.distance)
    ids = index.search(QUERIES, 10, where=where, filter_path=path, clusters_to_search=40,
                       points_to_rerank=N)
    for got, want in zip(ids, truth):
        assert got[got >= 0].tolist() == want.tolist()
    assert (ids[:, len(truth[0]):] == -1).all()  # fewer than k pass: padded


@pytest.mark.parametrize("where,mask", CASES, ids=[json.dumps(w) for w, _ in CASES])
def test_default_settings_never_return_a_failing_point(index, where, mask):
    ids = index.search(QUERIES, 10, where=where)
    found = ids[ids >= 0]
    assert mask[found].all()
    assert len(found) == len(QUERIES) * min(10, int(mask.sum()))  # k of them, if k pass
    assert index.last_plan.path in ("filtered", "exact", "approximate")


def test_default_settings_recall(index):
    """The tuned defaults reach the build's target on selective and broad filters."""
    for where, mask in [({"cat": "red"}, CAT == "red"), ({"year": {"lt": 1994}}, YEAR < 1994),
                        ({"tags": "x"}, HAS["x"])]:
        truth = exact_filtered(QUERIES, mask, 10, index.distance)
        ids = index.search(QUERIES, 10, where=where)
        hits = sum(len(set(g) & set(t)) for g, t in zip(ids.tolist(), truth.tolist()))
        assert hits / truth.size >= 0.9, where


def test_single_and_batch_agree(index):
    where = {"cat": {"in": ["red", "blue"]}, "year": {"gte": 2005}}
    batch = index.search(QUERIES, 10, where=where)
    for q, row in zip(QUERIES, batch):
        assert index.search(q, 10, where=where).tolist() == row.tolist()


def test_a_filter_passing_everything_is_unfiltered_search(index):
    plain = index.search(QUERIES, 10)
    for where in ({"year": {"gte": 1990}}, {"tags": {"none": ["w"]}}):
        assert (index.search(QUERIES, 10, where=where) == plain).all()
        assert index.last_plan.path == "approximate"
    assert (index.search(QUERIES, 10, allow=np.ones(N, bool)) == plain).all()


def test_a_filter_passing_nothing(index):
    ids, dists = index.search(QUERIES, 10, where={"cat": "purple"}, return_distances=True)
    assert (ids == -1).all() and np.isinf(dists).all()
    assert (index.search(QUERIES[0], 5, allow=[]) == -1).all()


def test_allow_lists(index):
    allowed = np.arange(0, N, 37)
    truth = exact_filtered(QUERIES, np.isin(np.arange(N), allowed), 10, index.distance)
    ids = index.search(QUERIES, 10, allow=allowed, clusters_to_search=40, points_to_rerank=N)
    assert ids.tolist() == truth.tolist()
    mask = np.zeros(N, bool)
    mask[allowed] = True
    assert (index.search(QUERIES, 10, allow=mask, clusters_to_search=40,
                         points_to_rerank=N) == ids).all()
    both = index.search(QUERIES, 10, allow=allowed, where={"cat": "red"})
    assert np.isin(both[both >= 0], allowed).all() and (CAT[both[both >= 0]] == "red").all()


@pytest.mark.parametrize("where,message", [
    ({"nope": 1}, "unknown attribute 'nope'; this index has: cat, flag, opt, score, tags, year"),
    ({"cat": 3}, "compares with strings"),
    ({"cat": {"gt": "a"}}, "unknown operator 'gt' for a string attribute"),
    ({"year": "x"}, "compares numbers"),
    ({"year": {"lt": float("nan")}}, "compares numbers"),
    ({"flag": 1}, "true or false"),
    ({"tags": {"any": "x"}}, "takes a list"),
    ({"year": {}}, "empty condition"),
])
def test_bad_filters_are_refused(index, where, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        index.search(QUERIES[0], where=where)


def test_bad_allow_lists_are_refused(index):
    with pytest.raises(TypeError, match="where must be a dict"):
        index.search(QUERIES[0], where=["cat"])
    with pytest.raises(ValueError, match="outside"):
        index.search(QUERIES[0], allow=[N])
    with pytest.raises(TypeError, match="integer ids"):
        index.search(QUERIES[0], allow=[0.5])
    with pytest.raises(ValueError, match="shape"):
        index.search(QUERIES[0], allow=np.ones(3, bool))


@pytest.mark.parametrize("columns,message", [
    ({"a": [1, "x"] + [1] * (N - 2)}, "mixes kinds"),
    ({"a": np.full(N, np.nan)}, "must be finite"),
    ({"a": [1] * (N - 1)}, "has 3999 values for 4000 points"),
    ({"bad name": [1] * N}, "letters, digits"),
    ({"a": [str(i) for i in range(N)] * 20}, "values for 4000 points"),
    ({"a": [[str(i)] for i in range(N)]}, "at most 1024"),
    ({"a": [[1]] * N}, "holds strings only"),
    ({}, "non-empty dict"),
])
def test_bad_attribute_columns_are_refused(columns, message):
    with pytest.raises((ValueError, TypeError), match=message):
        LorannIndex(DATA, attributes=columns)


def test_stored_attribute_values_are_checked():
    table = AttributeTable.from_columns({"cat": ["a", "b"] * 2}, 4)
    rows = table.point_rows(np.arange(4))
    rows["attr.cat"][0] = 7  # a code past the two values
    with pytest.raises(ValueError, match="codes past its values"):
        check_columns(rows, table.schema)


def test_saved_loaded_and_lazy_agree(index, tmp_path):
    """The same path finds the same points, resident or lazy. (Left to choose, a lazy
    index weighs bytes, not arithmetic, so it may take the other path.)"""
    path = tmp_path / "f.lorann"
    index.save(path)
    loaded = LorannIndex.load(path)
    lazy = LazyIndex(FileReader(path), cache_bytes=0)
    assert loaded.params["attributes"] == index.params["attributes"]
    for where, mask in [({"cat": "red"}, CAT == "red"), ({"tags": {"all": ["x", "y"]}},
                                                         HAS["x"] & HAS["y"]),
                        ({"year": {"lt": 1993}}, YEAR < 1993)]:
        want = index.search(QUERIES, 10, where=where)
        assert (loaded.search(QUERIES, 10, where=where) == want).all()
        for path in ("filtered", "exact"):
            assert (lazy.search(QUERIES, 10, where=where, filter_path=path)
                    == index.search(QUERIES, 10, where=where, filter_path=path)).all()
        found = lazy.search(QUERIES, 10, where=where)
        assert mask[found].all() and (found >= 0).all()


def test_lazy_fetches_no_cluster_without_a_passing_point(tmp_path):
    """A filter on an attribute that follows the clusters skips the other clusters."""
    probe = LorannIndex(DATA, n_clusters=40, rank=8, seed=1).build(target_recall=None)
    cluster_of = np.empty(N, dtype=np.int64)
    offsets = probe._prefix.offsets
    for j in range(40):
        cluster_of[probe._store.arrays.ids[offsets[j]:offsets[j + 1]]] = j
    index = LorannIndex(DATA, attributes={"c": cluster_of}, n_clusters=40, rank=8,
                        seed=1).build(target_recall=None)
    path = tmp_path / "c.lorann"
    index.save(path)
    lazy = LazyIndex(FileReader(path), cache_bytes=0)
    ids = lazy.search(QUERIES[0], 10, where={"c": {"in": [3, 4]}})
    assert set(cluster_of[ids].tolist()) <= {3, 4}
    assert lazy.last_fetch["clusters"] <= 2
    plain = lazy.search(QUERIES[0], 10)
    assert lazy.last_fetch["clusters"] > 2 and len(plain) == 10


def test_files_without_attributes_still_load_and_filter_by_id():
    folder = os.path.join(os.path.dirname(__file__), "data")
    old = LorannIndex.load(os.path.join(folder, "made-before-the-redesign.lorann"))
    assert "attributes" not in old.params
    q = np.random.default_rng(0).standard_normal(old.dim).astype(np.float32)
    allowed = np.arange(0, old.n, 3)
    ids = old.search(q, 5, allow=allowed)
    assert np.isin(ids[ids >= 0], allowed).all()
    with pytest.raises(ValueError, match="this index has: none"):
        old.search(q, 5, where={"pos": "v"})


def test_out_of_core_build_writes_the_same_file(tmp_path):
    kw = dict(distance="l2", rank=8, n_clusters=40, seed=2)
    LorannIndex(DATA, attributes=ATTRIBUTES, **kw).build(target_recall=None).save(
        tmp_path / "memory.lorann")
    build_file(DATA, tmp_path / "file.lorann", attributes=ATTRIBUTES, **kw)
    assert (tmp_path / "memory.lorann").read_bytes() == (tmp_path / "file.lorann").read_bytes()


def test_number_by_position_keeps_attributes(index):
    copy = LorannIndex.from_bytes(index.to_bytes())
    before = copy.search(QUERIES, 10, where={"cat": "grey"})
    old_ids = copy.number_by_position()
    after = copy.search(QUERIES, 10, where={"cat": "grey"})
    assert (old_ids[after] == before).all()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lorann_wasm", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_cli_attributes_and_where(tmp_path):
    np.save(tmp_path / "x.npy", DATA)
    np.save(tmp_path / "q.npy", QUERIES[:3])
    with open(tmp_path / "a.jsonl", "w") as f:
        for i in range(N):
            f.write(json.dumps({"cat": str(CAT[i]), "year": int(YEAR[i]),
                                **({"tags": TAGS[i]} if TAGS[i] else {})}) + "\n")
    with open(tmp_path / "a.csv", "w") as f:
        f.write("cat,year,flag\n" + "".join(f"{c},{y},{str(b).lower()}\n"
                                            for c, y, b in zip(CAT, YEAR, FLAG)))
    np.savez(tmp_path / "a.npz", cat=CAT, year=YEAR)
    for name in ("a.jsonl", "a.csv", "a.npz"):
        r = _cli("build", "x.npy", "-o", "i.lorann", "--rank", "8", "--attributes", name,
                 "--target-recall", "none", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "attributes: cat (string), year (int)" in r.stdout
        r = _cli("search", "i.lorann", "q.npy", "-k", "5", "--where",
                 '{"cat": "red", "year": {"gte": 2010}}', cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        found = np.array([[int(v) for v in line.split()] for line in r.stdout.split("\n") if line])
        assert found.shape == (3, 5)
        assert (CAT[found] == "red").all() and (YEAR[found] >= 2010).all()
        assert "points pass; path" in r.stderr
    r = _cli("search", "i.lorann", "q.npy", "--where", '{"cat": 1}', cwd=tmp_path)
    assert r.returncode != 0 and r.stderr.strip().endswith("compares with strings; got 1")
    r = _cli("search", "i.lorann", "q.npy", "--where", "{cat", cwd=tmp_path)
    assert r.returncode != 0 and "--where is not JSON" in r.stderr
    with open(tmp_path / "short.csv", "w") as f:
        f.write("cat\nred\n")
    r = _cli("build", "x.npy", "-o", "j.lorann", "--attributes", "short.csv", cwd=tmp_path)
    assert r.returncode != 0 and "has 1 rows for 4000 vectors" in r.stderr
    assert not (tmp_path / "j.lorann").exists()


def test_tuning_records_filter_budgets(index):
    factors = index.params["tuning"]["filter_factors"]
    assert [share for share, _ in factors] == [0.5, 0.1, 0.01]
    assert all(0 < f <= 16 for _, f in factors)


def test_long_numpy_operands_are_not_confused(index):
    """Recent filters are reused by their content: two long arrays whose reprs are the
    same (NumPy elides the middle) are two filters."""
    years = np.arange(1990, 3000)
    narrow = years.copy()
    narrow[3:-3] = 0  # the same first and last three: only 1990, 1991, 1992 remain
    assert repr(years) == repr(narrow)
    wide = index.search(QUERIES, 10, where={"year": {"in": years}})
    few = index.search(QUERIES, 10, where={"year": {"in": narrow}})
    assert not np.isin(YEAR[wide[wide >= 0]], [1990, 1991, 1992]).all()
    assert np.isin(YEAR[few[few >= 0]], [1990, 1991, 1992]).all()


@pytest.mark.parametrize("distance", ["l2", "ip"])
def test_filters_with_rerank_vectors_in_a_basis(distance):
    """Both filter paths rerank in the basis; a basis of every dimension only rotates."""
    index = LorannIndex(DATA, attributes=ATTRIBUTES, distance=distance, n_clusters=40, rank=8,
                        seed=1, rerank_dims=DATA.shape[1]).build(target_recall=None)
    for where, mask in CASES[:4]:
        truth = exact_filtered(QUERIES, mask, 10, distance)
        for path in ("exact", "filtered"):
            ids = index.search(QUERIES, 10, where=where, filter_path=path,
                               clusters_to_search=40, points_to_rerank=N)
            same = [got[got >= 0].tolist() == want.tolist() for got, want in zip(ids, truth)]
            assert np.mean(same) >= 0.95, (where, path)  # float32 rounding may swap near-ties


def test_the_empty_string_is_a_value_not_a_missing_one():
    """NumPy drops trailing NULs, so the "\\0" that stood for None read as "": points
    whose value was the empty string were stored as having none, and filtering on ""
    found nothing."""
    data = clustered(40, 8, seed=2)
    kind = ["", None, "a"] * 13 + [""]
    index = LorannIndex(data, attributes={"kind": kind}, n_clusters=4, rank=4).build(
        target_recall=None)
    assert index.params["attributes"][0]["values"] == ["", "a"]
    for value, want in (("", 14), ("a", 13)):
        found = index.search(data[0], 40, where={"kind": value}, clusters_to_search=4,
                             points_to_rerank=40)
        assert sorted(found[found >= 0].tolist()) == [i for i, v in enumerate(kind) if v == value]
        assert len(found[found >= 0]) == want
    found = index.search(data[0], 40, where={"kind": {"ne": ""}}, clusters_to_search=4,
                         points_to_rerank=40)
    assert sorted(found[found >= 0].tolist()) == [i for i, v in enumerate(kind) if v != ""]


def test_filters_that_follow_the_clusters_reach_the_target_from_other_classes():
    """A class label (an int, so its summaries are ranges) filters out whole regions of
    the data; a query from another class is far from every passing point. Adaptive
    probing trusted the ranges' estimates and stopped short: on 10,000 Fashion-MNIST
    images filtered by class, with queries from all classes, the worst class had
    recall@10 0.81. It now counts the passing points of the clusters it probes and
    probes on until they are enough (measured: 0.96)."""
    from lorann_wasm.bench.datasets import load
    ds = load("fashion-mnist", n_queries=200)
    names = sorted(set(ds.attributes["class"]))
    label = np.array([names.index(v) for v in ds.attributes["class"]])[:10_000]
    data, queries = ds.train[:10_000], ds.queries[:200]
    index = LorannIndex(data, attributes={"label": label}, distance="l2", seed=3).build()
    assert index.params["tuning"]["target_recall"] == 0.95
    worst = 1.0
    for c in range(10):
        rows = np.flatnonzero(label == c)
        truth = rows[ExactIndex(data[rows], distance="l2").search(queries, 10)]
        found = index.search(queries, 10, where={"label": c})
        worst = min(worst, np.mean([len(np.intersect1d(a, b)) / 10
                                    for a, b in zip(found, truth)]))
    assert worst >= 0.9, worst  # 200 queries measure it to about 0.01
