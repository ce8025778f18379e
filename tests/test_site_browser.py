"""Sites made by `lorann-wasm site`, in the real (headless) Chromium.

Two sites: a WordNet subset from JSONL (relevance and parity with CPython),
and a small mixed collection (Markdown, JSONL, CSV and a built HTML site)
served under a subpath, with its search page inside the HTML site. The
page and the drop-in widget must answer as CPython does, offline after the
first visit, on a host without HTTP Range, and show hostile text as text.
"""

import contextlib
import json
import os
import urllib.request

import numpy as np
import pytest

from conftest import local_page
from build_scripts.demo.wordnet_jsonl import wordnet_documents
from lorann_wasm import LorannIndex
from lorann_wasm.bench.datasets import wordnet_synsets
from lorann_wasm.embed.minilm import MiniLM
from lorann_wasm.site.bundle import site_encoder
from lorann_wasm.lazy import FileReader, LazyIndex
from lorann_wasm.site.builder import build_site
from lorann_wasm.site.documents import Fields
from lorann_wasm.site.explorer import parse_explorer
from lorann_wasm.site.serve import Pacer, serve_in_background

QUERIES = {
    "a large domestic cat": lambda s: s["pos"] == "n" and bool(
        {"cat", "domestic cat", "house cat", "true cat", "big cat"} & set(s["lemmas"])),
    "musical instrument with strings": lambda s: "stringed instrument" in s["lemmas"]
        or "stringed instrument" in s["gloss"],
    "to run quickly": lambda s: s["pos"] == "v" and bool(
        {"run", "sprint", "dash", "race", "hurry", "rush", "scurry", "scamper"} & set(s["lemmas"])),
}
BOOT_MS = 180_000
HOSTILE_TITLE = '<img src=x onerror="window.pwned=1">Camera <b>pictures</b>'
HOSTILE_TEXT = ('<script>window.pwned=2</script> Photographs are taken with cameras; '
                '<img src=x onerror="window.pwned=3"> lenses focus the light.')


