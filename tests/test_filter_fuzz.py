"""Random filters against brute force, in the three places a filter is searched: the
resident index, the lazily loaded one (CPython's reader) and the browser's bridge.

The data make the hard cases common: conditions no single point meets together
though each cluster's summaries allow it (red points are never flagged), string
operands given twice, values near the float limits and integers near 2**53, and
allow lists of a few ids, which make adaptive probing look further.
"""

import json

import numpy as np
import pytest

from conftest import clustered
from lorann_wasm import ExactIndex, LorannIndex
from lorann_wasm.bridge import Session
from lorann_wasm.lazy import FileReader, LazyIndex

N, D, K = 3000, 16, 10
X = clustered(N + 40, D, seed=31)
DATA, QUERIES = X[:N], X[N:]
RNG = np.random.default_rng(17)
CAT = np.array(["red", "green", "blue", "grey"])[RNG.choice(4, N, p=[0.6, 0.2, 0.15, 0.05])]
FLAG = (CAT != "red") & (RNG.random(N) < 0.5)  # no red point is flagged
BIG = 2 ** 53 - RNG.integers(0, 4, N)  # the largest integers an attribute holds
HUGE = RNG.uniform(-1, 1, N) * 1.7e308  # near the float limit
SMALL = RNG.integers(0, 20, N)
COLUMNS = {"cat": CAT, "flag": FLAG, "big": BIG, "huge": HUGE, "small": SMALL}


def _condition(rng):
    """A random condition: (where, mask of the points it passes)."""
    name = str(rng.choice(list(COLUMNS)))
    col = COLUMNS[name]
    if name == "cat":
        values = list(rng.choice(["red", "green", "blue", "grey", "mauve"], rng.integers(1, 4)))
        values += values[:rng.integers(0, 2)]  # a value given twice now and then
        op = str(rng.choice(["in", "nin", "eq", "ne"]))
        if op in ("eq", "ne"):
            mask = (col == values[0]) if op == "eq" else (col != values[0])
            return {name: {op: values[0]}}, mask
        hit = np.isin(col, values)
        return {name: {op: values}}, hit if op == "in" else ~hit
    if name == "flag":
        value = bool(rng.integers(2))
        return {name: value}, col == value
    if name == "big":
        value = int(2 ** 53 - rng.integers(-2, 5))  # 2**53 + 1 must not match 2**53
        op = str(rng.choice(["eq", "ne", "gte", "lt"]))
        return {name: {op: value}}, {"eq": col == value, "ne": col != value,
                                     "gte": col >= value, "lt": col < value}[op]
    if name == "huge":
        lo, hi = sorted(rng.uniform(-1, 1, 2) * 1.7e308)
        return {name: {"gte": lo, "lt": hi}}, (col >= lo) & (col < hi)
    lo = int(rng.integers(0, 20))
    hi = int(lo + rng.integers(-3, 6))  # sometimes empty: a contradictory range
    return {name: {"gte": lo, "lte": hi}}, (col >= lo) & (col <= hi)


def random_filter(rng):
    """A random where (one to three conditions, AND) or allow list, and its mask."""
    if rng.random() < 0.15:
        allow = rng.choice(N, int(rng.integers(1, 40)), replace=False)
        mask = np.zeros(N, bool)
        mask[allow] = True
        return {"allow": allow}, mask
    where, mask = {}, np.ones(N, bool)
    for _ in range(int(rng.integers(1, 4))):
        cond, m = _condition(rng)
        if next(iter(cond)) not in where:
            where.update(cond)
            mask &= m
    return {"where": where}, mask


def exact_filtered(queries, mask, k):
    rows = np.flatnonzero(mask)
    kk = min(k, len(rows))
    out = np.full((len(queries), k), -1)
    if kk:
        out[:, :kk] = rows[ExactIndex(DATA[rows], distance="ip").search(queries, kk)]
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    index = LorannIndex(DATA, attributes=COLUMNS, n_clusters=15, rank=6, seed=2).build(
        tuning_queries=150)
    path = tmp_path_factory.mktemp("fuzz") / "f.lorann"
    index.save(path)
    return index, str(path)


def _bridge(path, queries, k, flt):
    """A search as the browser worker runs it: plan, supply each round's bytes, finish."""
    raw = open(path, "rb").read()
    session = Session()
    session.load_lazy(FileReader(path))
    text = json.dumps({"where": flt.get("where"), "allow": None if "allow" not in flt
                       else [int(i) for i in flt["allow"]]})
    need = json.loads(session.plan(queries.astype(np.float32).tobytes(), len(queries), k,
                                   filter_json=text))
    while need["ranges"]:
        need = json.loads(session.supply(b"".join(raw[a:b] for a, b in need["ranges"])))
    return session.finish()[0].reshape(len(queries), k)


