"""The in-browser engine in real headless Chromium, checked against CPython.

A site is assembled (Pyodide, the wheel, index files built here on real and
synthetic data) and served on 127.0.0.1; every request to any other host is
blocked and recorded, and the tests assert there were none.
"""

import os

import numpy as np
import pytest

from build_scripts.browser import open_context
from lorann_wasm.site.explorer import build_explorer_site
from lorann_wasm.bench.datasets import fashion_mnist
from conftest import clustered, local_page, recall, served
from lorann_wasm import ExactIndex, LorannIndex

N_QUERIES = 200
BOOT_MS = 120_000


def _make_cases(folder):
    """name -> (index, queries, exact ids); index files written to folder."""
    train, test = fashion_mnist()
    data, queries = train[:12000], test[:N_QUERIES]
    syn = clustered(8000 + N_QUERIES, 64, seed=21)
    rng = np.random.default_rng(5)
    low_rank = (clustered(8000 + N_QUERIES, 24, seed=22) @ rng.standard_normal((24, 64))
                + 0.01 * rng.standard_normal((8000 + N_QUERIES, 64))).astype(np.float32)
    specs = {
        "fmnist-l2": (data, queries, dict(distance="l2", rerank_dtype="int8")),
        "fmnist-cosine": (data, queries, dict(distance="cosine", rerank_dtype="float16")),
        "synthetic-ip": (syn[:8000], syn[8000:], dict(distance="ip", rank=16)),
        # 64-d data near a 24-d subspace, its rerank vectors along 32 principal
        # directions (format version 2)
        "low-rank-ip-dims": (low_rank[:8000], low_rank[8000:],
                             dict(distance="ip", rank=16, rerank_dtype="int8", rerank_dims=32)),
    }
    cases = {}
    for name, (x, q, kw) in specs.items():
        index = LorannIndex(x, seed=0, **kw).build()
        index.save(os.path.join(folder, f"{name}.lorann"))
        cases[name] = (index, q, ExactIndex(x, distance=kw["distance"]).search(q, 10))
    return cases


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("browser")
    cases = _make_cases(str(work))
    root = str(work / "site")
    build_explorer_site(root, [(name, str(work / f"{name}.lorann"), name) for name in cases])
    raw = bytearray(open(work / "fmnist-l2.lorann", "rb").read())
    raw[len(raw) // 2] ^= 0x40  # one flipped bit in the data section
    with open(os.path.join(root, "indexes", "corrupt.lorann"), "wb") as f:
        f.write(raw)
    for name, (_, q, _) in cases.items():
        q.astype(np.float32).tofile(os.path.join(root, "indexes", f"{name}.queries.bin"))
    with served(root) as url:
        yield {"root": root, "url": url, "cases": cases}


@pytest.fixture
def page(browser, site):
    with local_page(browser, site["url"]) as p:
        yield p



RUN_QUERIES = """async ([name, count, k]) => {
  const engine = window.engine || (window.engine = await window.LorannEngine.create({}));
  const info = await engine.loadIndex(`indexes/${name}.lorann`);
  const q = new Float32Array(await (await fetch(`indexes/${name}.queries.bin`)).arrayBuffer());
  const dim = info.dim;
  const batch = await engine.searchBatch(q, count, k);
  const single = [];
  const singleDist = [];
  for (let i = 0; i < count; i++) {
    const r = await engine.search(q.subarray(i * dim, (i + 1) * dim), k);
    single.push(Array.from(r.ids));
    singleDist.push(Array.from(r.distances));
  }
  return { batch: Array.from(batch.ids), batchDist: Array.from(batch.distances),
           single, singleDist, info, runtime: engine.runtime };
}"""


def test_browser_results_match_cpython(page, site):
    page.goto(site["url"] + "bench.html")
    page.wait_for_function("window.LorannEngine !== undefined")
    for name, (index, queries, truth) in site["cases"].items():
        got = page.evaluate(RUN_QUERIES, [name, N_QUERIES, 10])
        assert got["runtime"]["simd"] is True  # float32 products in WebAssembly SIMD
        assert got["info"]["n"] == index.n and got["info"]["distance"] == index.distance
        want_ids, want_d = index.search(queries, 10, return_distances=True)
        batch = np.array(got["batch"]).reshape(N_QUERIES, 10)
        single = np.array(got["single"])
        same_batch = np.mean(np.all(batch == want_ids, axis=1))
        same_single = np.mean(np.all(single == want_ids, axis=1))
        assert same_batch >= 0.99 and same_single >= 0.99, (name, same_batch, same_single)
        np.testing.assert_allclose(np.array(got["batchDist"]).reshape(N_QUERIES, 10), want_d,
                                   rtol=1e-4, atol=1e-3 * max(1.0, float(np.abs(want_d).max())))
        r_browser, r_cpython = recall(batch, truth), recall(want_ids, truth)
        assert abs(r_browser - r_cpython) <= 0.005, (name, r_browser, r_cpython)
        assert abs(recall(single, truth) - r_cpython) <= 0.005
        assert r_cpython >= 0.9, (name, r_cpython)


SIMD_PRODUCTS = """async () => {
  const { loadPyodide } = await import("./pyodide/pyodide.mjs");
  const { offerProducts } = await import("./products.js");
  const pyodide = await loadPyodide({ indexURL: new URL("pyodide/", location.href).href });
  await pyodide.loadPackage("numpy");
  if (!offerProducts(pyodide)) return null;
  return JSON.parse(pyodide.runPython(`
import json
import numpy as np
from lorann_products import int4_rows, times_transposed

def address(x):
    return x.__array_interface__["data"][0]

rng = np.random.default_rng(7)
errors = []
for m, n, k in [(1, 1, 4), (3, 5, 8), (4, 7, 12), (5, 3, 16), (9, 33, 384), (8, 1536, 384),
                (13, 384, 1536), (64, 20, 388)]:
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n + 1, k)).astype(np.float32)[:n]
    c = np.full((m + 1, n), np.nan, np.float32)  # a row past the product must stay untouched
    times_transposed(address(a), address(b), address(c), m, n, k)
    want = a.astype(np.float64) @ b.T.astype(np.float64)
    numpy_error = np.abs(np.einsum("mk,nk->mn", a, b) - want).max()
    error = np.abs(c[:m] - want).max()  # (NaN where a value was never written)
    errors.append([m, n, k, float(error) if np.isfinite(error) else 1e30, float(numpy_error),
                   bool(np.isnan(c[m]).all())])
decoded = []
for m, w in [(1, 8), (7, 24), (300, 32)]:
    packed = rng.integers(0, 256, (m, w), dtype=np.uint8)
    scales = rng.random(m).astype(np.float32)
    codes = np.empty((m, 2 * w), np.int8)
    codes[:, 0::2], codes[:, 1::2] = packed & 15, packed >> 4
    want = (codes.astype(np.float32) - 8) * scales[:, None]
    out = np.full((m + 1, 2 * w), np.nan, np.float32)
    int4_rows(address(packed), address(scales), address(out), m, w)
    decoded.append([m, w, bool(np.array_equal(out[:m], want)), bool(np.isnan(out[m]).all())])
json.dumps({"products": errors, "int4": decoded})
`));
}"""


def test_simd_kernels_equal_numpy_in_the_browser(page, site):
    """The WebAssembly SIMD kernels the worker offers Python (web/products.js), on
    Pyodide's own memory: ``a @ b.T`` for every row count left over by its
    blocks of four, short and long rows, as exact as NumPy's float32 sums (against
    float64); 4-bit rows decoded to NumPy's very values; nothing written past
    the output."""
    page.goto(site["url"] + "bench.html")
    results = page.evaluate(SIMD_PRODUCTS)
    assert results is not None, "the kernel did not load"
    for m, n, k, error, numpy_error, untouched in results["products"]:  # float32 rounding
        assert error <= 2 * numpy_error + 1e-6 and untouched, (m, n, k, error, numpy_error)
    for m, w, equal, untouched in results["int4"]:  # 4-bit rows: NumPy's values exactly
        assert equal and untouched, (m, w)


def _open_demo(page, site, query=""):
    page.goto(site["url"] + "explorer.html" + query)
    page.wait_for_function("document.body.dataset.ready", timeout=BOOT_MS)
    return page.evaluate("document.body.dataset.ready")


def test_demo_page_search_by_item(page, site):
    assert _open_demo(page, site, "?index=fmnist-l2") == "true"
    assert "12,000 vectors × 784 dims, l2" in page.inner_text("#index-facts")
    page.fill("#item", "42")
    page.click("#by-item button[type=submit]")
    page.wait_for_function("document.body.dataset.searches === '1'")
    rows = page.locator("#results tbody tr")
    assert rows.count() == 10
    index = site["cases"]["fmnist-l2"][0]
    want = index.search(index.get_vectors([42])[0], 10)
    shown = [int(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(10)]
    assert shown == list(want) and shown[0] == 42
    assert page.is_hidden("#error")


def test_corrupted_index_shows_error_and_worker_recovers(page, site):
    assert _open_demo(page, site, "?indexUrl=indexes/corrupt.lorann") == "error"
    message = page.inner_text("#error")
    assert "invalid index file" in message and "checksum" in message
    page.select_option("#index-select", "synthetic-ip")
    page.wait_for_function("document.body.dataset.ready === 'true'", timeout=BOOT_MS)
    page.click("#by-item button[type=submit]")
    page.wait_for_function("document.body.dataset.searches === '1'")
    assert page.locator("#results tbody tr").count() == 10 and page.is_hidden("#error")


def test_a_numpy_wheel_unlike_the_lock_file_is_refused(page, site):
    """The worker installs NumPy from bytes it downloads while the runtime starts,
    only if they hash to the sha256 the runtime's lock file gives."""
    import glob
    wheel = glob.glob(os.path.join(site["root"], "pyodide", "numpy-*.whl"))[0]
    tampered = bytearray(open(wheel, "rb").read())
    tampered[len(tampered) // 2] ^= 1
    page.route("**/pyodide/numpy-*.whl", lambda route: route.fulfill(
        status=200, body=bytes(tampered), content_type="application/octet-stream"))
    assert _open_demo(page, site, "?index=synthetic-ip") == "error"
    assert "does not match its sha256 in the lock file" in page.inner_text("#error")


def test_wrong_url_shows_error(page, site):
    assert _open_demo(page, site, "?indexUrl=indexes/missing.lorann") == "error"
    assert "HTTP 404" in page.inner_text("#error")


def test_dimension_mismatch_shows_error(page, site):
    assert _open_demo(page, site, "?index=synthetic-ip") == "true"
    page.fill("#vector", "1, 2, 3")
    page.click("#by-vector button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "dimension 3 but the index has dimension 64" in page.inner_text("#error")
    page.fill("#vector", "1, x, 3")
    page.click("#by-vector button[type=submit]")
    page.wait_for_function("document.querySelector('#error').textContent.includes('not a number')")
    # the worker still answers after the errors
    page.fill("#vector", " ".join(["0.5"] * 64))
    page.click("#by-vector button[type=submit]")
    page.wait_for_function("document.body.dataset.searches === '1'")
    assert page.locator("#results tbody tr").count() == 10


def test_nothing_leaves_localhost(browser, site):
    context, guard = open_context(browser, site["url"])
    requests = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    assert _open_demo(page, site, "?index=fmnist-cosine") == "true"
    page.click("#by-item button[type=submit]")
    page.wait_for_function("document.body.dataset.searches === '1'")
    context.close()
    assert guard.blocked == []
    assert requests and all(u.startswith(site["url"]) or u.startswith("data:") for u in requests)
    # the runtime, NumPy, the wheel and the index all came from this server
    for part in ("pyodide.asm.wasm", "numpy-2.0.2", "wheels/lorann_wasm", "fmnist-cosine.lorann"):
        assert any(part in u for u in requests), part