def _reference(site_dir):
    """The site's own index and browser model, loaded in CPython."""
    manifest = json.loads((site_dir / "site.json").read_text())
    s = manifest["search"]
    return (LorannIndex.load(site_dir / s["index"]),
            site_encoder(site_dir, s), manifest)


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory):
    work = tmp_path_factory.mktemp("wordnet-site")
    synsets = wordnet_synsets()
    relevant = [i for i, s in enumerate(synsets) if any(ok(s) for ok in QUERIES.values())]
    rng = np.random.default_rng(3)
    picked = sorted(set(relevant) | set(rng.choice(len(synsets), 2000, replace=False).tolist()))
    subset = [synsets[i] for i in picked]
    with open(work / "wordnet.jsonl", "w") as f:
        for doc in wordnet_documents(subset):
            f.write(json.dumps(doc) + "\n")
    # the site's vector explorer, on 1,000 random 16-pixel "images"
    LorannIndex(rng.random((1000, 16), dtype=np.float32), distance="l2", n_clusters=8,
                rank=4, seed=1).build(target_recall=None).save(work / "tiles.lorann")
    explorer = parse_explorer([f"tiles={work / 'tiles.lorann'}:Random tiles"], ["tiles=4x4"])
    build_site([str(work / "wordnet.jsonl")], str(work / "site"), fields=Fields(extra=("pos",)),
               title="WordNet subset", facets=("pos", "lexname"), explorer=explorer)
    index, model, _ = _reference(work / "site")
    server, url = serve_in_background(str(work / "site"))
    yield {"url": url, "index": index, "model": model, "subset": subset, "dir": work / "site",
           "tiles": LorannIndex.load(work / "tiles.lorann")}
    server.shutdown()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """www/project/ is the user's built site; the search site is www/project/search/."""
    work = tmp_path_factory.mktemp("mixed-site")
    notes = work / "notes"
    notes.mkdir()
    (notes / "cats.md").write_text("# Cats\n\nCats are small carnivorous mammals kept as pets; "
                                   "they purr when content.\n\n## Feeding\n\nA cat needs meat "
                                   "and fresh water every day.\n")
    (notes / "weather.txt").write_text("Rain falls from clouds when droplets grow heavy.\n")
    (work / "items.jsonl").write_text(
        json.dumps({"title": HOSTILE_TITLE, "text": HOSTILE_TEXT, "url": "photo.html"}) + "\n" +
        json.dumps({"title": "Bicycles", "text": "A bicycle chain must be oiled every month.",
                    "url": "javascript:window.pwned=4"}) + "\n")
    (work / "table.csv").write_text("title,text\nVolcanoes,Lava erupts from a volcano "
                                    "and cools into rock.\n")
    project = work / "www" / "project"
    (project / "guide").mkdir(parents=True)
    (project / "index.html").write_text(
        "<html><head><title>Baking</title></head><body><nav>Home</nav><main>"
        "<h1 id='welcome'>Welcome</h1><p>This site explains how to bake sourdough bread.</p>"
        "<h2 id='starter'>The starter</h2><p>A starter is flour and water with wild yeast "
        "that makes the dough rise.</p></main><footer>(c)</footer></body></html>")
    (project / "guide" / "trains.html").write_text(
        "<html><head><title>Trains</title></head><body><article><h1 id='rail'>Railways</h1>"
        "<p>Trains run on steel rails between stations.</p></article></body></html>")
    (project / "about.html").write_text(
        "<!doctype html><html><head><title>About</title></head><body data-lorann-ignore>"
        "<h1>About</h1><lorann-search></lorann-search>"
        "<script type='module' src='search/widget.js'></script></body></html>")
    site = project / "search"
    build_site([str(notes), str(work / "items.jsonl"), str(work / "table.csv"), str(project)],
               str(site), html_root=str(project), title="Mixed collection")
    index, model, manifest = _reference(site)
    return {"www": work / "www", "index": index, "model": model, "manifest": manifest}


@contextlib.contextmanager
def _page(browser, folder, ranges=True):
    """A page that can reach only a server of ``folder``: (page, base URL)."""
    server, url = serve_in_background(str(folder), ranges=ranges)
    try:
        with local_page(browser, url) as page:
            yield page, url
    finally:
        server.shutdown()


def _open(page, url, selector="#app"):
    page.goto(url)
    page.wait_for_function(f"document.querySelector('{selector}') && "
                           f"['ready', 'error'].includes(document.querySelector('{selector}').dataset.state)",
                           timeout=BOOT_MS)
    assert page.evaluate(f"document.querySelector('{selector}').dataset.state") == "ready", \
        page.inner_text("body")


def _ask(page, query, selector="#app"):
    """Type a query as a person does; returns the ids the page searched out."""
    page.fill(f"{selector} input", "")
    page.type(f"{selector} input", query, delay=15)
    # every keystroke may search (the newest waits for the one running): wait for
    # the answer to the whole query
    page.wait_for_function(f"document.querySelector('{selector}').dataset.query === "
                           f"{json.dumps(query)}")
    return [int(x) for x in page.evaluate(f"document.querySelector('{selector}').dataset.ids").split()]


def _choose_facet(page, name, value):
    """Choose a facet's value on the page, as a person picks it from the menu."""
    page.evaluate("""([name, value]) => {
      const select = document.querySelector(`select[data-facet=${name}]`);
      const label = value === "" ? "(empty) (" : `${value} (`;
      select.value = [...select.options].find((o) => o.textContent.startsWith(label)).value;
      select.dispatchEvent(new Event("change"));
    }""", [name, value])


def _expect(ref, query, shown):
    want = list(ref["index"].search(ref["model"].encode(query), len(shown)))
    assert shown[0] == want[0] and len(set(shown[:10]) & set(want[:10])) >= 9, (query, shown, want)


