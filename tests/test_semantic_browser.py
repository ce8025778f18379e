"""The semantic search page in headless Chromium: typed queries, relevance, parity, errors.

Runs on a WordNet subset (every synset relevant to the test queries plus a
seeded sample), embedded here with the NumPy encoder; the browser embeds
queries with the exported int8 weights, which CPython loads too.
"""


import numpy as np
import pytest

from build_scripts.build_site import build_site
from conftest import local_page, served
from lorann_wasm import LorannIndex
from lorann_wasm.bench.datasets import minilm_model_dir, synset_text, wordnet_synsets
from lorann_wasm.embed.minilm import MiniLM, export_weights

QUERIES = {
    "a large domestic cat": lambda s: s["pos"] == "n" and bool(
        {"cat", "domestic cat", "house cat", "true cat", "big cat"} & set(s["lemmas"])),
    "musical instrument with strings": lambda s: "stringed instrument" in s["lemmas"]
        or "stringed instrument" in s["gloss"],
    "to run quickly": lambda s: s["pos"] == "v" and bool(
        {"run", "sprint", "dash", "race", "hurry", "rush", "scurry", "scamper"} & set(s["lemmas"])),
}
BOOT_MS = 120_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("semantic")
    synsets = wordnet_synsets()
    relevant = [i for i, s in enumerate(synsets) if any(ok(s) for ok in QUERIES.values())]
    rng = np.random.default_rng(3)
    picked = sorted(set(relevant) | set(rng.choice(len(synsets), 2500, replace=False).tolist()))
    subset = [synsets[i] for i in picked]
    model = MiniLM.from_model_dir(minilm_model_dir())
    vectors = model.encode([synset_text(s) for s in subset])
    index = LorannIndex(vectors, distance="ip", rerank_dtype="int8", seed=0).build()
    index.save(work / "wn.lorann")
    blob = export_weights(model, "int8")
    (work / "minilm.safetensors").write_bytes(blob)
    root = str(work / "site")
    build_site(root, text_indexes=[("wordnet", str(work / "wn.lorann"), subset,
                                    str(work / "minilm.safetensors"), "WordNet subset")])
    with served(root) as url:
        yield {"url": url, "index": index, "subset": subset, "model": model,
               "browser_model": MiniLM.from_bytes(blob)}


@pytest.fixture
def page(browser, demo):
    with local_page(browser, demo["url"]) as p:
        yield p



def _ready(page, demo, query=""):
    page.goto(demo["url"] + "index.html" + query)
    page.wait_for_function("document.body.dataset.ready", timeout=BOOT_MS)
    state = page.evaluate("document.body.dataset.ready")
    if state != "true":
        print("page error:", page.inner_text("#error"))
    return state


def _shown_ids(page):
    return [int(x) for x in page.eval_on_selector_all("#hits li", "els => els.map(e => e.dataset.id)")]


def test_typed_queries_match_cpython_and_are_relevant(page, demo):
    assert _ready(page, demo) == "true"
    assert "vectors" in page.inner_text("#facts") or page.locator("#facts dt").count() >= 5
    for query, relevant in QUERIES.items():
        before = int(page.evaluate("document.body.dataset.answers || 0"))
        page.fill("#q", "")
        page.type("#q", query, delay=15)  # as a person types: debounced, only the last answer shows
        page.wait_for_function(f"Number(document.body.dataset.answers || 0) > {before}")
        page.wait_for_timeout(400)
        page.wait_for_function("document.querySelector('#status').textContent.includes('embed')")
        shown = _shown_ids(page)
        want = demo["index"].search(demo["browser_model"].encode(query), 10)
        assert shown[0] == want[0] and len(set(shown) & set(want)) >= 9, (query, shown, list(want))
        assert any(relevant(demo["subset"][i]) for i in shown), (query, [demo["subset"][i] for i in shown])
        status = page.inner_text("#status")
        assert "embed" in status and "search" in status and " ms" in status


def test_similar_to_this(page, demo):
    assert _ready(page, demo, "?q=violin") == "true"
    page.wait_for_function("document.querySelectorAll('#hits li').length === 10")
    first = _shown_ids(page)[0]
    before = int(page.evaluate("document.body.dataset.answers"))
    page.click("#hits li:first-child a.similar")
    page.wait_for_function(f"Number(document.body.dataset.answers) > {before}")
    shown = _shown_ids(page)
    assert first not in shown and len(shown) == 10
    want = [i for i in demo["index"].search(demo["index"].get_vectors([first])[0], 11) if i != first][:10]
    assert shown == want
    assert "similar to" in page.inner_text("#status")


def test_int8_encoder_in_browser_matches_float32(page, demo):
    page.goto(demo["url"] + "bench.html")
    page.wait_for_function("window.LorannEngine !== undefined")
    texts = [s["gloss"].split(";")[0][:80] for s in demo["subset"][::25][:100]]
    flat = page.evaluate("""async (texts) => {
        const engine = await window.LorannEngine.create({});
        await engine.loadEncoder("models/wordnet-minilm.safetensors");
        return Array.from(await engine.embed(texts));
    }""", texts)
    browser = np.array(flat, dtype=np.float32).reshape(len(texts), 384)
    full = demo["model"].encode(texts)
    assert len(texts) == 100 and np.sum(browser * full, axis=1).min() >= 0.99
    a = demo["index"].search(full, 10)
    b = demo["index"].search(browser, 10)
    assert np.mean([np.intersect1d(x, y).size / 10 for x, y in zip(a, b)]) >= 0.95


def test_missing_model_shows_error(page, demo):
    assert _ready(page, demo, "?model=models/missing.safetensors") == "error"
    assert "HTTP 404" in page.inner_text("#error")


def test_empty_query_clears_results(page, demo):
    assert _ready(page, demo, "?q=guitar") == "true"
    page.wait_for_function("document.querySelectorAll('#hits li').length === 10")
    page.fill("#q", "")
    page.wait_for_function("document.querySelectorAll('#hits li').length === 0")
    assert page.is_hidden("#error")
