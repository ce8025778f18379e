"""`lorann-wasm site` in CPython: reading inputs, passages, records, the
embedding cache, the wheel for Pyodide, and an output that is never half made."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from lorann_wasm import LorannIndex
from lorann_wasm.embed.cache import EmbeddingCache
from lorann_wasm.embed.minilm import minilm_model_dir
from lorann_wasm.embed.tokenizer import WordPieceTokenizer
from lorann_wasm.site import builder
from lorann_wasm.site.bundle import package_wheel, site_encoder
from lorann_wasm.site.documents import Fields, read_inputs, read_markdown
from lorann_wasm.site.html_text import read_html
from lorann_wasm.site.passages import TokenCounter, split_documents
from lorann_wasm.site.records import read_records

PAGE = """<html><head><title>Bread &amp; <b>more</b></title><style>p{}</style></head><body>
<nav>Home Menu</nav><header>Banner</header><div role="navigation">Sidebar</div>
<main><h1 id="top">Sourdough</h1><p>Bake bread <em>slowly</em>.</p>
<div data-lorann-ignore>An advertisement</div>
<section id="starter"><h2>The starter<a class="headerlink" href="#starter">¶</a></h2>
<p>Flour and water.</p><script>alert(1)</script></section></main>
<footer>Copyright</footer></body></html>"""


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer(os.path.join(minilm_model_dir(), "vocab.txt"))


def test_html_reads_the_content_not_the_chrome():
    title, sections = read_html(PAGE)
    assert title == "Bread & more"
    assert [(h, a) for h, a, _ in sections] == [("Sourdough", "top"), ("The starter", "starter")]
    text = " ".join(t for _, _, t in sections)
    assert "Bake bread slowly." in text and "Flour and water." in text
    for chrome in ("Home Menu", "Banner", "Sidebar", "advertisement", "Copyright", "alert", "¶"):
        assert chrome not in text
    # without main/article, the whole body (minus chrome) is read
    _, sections = read_html("<body><nav>x</nav><p>Only this.</p></body>")
    assert [t for _, _, t in sections] == ["Only this."]
    # data-lorann-body wins over main
    _, sections = read_html("<main><p>Main.</p><div data-lorann-body><p>Body.</p></div></main>")
    assert [t for _, _, t in sections] == ["Body."]


def test_markdown_sections_and_anchors():
    title, sections = read_markdown("# Guide\n\nIntro.\n\n## Set up Things!\n\nDo it.\n"
                                    "```\n# not a heading\n```\n")
    assert title == "Guide"
    assert [(h, a) for h, a, _ in sections] == [("Guide", "guide"), ("Set up Things!", "set-up-things")]
    assert "# not a heading" in sections[1][2]


def test_inputs_of_every_kind(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "x", "title": "T", "text": "Hello", "pos": "n"}\n\n'
                                      '{"text": "Second", "url": "https://e.org/2"}\n')
    (tmp_path / "b.csv").write_text("body,name\nCsv text,Row one\n")
    site = tmp_path / "public"
    (site / "docs").mkdir(parents=True)
    (site / "docs" / "index.html").write_text(PAGE)
    (site / "notes.md").write_text("# Notes\n\nText.\n")
    docs = list(read_inputs([str(tmp_path / "a.jsonl")], Fields(extra=("pos",))))
    assert [(d.id, d.title, d.url, d.fields) for d in docs] == [
        ("x", "T", None, {"pos": "n"}), ("1", "", "https://e.org/2", {"pos": None})]
    (doc,) = read_inputs([str(tmp_path / "b.csv")], Fields(text="body", title="name"))
    assert (doc.title, doc.sections) == ("Row one", [("", None, "Csv text")])
    # a built site, the search page inside it: links relative to the search page; its
    # pages are its HTML files (the .md beside them is a source, not a page) ...
    docs = {d.id: d for d in read_inputs([str(site)], html_root=str(site),
                                         link_base=str(site / "search"))}
    assert docs["docs/index.html"].url == "../docs/" and "notes.md" not in docs
    # ... unless given as an input itself
    docs = {d.id: d for d in read_inputs([str(site), str(site / "notes.md")],
                                         html_root=str(site), link_base=str(site / "search"))}
    assert docs["notes.md"].url is None and docs["notes.md"].title == "Notes"


@pytest.mark.parametrize("bad, message", [
    ('{"title": "no text"}', r"a.jsonl:1: no 'text' field"),
    ('{"text": 5.5, "title": ["x"]}', r"a.jsonl:1: field 'title' must be a string"),
    ('not json', r"a.jsonl:1: not valid JSON"),
    ('[1, 2]', r"a.jsonl:1: expected an object"),
])
def test_bad_records_are_named(tmp_path, bad, message):
    (tmp_path / "a.jsonl").write_text(bad + "\n")
    with pytest.raises(ValueError, match=message):
        list(read_inputs([str(tmp_path / "a.jsonl")]))


def test_byte_order_marks_and_other_encodings(tmp_path, capsys):
    (tmp_path / "a.csv").write_bytes("\ufefftitle,text\nT,Body\n".encode("utf-8"))
    (tmp_path / "b.jsonl").write_bytes('\ufeff{"text": "x"}\n'.encode("utf-8"))
    assert [d.title for d in read_inputs([str(tmp_path / "a.csv")])] == ["T"]
    assert len(list(read_inputs([str(tmp_path / "b.jsonl")]))) == 1
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "old.html").write_bytes("<title>Caf\xe9</title><p>Cr\xe8me br\xfbl\xe9e</p>".encode("latin-1"))
    (doc,) = read_inputs([str(pages)])
    assert doc.title == "Caf\ufffd" and "Cr\ufffdme" in doc.sections[0][2]
    assert "old.html is not UTF-8 (byte 10)" in capsys.readouterr().err


def test_unknown_and_missing_inputs(tmp_path):
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(ValueError, match="unknown input type"):
        list(read_inputs([str(tmp_path / "x.pdf")]))
    with pytest.raises(ValueError, match="no such file"):
        list(read_inputs([str(tmp_path / "missing.jsonl")]))


def test_passages_fit_the_window_overlap_and_keep_short_text(tokenizer):
    from lorann_wasm.site.documents import Document
    sentences = [f"Sentence number {i} talks about topic {i} at some length." for i in range(60)]
    long = Document("d", "A title", None, [("Part", "part", " ".join(sentences)),
                                           ("", None, "Short text, unchanged.")])
    passages = split_documents([long], tokenizer, max_tokens=64)
    count = TokenCounter(tokenizer)
    body = [p for p in passages if p.heading == "Part"]
    assert len(body) > 5 and all(count(p.text) <= 64 for p in body)
    assert all(count(p.embed_text) <= 254 for p in passages)
    for a, b in zip(body, body[1:]):  # each passage starts with the end of the one before
        assert a.text.split(". ")[-1] in b.text
    joined = " ".join(p.text for p in body)
    assert all(s in joined for s in sentences)
    assert passages[-1].text == "Short text, unchanged."
    assert passages[-1].embed_text == "A title: Short text, unchanged."
    assert body[0].embed_text.startswith("A title — Part: ")
    with pytest.raises(ValueError, match="passage tokens"):
        split_documents([long], tokenizer, max_tokens=300)


def test_embedding_cache_embeds_each_text_once(tmp_path):
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.array([[len(t), t.count("a")] for t in texts], np.float32)

    cache = EmbeddingCache(tmp_path, "toy")
    first = cache.embed(["a", "bb", "a", "ccc"], encode)
    assert calls == [["a", "bb", "ccc"]]
    assert first.tolist() == [[1, 1], [2, 0], [1, 1], [3, 0]]
    again = cache.embed(["ccc", "dddd", "a"], encode)  # one new text
    assert calls[-1] == ["dddd"] and again.tolist() == [[3, 0], [4, 0], [1, 1]]
    # a damaged chunk is not trusted by a later run: its texts are embedded again
    shard = sorted(os.listdir(tmp_path / "toy"))[0]
    with open(tmp_path / "toy" / shard, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        f.write(b"\xff\xff\xff")
    EmbeddingCache(tmp_path, "toy").embed(["a"], encode)
    assert calls[-1] == ["a"]
    with pytest.raises(ValueError, match="plain name"):
        EmbeddingCache(tmp_path, "../escape")


def test_an_interrupted_embedding_keeps_finished_chunks(tmp_path, monkeypatch):
    from lorann_wasm.embed import cache as cache_module
    monkeypatch.setattr(cache_module, "CHUNK", 2)
    done = []

    def encode(texts):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(texts)
        return np.ones((len(texts), 3), np.float32)

    texts = [f"t{i}" for i in range(7)]
    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache(tmp_path, "m").embed(texts, encode)
    rest = []
    EmbeddingCache(tmp_path, "m").embed(texts, lambda t: rest.append(t) or np.ones((len(t), 3)))
    assert sum(map(len, rest)) == 3  # only the texts of the unfinished chunks


def test_number_by_position_keeps_results(tmp_path):
    from lorann_wasm.lazy import FileReader, LazyIndex
    x = np.random.default_rng(0).standard_normal((800, 16)).astype(np.float32)
    index = LorannIndex(x, n_clusters=8, rank=8).build(target_recall=None)
    before = index.search(x[:20], 5)
    old = index.number_by_position()
    assert sorted(old) == list(range(800))
    now = index.search(x[:20], 5)
    assert (old[now] == before).all()
    index.save(tmp_path / "i.lorann")
    assert (LorannIndex.load(tmp_path / "i.lorann").search(x[:20], 5) == now).all()
    # the clusters' checksums cover the new ids: lazily fetched clusters verify
    lazy = LazyIndex(FileReader(str(tmp_path / "i.lorann")))
    assert (lazy.search(x[:20], 5) == now).all()


def test_the_pyodide_wheel_is_reproducible_and_query_side_only(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = package_wheel(str(tmp_path / "a"))
    package_wheel(str(tmp_path / "b"))
    assert (tmp_path / "a" / first).read_bytes() == (tmp_path / "b" / first).read_bytes()
    names = zipfile.ZipFile(tmp_path / "a" / first).namelist()
    assert "lorann_wasm/bridge.py" in names and "lorann_wasm/query/engine.py" in names
    assert not any(n.startswith(("lorann_wasm/training/", "lorann_wasm/site/")) for n in names)


@pytest.fixture(scope="module")
def small_site(tmp_path_factory):
    work = tmp_path_factory.mktemp("site")
    (work / "docs.jsonl").write_text("".join(
        json.dumps({"id": f"d{i}", "title": f"Doc {i}", "text": t, "url": f"p{i}.html",
                    "kind": "odd" if i % 2 else "even"}) + "\n"
        for i, t in enumerate(["Cats purr and sleep all day.", "Trains run on rails.",
                               "Bread needs flour, water and time.", "Rain falls from clouds.",
                               "Violins have four strings."])))
    out = work / "out"
    manifest = builder.build_site([str(work / "docs.jsonl")], str(out),
                                  fields=Fields(extra=("kind",)))
    return work, out, manifest


def test_site_files_records_and_manifest(small_site):
    work, out, manifest = small_site
    s = manifest["search"]
    assert (s["documents"], s["passages"], s["n"]) == (5, 5, 5)
    for name in ("index.html", "widget.js", "sw.js", "site.json", s["index"], s["model"], manifest["wheel"],
                 "pyodide/pyodide.asm.wasm"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "site.json").read_text())
    assert on_disk["version"] == manifest["version"] and len(manifest["version"]) == 16
    assert set(on_disk["files"]) == {str(p.relative_to(out)) for p in out.rglob("*")
                                     if p.is_file() and p.name != "site.json"
                                     and p.suffix != ".gz"}
    _check_gzip_siblings(out, on_disk)
    records = read_records((out / s["records"]).read_bytes(), (out / s["offsets"]).read_bytes(),
                           range(5), s["n"], s["length_bytes"])
    assert sorted(r["t"] for r in records) == [f"Doc {i}" for i in range(5)]
    assert all(r["u"] == f"p{r['t'][-1]}.html" and r["f"]["kind"] in ("odd", "even") for r in records)
    # the index's ids are record numbers
    model = site_encoder(out, s)
    index = LorannIndex.load(out / s["index"])
    (best,) = index.search(model.encode("a violin"), 1)
    assert records[best]["t"] == "Doc 4"


def _check_gzip_siblings(out, manifest):
    """Files fetched whole travel gzipped when that pays (the runtime's wasm, the pages,
    site.json itself); the lazily read data never does, nor files zip already packs."""
    import gzip
    s = manifest["search"]
    packed = {str(p.relative_to(out))[:-3] for p in out.rglob("*.gz")}
    assert {"pyodide/pyodide.asm.wasm", "pyodide/pyodide.asm.js", "worker.js",
            "site.json"} <= packed
    assert not packed & {s["index"], s["records"], s["offsets"], s["tokens"], manifest["wheel"]}
    assert packed <= set(manifest["files"]) | {"site.json"}
    for name in packed:
        assert gzip.decompress((out / (name + ".gz")).read_bytes()) == (out / name).read_bytes()


def test_rebuild_replaces_a_site_but_never_other_folders(small_site, tmp_path):
    work, out, manifest = small_site
    (work / "docs.jsonl").open("a").write(json.dumps({"text": "Bicycles have chains."}) + "\n")
    again = builder.build_site([str(work / "docs.jsonl")], str(out))
    assert again["search"]["documents"] == 6 and again["version"] != manifest["version"]
    assert not [p for p in os.listdir(work) if p.startswith(".lorann")]  # no leftovers
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(builder.SiteError, match="not a site made by lorann-wasm"):
        builder.build_site([str(work / "docs.jsonl")], str(mine))
    assert (mine / "thesis.tex").read_text() == "precious"
    with pytest.raises(builder.SiteError, match="holds the input"):
        builder.build_site([str(work)], str(work))


def test_a_failed_build_leaves_the_old_site(small_site, monkeypatch):
    work, out, _ = small_site
    before = (out / "site.json").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(builder, "write_records", broken)
    with pytest.raises(OSError, match="disk full"):
        builder.build_site([str(work / "docs.jsonl")], str(out))
    assert (out / "site.json").read_bytes() == before
    assert not [p for p in os.listdir(work) if p.startswith(".lorann")]


def test_cli_site_errors_are_one_line(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "lorann_wasm", *args], capture_output=True,
                              text=True, cwd=tmp_path)
    (tmp_path / "empty").mkdir()
    r = run("site", "empty", "-o", "out")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == \
        "lorann-wasm: error: no documents found in empty"
    (tmp_path / "a.jsonl").write_text('{"body": "x"}\n')
    r = run("site", "a.jsonl", "-o", "out")
    assert r.returncode == 1 and "a.jsonl:1: no 'text' field (choose one with --text-field)" in r.stderr
    r = run("site", "a.jsonl", "-o", "out", "--passage-tokens", "999")
    assert r.returncode == 1 and "passage tokens must be in [16, 254]" in r.stderr
    for limit in ("-1", "nan", "inf", "2e12", "lots"):  # NaN said "cannot convert float NaN"
        r = run("site", "a.jsonl", "-o", "out", "--prefetch-limit", limit)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
            f"lorann-wasm: error: argument --prefetch-limit: expected a number of MB from 0 "
            f"to 1e12, got {limit!r}"), r.stderr
    assert not (tmp_path / "out").exists()
    assert "Traceback" not in r.stderr


def test_own_vectors_make_a_site_without_a_model(tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n"
                                              for i in range(40)))
    vectors = np.random.default_rng(0).standard_normal((40, 24)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    manifest = builder.build_site([str(tmp_path / "d.jsonl")], str(tmp_path / "out"),
                                  vectors=str(tmp_path / "v.npy"))
    s = manifest["search"]
    assert "model" not in s and (s["n"], s["dim"], s["distance"]) == (40, 24, "cosine")
    index = LorannIndex.load(tmp_path / "out" / s["index"])
    records = read_records((tmp_path / "out" / s["records"]).read_bytes(),
                           (tmp_path / "out" / s["offsets"]).read_bytes(), range(40), s["n"],
                           s["length_bytes"])
    best = index.search(vectors[7], 1)[0]
    assert records[best]["x"] == "doc 7"
    assert set(records[best]) == {"d", "t", "x"}  # no link, heading or fields: left out
    np.save(tmp_path / "bad.npy", vectors[:39])
    with pytest.raises(builder.SiteError, match=r"one vector per document \(40 rows\)"):
        builder.build_site([str(tmp_path / "d.jsonl")], str(tmp_path / "out2"),
                           vectors=str(tmp_path / "bad.npy"))


def test_a_runtime_that_cannot_be_fetched_is_one_clear_error_before_any_work(tmp_path):
    """No npm and no cached runtime: one line says what is missing, nothing is written."""
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python3")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "LORANN_WASM_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "lorann_wasm", "site", "a.jsonl", "-o", "out"],
                       cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("lorann-wasm: error: npm is needed once to fetch the Pyodide runtime")
    assert str(tmp_path / "cache" / "pyodide-0.27.7") in last
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache" / "embeddings").exists()


PYTHON_DOCS = "/usr/share/doc/python3/html"  # Debian python3-doc (setup.sh --tests)


def test_real_documentation_pages_python3_doc(tokenizer, tmp_path):
    """The Python tutorial as built by Sphinx: the content, not the chrome, with anchors
    that exist in the pages, and a site whose answers lead to the right page."""
    import shutil
    assert os.path.isdir(PYTHON_DOCS), "install Debian's python3-doc (bash build_scripts/setup.sh --tests)"
    root = tmp_path / "public"
    for page in ("controlflow.html", "errors.html", "datastructures.html"):
        (root / "tutorial").mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(PYTHON_DOCS, "tutorial", page), root / "tutorial" / page)
    docs = list(read_inputs([str(root)], html_root=str(root), link_base=str(root / "search")))
    assert [d.url for d in docs] == ["../tutorial/controlflow.html", "../tutorial/datastructures.html",
                                     "../tutorial/errors.html"]
    for doc in docs:
        source = (root / "tutorial" / doc.url.split("/")[-1]).read_text()
        assert doc.title.endswith("documentation") and len(doc.sections) >= 5
        for heading, anchor, text in doc.sections:
            assert f'id="{anchor}"' in source, anchor
            for chrome in ("Table of Contents", "Previous topic", "Quick search", "Navigation", "¶"):
                assert chrome not in text
    passages = split_documents(docs, tokenizer)
    count = TokenCounter(tokenizer)
    assert len(passages) > 40 and all(count(p.embed_text) <= 254 for p in passages)
    manifest = builder.build_site([], str(root / "search"), html_root=str(root))
    s = manifest["search"]
    model = site_encoder(root / "search", s)
    index = LorannIndex.load(root / "search" / s["index"])
    records = read_records((root / "search" / s["records"]).read_bytes(),
                           (root / "search" / s["offsets"]).read_bytes(), range(s["n"]), s["n"],
                           s["length_bytes"])
    best = records[index.search(model.encode("how do I catch an exception"), 1)[0]]
    assert best["u"].startswith("../tutorial/errors.html#"), best["u"]


def test_facet_fields_become_filters(tmp_path):
    """--facet-field: the index filters by it, site.json lists its values, and pages
    in folders get their top folder as ``section``."""
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(
        {"text": f"doc {i}", "kind": ["cat", "dog"][i % 2], **({"tags": ["a", "b"][:i % 3]}
                                                                if i % 3 else {})}) + "\n"
        for i in range(40)))
    vectors = np.random.default_rng(0).standard_normal((40, 24)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    out = tmp_path / "out"
    manifest = builder.build_site([str(tmp_path / "d.jsonl")], str(out),
                                  vectors=str(tmp_path / "v.npy"), facets=["kind", "tags"])
    s = manifest["search"]
    assert s["facets"] == [{"name": "kind", "values": [["cat", 20], ["dog", 20]]},
                           {"name": "tags", "values": [["a", 26], ["b", 13]]}]
    assert s["fields"] == ["kind", "tags"]
    index = LorannIndex.load(out / s["index"])
    assert [(c["name"], c["kind"]) for c in index.params["attributes"]] == [
        ("kind", "string"), ("tags", "strings")]
    records = read_records((out / s["records"]).read_bytes(), (out / s["offsets"]).read_bytes(),
                           range(40), s["n"], s["length_bytes"])
    ids = index.search(vectors[3], 10, where={"kind": "dog", "tags": "b"})
    assert len(ids) == 10 and all(
        records[i]["f"]["kind"] == "dog" and "b" in records[i]["f"]["tags"] for i in ids if i >= 0)
    assert (ids >= 0).sum() == sum(1 for i in range(40) if i % 2 and i % 3 == 2)

    pages = tmp_path / "pages"
    for folder, name in [("tutorial", "a"), ("tutorial", "b"), ("howto", "c"), (".", "d")]:
        (pages / folder).mkdir(parents=True, exist_ok=True)
        (pages / folder / f"{name}.md").write_text(f"# Page {name}\n\nAbout {name}.\n")
    np.save(tmp_path / "p.npy", vectors[:4])
    manifest = builder.build_site([str(pages)], str(tmp_path / "out2"),
                                  vectors=str(tmp_path / "p.npy"), facets=["section"])
    assert manifest["search"]["facets"] == [
        {"name": "section", "values": [["howto", 1], ["tutorial", 2]]}]
    with pytest.raises(builder.SiteError, match="--facet-field: attribute name 'my field'"):
        builder.build_site([str(tmp_path / "d.jsonl")], str(tmp_path / "out3"),
                           vectors=str(tmp_path / "v.npy"), facets=["my field"])


def test_a_rebuild_embeds_only_the_edited_documents_passages(tmp_path, capfd):
    import uuid
    tag = uuid.uuid4().hex  # texts no earlier run has cached
    docs = [{"id": f"d{i}", "title": f"Doc {i}", "text": f"{t} ({tag})"}
            for i, t in enumerate(["Owls hunt at night.", "Kettles boil water.",
                                   "Maps show roads and rivers."])]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    builder.build_site([str(src)], str(tmp_path / "out"))
    assert "3 passages to embed" in capfd.readouterr().err
    docs[1]["text"] = f"Kettles boil water quickly. ({tag})"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    builder.build_site([str(src)], str(tmp_path / "out"))
    err = capfd.readouterr().err
    assert "1 passage to embed" in err and "(2 from the cache)" in err
    assert "embedded 1 passage in" in err


def test_the_explorer_is_part_of_a_site_and_covered_by_its_version(small_site, tmp_path):
    """The demo used to add the explorer after `lorann-wasm site` and rewrite site.json
    without listing the new files (the service worker's version did not cover them);
    now `--explorer-index` makes it part of the site, written in the same staging."""
    from lorann_wasm.site.explorer import parse_explorer

    work, _, manifest = small_site
    index_path = tmp_path / "x.lorann"
    LorannIndex(np.random.default_rng(1).standard_normal((300, 16)).astype(np.float32),
                n_clusters=4, rank=4).build(target_recall=None).save(index_path)
    explorer = parse_explorer([f"x={index_path}:Random X"], ["x=4x4"])
    site = tmp_path / "site"
    made = builder.build_site([str(work / "docs.jsonl")], str(site),
                              fields=Fields(extra=("kind",)), explorer=explorer)
    on_disk = json.loads((site / "site.json").read_text())
    assert on_disk["version"] == made["version"] != manifest["version"]
    assert on_disk["indexes"] == [{"name": "x", "title": "Random X", "file": "indexes/x.lorann",
                                   "bytes": index_path.stat().st_size, "n": 300, "dim": 16,
                                   "distance": "ip", "preview": [4, 4]}]
    assert on_disk["links"] == [{"href": "explorer.html", "text": "Vector explorer"}]
    assert {"explorer.html", "explorer.js", "indexes/x.lorann"} <= set(on_disk["files"])
    assert (site / "indexes/x.lorann").read_bytes() == index_path.read_bytes()
    assert set(on_disk["files"]) == {str(p.relative_to(site)) for p in site.rglob("*")
                                     if p.is_file() and p.name != "site.json"
                                     and p.suffix != ".gz"}
    _check_gzip_siblings(site, on_disk)
    assert not (site / "indexes/x.lorann.gz").exists()  # read by Range


def test_explorer_options_are_checked_before_any_work(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "lorann_wasm", *args], capture_output=True,
                              text=True, cwd=tmp_path)
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "bad.lorann").write_bytes(b"not an index")
    index_path = tmp_path / "x.lorann"
    LorannIndex(np.random.default_rng(1).standard_normal((50, 9)).astype(np.float32),
                n_clusters=2, rank=2).build(target_recall=None).save(index_path)
    for args, message in [
        (["--explorer-index", "x"], "expected NAME=PATH[:TITLE]"),
        (["--explorer-index", "../x=x.lorann"], "expected NAME=PATH[:TITLE]"),
        (["--explorer-index", "x=missing.lorann"], "--explorer-index x: "),
        (["--explorer-index", "x=bad.lorann"], "--explorer-index x: "),
        (["--explorer-index", "x=x.lorann", "--explorer-index", "x=x.lorann"], "given twice"),
        (["--explorer-index", "x=x.lorann", "--explorer-image", "y=3x3"], "no --explorer-index"),
        (["--explorer-index", "x=x.lorann", "--explorer-image", "x=3by3"], "expected WIDTHxHEIGHT"),
        (["--explorer-index", "x=x.lorann", "--explorer-image", "x=4x4"],
         "4x4 pixels, but its vectors have 9 dimensions"),
    ]:
        r = run("site", "a.jsonl", "-o", "out", *args)
        assert r.returncode == 1 and message in r.stderr.strip().splitlines()[-1], (args, r.stderr)
        assert "Traceback" not in r.stderr and "embedd" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_record_offsets_are_anchors_and_lengths(tmp_path):
    """offsets.bin holds every 64th record's offset and each record's length: 2 bytes a
    record while all are shorter than 64 KiB, 4 once one is not; a damaged length
    no longer adds up to the next anchor."""
    from lorann_wasm.site.records import ANCHOR, anchor_bytes, read_offsets, write_records

    short = [json.dumps({"x": "a" * (i % 300)}).encode() for i in range(2 * ANCHOR + 5)]
    count, width, head = write_records(tmp_path / "r.bin", tmp_path / "o.bin", short)
    raw = (tmp_path / "o.bin").read_bytes()
    assert (count, width, head) == (len(short), 2, anchor_bytes(len(short))) and head == 24
    assert len(raw) == head + 2 * count
    want = np.concatenate([[0], np.cumsum([len(r) for r in short])])
    assert np.array_equal(read_offsets(raw, count, width), want)
    assert read_records((tmp_path / "r.bin").read_bytes(), raw, [0, 130], count, width) == [
        json.loads(short[0]), json.loads(short[130])]
    bad = bytearray(raw)
    bad[head + 2 * 3] ^= 1  # record 3's length: the anchor of record 64 disagrees
    with pytest.raises(ValueError, match="do not add up"):
        read_offsets(bytes(bad), count, width)
    long = short[:3] + [json.dumps({"x": "b" * 70_000}).encode()]
    count, width, head = write_records(tmp_path / "r2.bin", tmp_path / "o2.bin", long)
    assert width == 4 and head == 8
    assert read_records((tmp_path / "r2.bin").read_bytes(), (tmp_path / "o2.bin").read_bytes(),
                        [3], count, width)[0]["x"] == "b" * 70_000
