import contextlib
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lorann_wasm import ExactIndex, LorannIndex  # noqa: E402


def clustered(n, d, n_centers=40, seed=0, spread=3.0):
    """Seeded clustered Gaussian data: (n, d) float32."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_centers, d)) * spread
    return (centers[rng.integers(0, n_centers, n)] + rng.standard_normal((n, d))).astype(np.float32)


def recall(found, truth):
    k = truth.shape[1]
    return float(np.mean([np.intersect1d(f, t).size for f, t in zip(found, truth)])) / k


@pytest.fixture(scope="session")
def synthetic():
    """(data, queries): 6,000 x 48 points and 150 held-out queries from the same mixture."""
    both = clustered(6150, 48, seed=7)
    return both[:6000], both[6000:]


@pytest.fixture(scope="session")
def built(synthetic):
    """One built index per metric, default parameters except a small rank."""
    data, _ = synthetic
    return {dist: LorannIndex(data, distance=dist, rank=16, seed=1).build()
            for dist in ("ip", "cosine", "l2")}


@pytest.fixture(scope="session")
def truth(synthetic):
    data, queries = synthetic
    return {dist: ExactIndex(data, distance=dist).search(queries, 10)
            for dist in ("ip", "cosine", "l2")}


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for every browser test."""
    from build_scripts.browser import chromium
    with chromium() as b:
        yield b


@contextlib.contextmanager
def served(root):
    """Serve the site folder ``root`` on 127.0.0.1 (yields its URL); removes it afterwards."""
    import shutil

    from lorann_wasm.site.serve import serve_in_background
    server, url = serve_in_background(root)
    try:
        yield url
    finally:
        server.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def local_page(browser, url):
    """A page that can reach only ``url``; fails if anything tried to leave or threw."""
    from build_scripts.browser import open_context
    context, guard = open_context(browser, url)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert guard.blocked == [], f"requests left 127.0.0.1: {guard.blocked}"
    assert errors == [], f"uncaught page errors: {errors}"


#: modules that run headless Chromium
BROWSER_MODULES = {"test_browser", "test_site_browser", "test_lazy_browser"}
#: modules whose tests take seconds each (real data sets, models, site builds, process
#: pools and Dask clusters, the wheel built and installed)
SLOW_MODULES = BROWSER_MODULES | {"test_cli", "test_parallel_build", "test_embed",
                                  "test_real_data", "test_packaging", "test_site",
                                  "test_reference"}


def pytest_collection_modifyitems(config, items):
    """Mark browser and slow tests, so `pytest -m "not slow"` is a quick run."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
        if module in SLOW_MODULES or "fashion" in item.name or "real" in item.name:
            item.add_marker(pytest.mark.slow)