def test_wordnet_queries_match_cpython_and_are_relevant(browser, wordnet):
    with local_page(browser, wordnet["url"]) as page:
        _open(page, wordnet["url"])
        assert page.evaluate("document.body.dataset.offline") == "controlled"
        for query, relevant in QUERIES.items():
            shown = _ask(page, query)
            _expect(wordnet, query, shown)
            titles = page.eval_on_selector_all(".lorann-result .lorann-link", "els => els.map(e => e.textContent)")
            assert any(relevant(s) for s in wordnet["subset"] if ", ".join(s["lemmas"]) in titles[:10]), titles
            status = page.inner_text(".lorann-status")
            assert "embed" in status and "search" in status and " ms" in status
        tags = page.eval_on_selector_all(".lorann-result:first-child .lorann-tag", "els => els.map(e => e.textContent)")
        assert tags[0] == "verb" and tags[1].startswith("verb.")  # "to run quickly": pos, lexname
        page.fill("#app input", "")
        page.wait_for_function("document.querySelectorAll('.lorann-result').length === 0")


def test_the_search_page_links_to_its_explorer_which_answers_as_cpython(browser, wordnet):
    """`--explorer-index` puts the explorer in the site: linked from the search page,
    loading its index and drawing its vectors as images."""
    with local_page(browser, wordnet["url"]) as page:
        _open(page, wordnet["url"])
        link = page.locator("#links a")
        assert link.inner_text() == "Vector explorer"
        link.click()
        page.wait_for_function("document.body.dataset.ready", timeout=BOOT_MS)
        assert page.evaluate("document.body.dataset.ready") == "true"
        assert "1,000 vectors × 16 dims, l2" in page.inner_text("#index-facts")
        page.fill("#item", "7")
        page.click("#by-item button[type=submit]")
        page.wait_for_function("document.body.dataset.searches === '1'")
        rows = page.locator("#results tbody tr")
        tiles = wordnet["tiles"]
        want = tiles.search(tiles.get_vectors([7])[0], 10)
        assert [int(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(10)] \
            == list(want)
        assert page.locator("#results canvas").count() == 10  # drawn as 4 x 4 images


def test_facet_filters_match_cpython(browser, wordnet, tmp_path):
    """Choosing a facet filters the results, as the same lazily loaded index does in CPython."""
    manifest = json.loads(urllib.request.urlopen(wordnet["url"] + "site.json").read())
    facets = {f["name"]: dict(f["values"]) for f in manifest["search"]["facets"]}
    assert set(facets) == {"pos", "lexname"}
    assert sum(facets["pos"].values()) == len(wordnet["subset"])
    site_index = urllib.request.urlopen(wordnet["url"] + manifest["search"]["index"]).read()
    (tmp_path / "index.lorann").write_bytes(site_index)
    lazy = LazyIndex(FileReader(tmp_path / "index.lorann"))
    with local_page(browser, wordnet["url"]) as page:
        _open(page, wordnet["url"])
        _choose_facet(page, "pos", "verb")
        query = "a large domestic cat"
        shown = _ask(page, query)
        want = list(lazy.search(wordnet["model"].encode(query), len(shown), where={"pos": "verb"}))
        assert shown[0] == want[0] and len(set(shown[:10]) & set(want[:10])) >= 9, (shown, want)
        tags = page.eval_on_selector_all(".lorann-result .lorann-tag[title=pos]",
                                         "els => els.map(e => e.textContent)")
        assert len(tags) == 10 and set(tags) == {"verb"}
        assert "filtered: about" in page.inner_text(".lorann-status")
        assert page.evaluate("document.querySelector('#app').dataset.path") in ("filtered", "exact")
        # the JavaScript API: an allow list and a where together
        vector = wordnet["model"].encode("to run quickly")
        allowed = list(range(0, len(wordnet["subset"]), 3))
        got = page.evaluate("""async ([v, allow]) => {
            const r = await window.lorannSite.engine.search(new Float32Array(v), 10,
                { where: { lexname: "verb.motion" }, allow });
            return { ids: Array.from(r.ids), path: r.path };
        }""", [vector.tolist(), allowed])
        want = lazy.search(vector, 10, where={"lexname": "verb.motion"}, allow=allowed)
        assert got["ids"] == want.tolist() and got["path"] == lazy.last_plan.path
        error = page.evaluate("""async () => {
            try { await window.lorannSite.engine.search(new Float32Array(384), 10,
                                                        { where: { colour: "red" } }); }
            catch (err) { return err.message; } }""")
        assert "unknown attribute 'colour'" in error


def test_int8_encoder_in_browser_matches_cpython(browser, wordnet):
    """The page's encoder (int8 weights, products in WebAssembly SIMD) gives
    CPython's embeddings, to a cosine of 0.999."""
    texts = [s["gloss"].split(";")[0][:80] for s in wordnet["subset"][::25][:60]]
    with local_page(browser, wordnet["url"]) as page:
        _open(page, wordnet["url"])
        flat = page.evaluate("async (texts) => Array.from(await window.lorannSite.engine.embed(texts))", texts)
        # the encoder's products ran in the WebAssembly SIMD kernel
        assert page.evaluate("window.lorannSite.engine.runtime.simd") is True
    browser_vectors = np.array(flat, dtype=np.float32).reshape(len(texts), 384)
    assert np.sum(browser_vectors * wordnet["model"].encode(texts), axis=1).min() >= 0.999


def test_mixed_inputs_under_a_subpath_link_to_their_pages(browser, mixed):
    with _page(browser, mixed["www"]) as (page, url):
        _open(page, url + "project/search/")
        shown = _ask(page, "how do I make bread rise")
        _expect(mixed, "how do I make bread rise", shown)
        first = page.eval_on_selector(".lorann-result .lorann-link", "a => a.href")
        assert first == url + "project/#starter"
        # the sentence that matches the query is marked
        assert "makes the dough rise" in page.inner_text(".lorann-result mark")
        assert urllib.request.urlopen(first.split("#")[0]).status == 200
        _ask(page, "railway stations")
        link = page.eval_on_selector(".lorann-result .lorann-link", "a => a.href")
        assert link == url + "project/guide/trains.html#rail"
        _ask(page, "my pet purrs")
        titles = page.eval_on_selector_all(".lorann-link", "els => els.map(e => e.textContent)")
        assert titles[0] == "Cats" and "Volcanoes" in titles  # Markdown and CSV documents
        # several passages of one document are one result
        first = page.eval_on_selector(".lorann-result", "li => li.dataset.ids.split(' ').length")
        assert first == 2


def test_hostile_text_is_shown_as_text(browser, mixed):
    with _page(browser, mixed["www"]) as (page, url):
        _open(page, url + "project/search/")
        _ask(page, "photographs taken with a camera")
        page.wait_for_timeout(1500)  # after the best sentence is marked
        first = page.inner_text(".lorann-result")
        assert HOSTILE_TITLE in first and HOSTILE_TEXT in first
        assert page.evaluate("document.querySelectorAll('#app img, #app script, #app b').length") == 0
        _ask(page, "bicycle chain")  # its link is javascript: -- shown without a link
        assert page.eval_on_selector(".lorann-link", "e => [e.tagName, e.textContent]") == ["SPAN", "Bicycles"]
        page.click(".lorann-link")
        assert page.evaluate("window.pwned") is None


def test_widget_on_another_page_answers_like_the_search_page(browser, mixed):
    with _page(browser, mixed["www"]) as (page, url):
        _open(page, url + "project/about.html", "lorann-search")
        shown = _ask(page, "volcanic eruptions", "lorann-search")
        _expect(mixed, "volcanic eruptions", shown)
        assert page.inner_text("lorann-search .lorann-link") == "Volcanoes"
        page.focus("lorann-search input")
        page.keyboard.press("ArrowDown")
        assert page.evaluate("document.activeElement.textContent") == "Volcanoes"
        page.keyboard.press("ArrowDown")
        assert page.evaluate("document.activeElement.classList.contains('lorann-link')")
        page.keyboard.press("Escape")
        page.wait_for_function("document.querySelectorAll('lorann-search .lorann-result').length === 0")


def test_second_visit_works_with_the_server_gone(browser, mixed):
    server, url = serve_in_background(str(mixed["www"]))
    context = browser.new_context()
    try:
        page = context.new_page()
        _open(page, url + "project/search/")
        assert page.evaluate("document.body.dataset.offline") == "controlled"
        # a first visit asks for site.json twice (the page, the service worker's
        # install), and the worker's install for the page once (it fetched site.json
        # five times, and the page twice, as ./ and index.html)
        assert server.paths.get("/project/search/site.json") == 2, server.paths
        assert server.paths.get("/project/search/") == 1, server.paths  # the navigation
        assert server.paths.get("/project/search/index.html") == 1, server.paths
        # the runtime and the pages travel gzipped (their .gz siblings): the visit
        # cost at least 7 MB less than the files it keeps (the wasm alone saves 7)
        manifest = json.loads((mixed["www"] / "project" / "search" / "site.json").read_text())
        lazy = {manifest["search"][k] for k in ("index", "records", "offsets")}
        kept = sum(f["bytes"] for name, f in manifest["files"].items() if name not in lazy)
        assert server.stats["bytes"] < kept - 7e6, (server.stats, kept)
        online = _ask(page, "bicycle maintenance")
        # after its first answer the page downloads the rest; once done, it needs
        # no network (Chromium's offline switch does not stop a service worker's
        # own fetches: stop the server too, so only the cache can answer)
        page.wait_for_function("document.querySelector('#app').dataset.offline === 'done'",
                               timeout=BOOT_MS)
        server.shutdown()
        server.server_close()
        context.set_offline(True)
        page.reload()
        _open(page, url + "project/search/")
        assert _ask(page, "bicycle maintenance") == online
        assert page.inner_text(".lorann-link") == "Bicycles"
    finally:
        context.close()


def test_a_host_without_range_requests_still_works(browser, mixed):
    with _page(browser, mixed["www"], ranges=False) as (page, url):
        _open(page, url + "project/search/")
        assert "does not support HTTP Range" in page.inner_text(".lorann-notice")
        # the model's word-piece rows came whole too
        assert page.evaluate("window.lorannSite.engine.encoder.tokens") == "whole"
        shown = _ask(page, "weather and rain")
        _expect(mixed, "weather and rain", shown)


def test_a_whole_site_answers_like_a_lazy_one(browser, mixed, tmp_path):
    """--whole: index and records downloaded whole, the same answers."""
    lazy = json.loads((mixed["www"] / "project" / "search" / "site.json").read_text())
    build_site([str(mixed["www"] / "project" / "guide")], str(tmp_path / "whole"), whole=True)
    manifest = json.loads((tmp_path / "whole" / "site.json").read_text())
    assert manifest["search"]["whole"] and not lazy["search"]["whole"]
    index, model, _ = _reference(tmp_path / "whole")
    with _page(browser, tmp_path / "whole") as (page, url):
        _open(page, url)
        assert page.evaluate("window.lorannSite.info.lazy") is None
        assert page.evaluate("window.lorannSite.records.whole") is True
        assert page.evaluate("window.lorannSite.engine.encoder.tokens") == "whole"
        shown = _ask(page, "steel rails")
        assert shown == list(index.search(model.encode("steel rails"), len(shown)))
        assert page.inner_text(".lorann-link") == "Trains"


def test_a_redeploy_replaces_the_cached_site(browser, tmp_path):
    """The service worker caches by the site's version: a new version is seen on the next
    visit, and the old version's cache is dropped."""
    (tmp_path / "v.jsonl").write_text(json.dumps({"title": "Old", "text": "Owls hunt at night."}) + "\n")
    first = build_site([str(tmp_path / "v.jsonl")], str(tmp_path / "site"))
    with _page(browser, tmp_path / "site") as (page, url):
        _open(page, url)
        _ask(page, "birds")
        assert page.inner_text(".lorann-link") == "Old"
        (tmp_path / "v.jsonl").write_text(json.dumps({"title": "New", "text": "Owls hunt at night."}) + "\n")
        second = build_site([str(tmp_path / "v.jsonl")], str(tmp_path / "site"))
        assert second["version"] != first["version"]
        page.reload()
        _open(page, url)
        _ask(page, "birds")
        assert page.inner_text(".lorann-link") == "New"
        page.wait_for_function("""async (v) => {
            const names = await caches.keys();
            return names.length === 1 && names[0].endsWith(v);
        }""", arg=second["version"], timeout=30_000)


def test_a_host_missing_a_file_still_searches_online(browser, tmp_path):
    """A file of the site missing on the host: the service worker cannot install,
    the page says so (body[data-offline]) at once and searches online."""
    (tmp_path / "v.jsonl").write_text(json.dumps({"title": "Owls", "text": "Owls hunt at night."}) + "\n")
    build_site([str(tmp_path / "v.jsonl")], str(tmp_path / "site"))
    (tmp_path / "site" / "style.css").unlink()
    with _page(browser, tmp_path / "site") as (page, url):
        _open(page, url)
        assert page.evaluate("document.body.dataset.offline") == "install failed"
        _ask(page, "birds of the night")
        assert page.inner_text(".lorann-link") == "Owls"


def _fill(page, query, selector="#app"):
    """Paste a whole query (one input event, one search): its answer's ids, its rounds."""
    page.fill(f"{selector} input", query)
    page.wait_for_function(f"document.querySelector('{selector}').dataset.query === "
                           f"{json.dumps(query)}")
    data = page.evaluate(f"({{...document.querySelector('{selector}').dataset}})")
    return [int(x) for x in data["ids"].split()], json.loads(data["rounds"])


def test_a_cold_query_takes_two_rounds_and_then_the_whole_site_is_local(browser, wordnet):
    """A lazily loaded site answers a cold query in at most two network rounds of a few
    requests (index, offsets and records together); after its first answer the page
    downloads the rest, then answers new queries with no request at all, with the
    server stopped too, and after a reload with the server stopped."""
    server, url = serve_in_background(str(wordnet["dir"]))
    want = lambda q: list(wordnet["index"].search(wordnet["model"].encode(q), 10))
    try:
        with local_page(browser, url) as page:
            reads = []  # (Range read marked direct, issued by the service worker)
            page.context.on("request", lambda r: r.headers.get("range") and reads.append(
                (r.url.endswith("?lorann-range"), r.service_worker is not None)))
            _open(page, url)
            s = json.loads((wordnet["dir"] / "site.json").read_text())["search"]
            # the index's header and prefix came in the one request that opened it
            assert server.paths["/" + s["index"]] == 1, server.paths
            assert s["index_head"] == LazyIndex(FileReader(wordnet["dir"] / s["index"])
                                                ).prefix_bytes
            # word pieces the site's model file lacks: one small request before the search
            rare = "a quixotic zeppelin"
            missing = MiniLM.from_bytes((wordnet["dir"] / s["model"]).read_bytes()
                                        ).missing_tokens([rare])
            assert len(missing)
            ids, rounds = _fill(page, rare)
            assert ids == want(rare) and 2 <= len(rounds) <= 3, rounds
            assert rounds[0]["requests"] == 1, rounds
            assert 388 * len(missing) <= rounds[0]["bytes"] < 388 * len(missing) + 1000, rounds
            for query in ("a large domestic cat", "musical instrument with strings"):
                ids, rounds = _fill(page, query)
                assert ids == want(query)
                assert 1 <= len(rounds) <= 2, rounds
                assert sum(r["requests"] for r in rounds) <= 8, rounds
                assert all(r["bytes"] > 0 for r in rounds), rounds
            # the searches' reads went to the network past the service worker
            assert (True, False) in reads and (True, True) not in reads, reads
            page.wait_for_function("document.querySelector('#app').dataset.offline === 'done'",
                                   timeout=BOOT_MS)
            assert "searches need no network" in page.inner_text(".lorann-status")
            before = dict(server.stats)
            for query in ("a machine that flies", "feeling of great happiness", "to sing"):
                ids, rounds = _fill(page, query)
                assert ids == want(query) and rounds == []
            assert server.stats == before  # not one request
            server.shutdown()
            server.server_close()
            for query in ("the study of stars", "a young dog", "very cold weather"):
                ids, rounds = _fill(page, query)
                assert ids == want(query) and rounds == []
            _open(page, url)  # a reload, the server gone: the site's cache answers
            assert page.evaluate("window.lorannSite.info.local") is True
            ids, rounds = _fill(page, "a place where books are kept")
            assert ids == want("a place where books are kept") and rounds == []
    finally:
        server.shutdown()


def _small_site(folder, **kwargs):
    docs = [("Owls", "Owls hunt at night."), ("Bread", "A starter makes the dough rise."),
            ("Trains", "Trains run on steel rails.")]
    (folder / "v.jsonl").write_text("".join(json.dumps({"title": t, "text": x}) + "\n"
                                            for t, x in docs))
    build_site([str(folder / "v.jsonl")], str(folder / "site"), **kwargs)
    return folder / "site", json.loads((folder / "site" / "site.json").read_text())


def test_a_site_over_its_offline_limit_says_so_and_searches_online(browser, tmp_path):
    """--prefetch-limit: a site whose rest is larger downloads none of it after the
    first answer, and its status line says that new searches need the network."""
    site, manifest = _small_site(tmp_path, prefetch_limit=100_000)
    tokens = "/" + manifest["search"]["tokens"]
    with _page(browser, site) as (page, url):
        reads = []  # (path, Range) of every read
        page.context.on("request", lambda r: r.headers.get("range") and reads.append(
            (r.url.split("?")[0][len(url) - 1:], r.headers["range"])))
        _open(page, url)
        ids, _ = _fill(page, "birds of the night")
        page.wait_for_function("document.querySelector('#app').dataset.offline === 'skipped'")
        status = page.inner_text(".lorann-status")
        assert "New searches need the network" in status and "(0.1 MB)" in status, status
        _fill(page, "bread dough")
        assert page.inner_text(".lorann-link") == "Bread"
        chunk = f"bytes=0-{(512 << 10) - 1}"  # the first chunk of a download
        assert (tokens, chunk) not in reads and not any(r == chunk for _, r in reads), reads
        assert page.evaluate("window.lorannSite.engine.encoder.tokens") == "by range"


def test_a_stopped_offline_download_goes_on_at_the_next_visit(browser, tmp_path):
    """The background download keeps each chunk as it comes, and gives way to a
    search (the chunk in flight is dropped and fetched again later): stopped half
    way (the host loses a file), the status line says so, and the next visit
    fetches only what is missing, then answers new queries with no request."""
    site, manifest = _small_site(tmp_path)
    s = manifest["search"]
    tokens, size = s["tokens"], manifest["files"][s["tokens"]]["bytes"]
    chunk = 512 << 10
    every = {f"bytes={i}-{min(size, i + chunk) - 1}" for i in range(0, size, chunk)}
    assert len(every) >= 8
    server, url = serve_in_background(str(site))
    try:
        with local_page(browser, url) as page:
            got = []  # (visit, Range, status) of each read of the token rows' file
            visit = [1]
            page.context.on("response", lambda r: r.url.split("?")[0] == url + tokens
                            and r.request.headers.get("range") and got.append(
                                (visit[0], r.request.headers["range"], r.status)))
            flight = {"started": [], "ended": []}  # chunk reads of the token rows' file
            for event, key in (("request", "started"), ("requestfinished", "ended"),
                               ("requestfailed", "ended")):
                page.context.on(event, lambda r, key=key: r.url.split("?")[0] == url + tokens
                                and r.headers.get("range") in every
                                and flight[key].append((r.headers["range"], r.failure)))
            _open(page, url)
            server.pacer = Pacer(2e6)  # 16 Mbit/s from now on: the download takes seconds
            _fill(page, "birds of the night")
            page.wait_for_function("(window.lorannSite.offline || {}).loaded > 1e6",
                                   timeout=BOOT_MS)
            while len(flight["started"]) <= len(flight["ended"]):  # until a chunk is on its way
                page.wait_for_timeout(2)
            pending = flight["started"][-1][0]
            _fill(page, "bread dough")
            assert page.inner_text(".lorann-link") == "Bread"
            page.wait_for_function("(window.lorannSite.offline || {}).loaded > 3e6",
                                   timeout=BOOT_MS)
            dropped = [(r, failure) for r, failure in flight["ended"] if failure]
            assert len(dropped) == 1 and dropped[0][0] == pending, flight
            assert "ABORTED" in dropped[0][1], flight
            assert [r for r, _ in flight["started"]].count(pending) == 2, flight  # fetched again
            os.rename(site / tokens, site / (tokens + ".away"))
            page.wait_for_function("document.querySelector('#app').dataset.offline === 'stopped'",
                                   timeout=BOOT_MS)
            status = page.inner_text(".lorann-status")
            assert "download for offline use stopped" in status and "HTTP 404" in status, status
            os.rename(site / (tokens + ".away"), site / tokens)
            server.pacer = None
            first = {r for v, r, code in got if v == 1 and code == 206 and r in every}
            assert 2 <= len(first) < len(every), got
            visit[0] = 2
            _open(page, url)  # a reload
            _fill(page, "bread dough")
            page.wait_for_function("document.querySelector('#app').dataset.offline === 'done'",
                                   timeout=BOOT_MS)
            second = {r for v, r, code in got if v == 2 and r in every}
            assert second and not second & first and second | first == every, got
            before = dict(server.stats)
            ids, rounds = _fill(page, "trains on rails")
            assert rounds == [] and server.stats == before
            assert page.inner_text(".lorann-link") == "Trains"
    finally:
        server.shutdown()


def test_an_empty_facet_value_filters_and_a_blocked_service_worker_is_survived(browser, tmp_path):
    """[21] a facet value "" was an option, but choosing it gave unfiltered results (it
    collided with "Any"); [23] where service workers are blocked the page could not
    start ("Cannot read properties of undefined"): it must work online and say so."""
    docs = [{"title": f"Doc {i}", "text": text, "kind": kind} for i, (text, kind) in enumerate([
        ("Owls hunt mice at night.", ""), ("Hawks hunt by day.", "bird"),
        ("Bats hunt insects at dusk.", ""), ("Cats hunt birds in gardens.", "mammal")])]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    build_site([str(tmp_path / "d.jsonl")], str(tmp_path / "site"), facets=("kind",))
    server, url = serve_in_background(str(tmp_path / "site"))
    try:
        context = browser.new_context(service_workers="block")
        from build_scripts.browser import LocalOnly
        guard = LocalOnly(url)
        context.route("**/*", guard)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        _open(page, url)
        assert "no offline copy" in page.inner_text(".lorann-notice")
        options = page.eval_on_selector_all("select[data-facet=kind] option",
                                            "os => os.map(o => o.textContent)")
        assert options == ["Any kind", "(empty) (2)", "bird (1)", "mammal (1)"]
        _choose_facet(page, "kind", "")
        _ask(page, "animals that hunt")
        titles = page.eval_on_selector_all(".lorann-link", "e => e.map(x => x.textContent)")
        assert set(titles) == {"Doc 0", "Doc 2"}, titles
        page.select_option("select[data-facet=kind]", "")  # "Any kind" again
        _ask(page, "animals that hunt at night")
        assert page.eval_on_selector_all(".lorann-link", "e => e.length") == 4
        assert errors == [] and guard.blocked == []
        context.close()
    finally:
        server.shutdown()