FILTERS = 120


def test_random_filters_match_brute_force_everywhere(built):
    index, path = built
    rng = np.random.default_rng(2026)
    queries = QUERIES[:6]
    seen = {"nothing passes": 0, "fewer than k": 0, "k or more": 0}
    for case in range(FILTERS):
        flt, mask = random_filter(rng)
        what = f"case {case}: {flt}"
        passing = int(mask.sum())
        seen["nothing passes" if not passing else "fewer than k" if passing < K
             else "k or more"] += 1
        truth = exact_filtered(queries, mask, K)
        # every cluster, every point: both paths are exact search of the passing points
        for filter_path in ("filtered", "exact"):
            got = index.search(queries, K, clusters_to_search=15, points_to_rerank=N,
                               filter_path=filter_path, **flt)
            assert np.array_equal(got, truth), f"{what} {filter_path}"
        # defaults: only passing points, k of them when k pass, the same in every mode
        resident = index.search(queries, K, **flt)
        lazy = LazyIndex(FileReader(path))
        batch = lazy.search(queries, K, **flt)
        singles = np.stack([LazyIndex(FileReader(path)).search(q, K, **flt) for q in queries])
        for got in (resident, batch, singles, _bridge(path, queries, K, flt)):
            found = got[got >= 0]
            assert mask[found].all(), what
            assert ((got >= 0).sum(axis=1) == min(K, passing)).all(), what
        assert np.array_equal(batch, singles), what
        # the same path answers alike, resident or lazy (the lazy store may choose
        # the filtered path where the resident one reranks every passing point)
        path_taken = lazy.last_plan.path
        if path_taken != "approximate":
            assert np.array_equal(
                index.search(queries, K, filter_path=path_taken, **flt), batch), what
    assert min(seen.values()) >= 5, seen  # every outcome is exercised


def test_the_reported_cases(built):
    """The reliability review's cases, one by one."""
    index, path = built
    lazy = LazyIndex(FileReader(path))
    queries = QUERIES[:4]
    for engine in (index, lazy):
        # 1. no point meets both conditions, but the summaries cannot rule it out
        ids, dists = engine.search(queries, K, where={"cat": "red", "flag": True},
                                   return_distances=True)
        assert (ids == -1).all() and np.isinf(dists).all()
        assert (engine.search(queries, K, where={"small": {"gte": 9, "lte": 3}}) == -1).all()
        # 2. a value given twice is one value
        for op in ("in", "nin"):
            once = engine.search(queries, K, where={"cat": {op: ["red"]}})
            twice = engine.search(queries, K, where={"cat": {op: ["red", "red"]}})
            assert np.array_equal(once, twice) and (once >= 0).all()
        # 4. values near the float limit
        got = engine.search(queries, K, where={"huge": {"gt": 0.0}})
        assert (got >= 0).all() and (HUGE[got] > 0).all()
        # 6. integers compare exactly; ones no attribute can hold are an error
        assert (engine.search(queries, K, where={"big": 2 ** 53 + 1}) == -1).all()
        assert (BIG[engine.search(queries, K, where={"big": 2 ** 53 - 1})] == 2 ** 53 - 1).all()
        with pytest.raises(ValueError, match="outside the range"):
            engine.search(queries, K, where={"big": 2 ** 70})
        with pytest.raises(ValueError, match="outside"):
            engine.search(queries, K, allow=[2 ** 70])
    # 5. every cluster and every point asked for: exact, on the filtered path too
    mask = CAT == "blue"
    got = index.search(QUERIES, 100, where={"cat": "blue"}, filter_path="filtered",
                       clusters_to_search=15, points_to_rerank=N)
    assert np.array_equal(got, exact_filtered(QUERIES, mask, 100))


def test_a_lazy_batch_that_probes_further_fetches_what_it_needs(built, monkeypatch):
    """3. A filtered query that finds too few points probes every cluster that may hold
    one; a lazily loaded index must fetch those too (it answered -1 for the batch)."""
    from lorann_wasm.query import engine as engine_module
    index, path = built
    real = engine_module.probe_further

    def short_once(plan):  # as if the first probes had found fewer than k
        if not getattr(plan, "_widened", False):
            plan._widened = True
            plan.candidates = np.full_like(plan.candidates, -1)
        return real(plan)

    monkeypatch.setattr(engine_module, "probe_further", short_once)
    where = {"cat": "green"}
    queries = QUERIES[:6]
    want = index.search(queries, K, where=where, filter_path="filtered")
    got = LazyIndex(FileReader(path)).search(queries, K, where=where, filter_path="filtered")
    assert (got >= 0).all() and np.array_equal(got, want)
