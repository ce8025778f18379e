"""`lorann-wasm site` as a hostile or careless user meets it: what it reads, what it
refuses before any work, and what it never loses or publishes.

Each test here failed on the code the reliability review tried (see the issue's
items, in brackets).
"""

import fcntl
import json
import os
import threading
import time

import numpy as np
import pytest

from lorann_wasm.cli import main
from lorann_wasm.embed.minilm import minilm_model_dir
from lorann_wasm.embed.tokenizer import WordPieceTokenizer
from lorann_wasm.site import builder, publish
from lorann_wasm.site.documents import Fields, page_url, read_inputs
from lorann_wasm.site.passages import TokenCounter, split_documents


def _docs(*inputs, **kw):
    return {d.id: d for d in read_inputs([str(i) for i in inputs], **kw)}


def test_links_leaving_the_input_folder_are_skipped(tmp_path, capsys):
    """[8] docs/notes.txt -> ../.env put the secret into the site."""
    (tmp_path / ".env").write_text("SECRET_TOKEN=hunter2")
    docs = tmp_path / "docs"
    (docs / "inner").mkdir(parents=True)
    (docs / "page.md").write_text("# Page\n\nPublic text.")
    os.symlink(tmp_path / ".env", docs / "notes.txt")
    os.symlink(tmp_path, docs / "up")  # a folder link out of the root
    os.symlink(docs / "page.md", docs / "inner" / "again.md")  # stays inside: read
    found = _docs(docs)
    assert set(found) == {"page.md", "inner/again.md"}
    assert "hunter2" not in json.dumps([d.sections for d in found.values()])
    err = capsys.readouterr().err
    assert "notes.txt links outside" in err and "up links outside" in err


def test_only_regular_files_are_read_and_huge_pages_are_skipped(tmp_path, capsys, monkeypatch):
    """[12] a named pipe hung `site` forever; a link to /dev/zero ended in MemoryError."""
    from lorann_wasm.site import documents
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.md").write_text("# Fine\n\nText.")
    os.mkfifo(docs / "pipe.md")
    os.symlink("/dev/zero", docs / "zero.txt")
    monkeypatch.setattr(documents, "MAX_PAGE_BYTES", 1000)
    (docs / "big.html").write_text("<p>" + "x" * 2000 + "</p>")
    got = {}
    reader = threading.Thread(target=lambda: got.update(_docs(docs)), daemon=True)
    reader.start()
    reader.join(20)
    assert not reader.is_alive(), "reading the folder hung"
    assert set(got) == {"ok.md"}
    err = capsys.readouterr().err
    assert "pipe.md is not a regular file" in err and "zero.txt links outside" in err
    assert "big.html is 0 MB, more than a page" in err
    with pytest.raises(ValueError, match="pipe.md: not a regular file"):
        _docs(docs / "pipe.md")


def test_an_earlier_search_site_inside_the_html_root_is_not_indexed(tmp_path, capsys):
    """[13] the search page of a previous build appeared among the results."""
    root = tmp_path / "public"
    (root / "search").mkdir(parents=True)
    (root / "guide.html").write_text("<title>Guide</title><p>How to bake.</p>")
    (root / "search" / "index.html").write_text("<title>Search</title><p>Search box.</p>")
    (root / "search" / "site.json").write_text(json.dumps({"generator": "lorann-wasm site"}))
    assert set(_docs(root, html_root=str(root))) == {"guide.html"}
    assert "is a lorann-wasm search site: skipped" in capsys.readouterr().err


def test_under_an_html_root_the_pages_are_its_html_files(tmp_path):
    """[18] each built page's .txt source was indexed beside it (51 % of top results)."""
    root = tmp_path / "public"
    root.mkdir()
    (root / "intro.html").write_text("<title>Intro</title><p>Welcome.</p>")
    (root / "intro.txt").write_text("= Intro\nWelcome (source).")
    (root / "notes.md").write_text("# Notes\n\nDraft.")
    assert set(_docs(root, html_root=str(root))) == {"intro.html"}
    assert set(_docs(root)) == {"intro.html", "intro.txt", "notes.md"}  # a plain folder


def test_links_to_pages_with_special_characters_are_encoded(tmp_path):
    """[20] result links to files named with #, ? or % went to 404."""
    for name, want in [("a#b.html", "a%23b.html"), ("what?.html", "what%3F.html"),
                       ("100%.html", "100%25.html"), ("two words.html", "two%20words.html"),
                       ("sub dir/x#1.html", "sub%20dir/x%231.html")]:
        assert page_url(str(tmp_path / name), str(tmp_path), str(tmp_path)) == want


def test_reading_deeply_nested_html_takes_linear_time():
    """[14] unclosed tags and stray end tags: 96 kB took 5 s, a 1 MB page minutes."""
    from lorann_wasm.site import html_text
    page = "<div><span><p>word " * 20_000 + "</em></b></i>" * 20_000  # 1 MB
    start = time.perf_counter()
    title, sections = html_text.read_html(page)
    assert time.perf_counter() - start < 10  # quadratic: minutes
    assert "word" in sections[0][2]


def test_large_csv_cells_and_every_input_error_name_file_and_line(tmp_path):
    """[15] a CSV cell over 128 KiB ended in a traceback; [16] errors that named
    neither file nor line: invalid UTF-8, lone surrogates, deep JSON, extra cells."""
    (tmp_path / "big.csv").write_text("title,text\nBig," + "word " * 60_000 + "\n")
    (doc,) = _docs(tmp_path / "big.csv").values()
    assert len(doc.sections[0][2]) > 250_000
    cases = [
        ("a.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n', r"a.jsonl:2: not UTF-8"),
        ("b.jsonl", b'{"text": "ok"}\n{"text": "x\\ud800y"}\n', r"b.jsonl:2: .*lone surrogate"),
        ("c.jsonl", b"[" * 100_000 + b"\n", r"c.jsonl:1: JSON nested too deep"),
        ("d.csv", b"title,text\nA,one\nB,two,three\n", r"d.csv: row 3: 1 more cell"),
        ("e.csv", b"title,text\nA,\xff\xfe\n", r"e.csv: .*not UTF-8"),
    ]
    for name, raw, message in cases:
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(ValueError, match=message):
            _docs(tmp_path / name)


def test_text_without_spaces_or_latin_stops_is_cut_and_kept_whole(tmp_path):
    """[17] a 504-token Japanese section became one passage whose second half was never
    embedded; text with no sentence end at all is cut by tokens, nothing dropped."""
    tokenizer = WordPieceTokenizer(os.path.join(minilm_model_dir(), "vocab.txt"))
    count = TokenCounter(tokenizer)
    sentence = "東京は日本の首都であり、世界で最も人口の多い都市の一つです。"
    for text in (sentence * 18, sentence.replace("。", "") * 18):
        (tmp_path / "ja.jsonl").write_text(json.dumps({"title": "", "text": text},
                                                      ensure_ascii=False) + "\n")
        docs = list(read_inputs([str(tmp_path / "ja.jsonl")]))
        passages = split_documents(docs, tokenizer, max_tokens=200)
        assert count(text) > 500 and len(passages) >= 3
        assert all(count(p.text) <= 200 for p in passages)
        joined = "".join(p.text.replace(" ", "") for p in passages)
        for piece in text.split("。"):  # every sentence is somewhere
            assert piece in joined


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "docs.jsonl").write_text(json.dumps({"title": "A", "text": "Owls hunt."}) + "\n")
    return tmp_path


def test_an_output_holding_an_input_or_the_current_folder_is_refused_first(inputs, monkeypatch,
                                                                           capsys):
    """[9] `site site/notes -o site` deleted site/notes; [10] `-o .` did all the work,
    then failed. Both are refused in one line, before anything is read or embedded."""
    site = inputs / "site"
    (site / "notes").mkdir(parents=True)
    (site / "notes" / "mine.md").write_text("# Mine\n\nPrecious.")
    (site / "site.json").write_text(json.dumps({"generator": "lorann-wasm site"}))
    monkeypatch.setattr(builder, "_embed", lambda *a, **k: pytest.fail("did the work"))
    assert main(["site", str(site / "notes"), "-o", str(site)]) == 1
    assert "holds the input" in capsys.readouterr().err
    assert (site / "notes" / "mine.md").read_text() == "# Mine\n\nPrecious."
    monkeypatch.chdir(site)
    assert main(["site", str(inputs / "docs.jsonl"), "-o", "."]) == 1
    err = capsys.readouterr().err
    assert "holds the current directory" in err and err.count("\n") == 1


def test_a_killed_build_leaves_nothing_the_next_one_does_not_clean(inputs):
    """[11] a killed build left a hidden .lorann-site-* folder (17-40 MB) beside -o,
    forever. The next build removes such folders of its own, and only those."""
    stale = inputs / ".lorann-site-killed"
    stale.mkdir()
    (stale / publish.STAGING_LOCK).write_text("")
    (stale / "index.html").write_text("half a site")
    busy = inputs / ".lorann-site-running"  # another build, still working
    busy.mkdir()
    fd = os.open(busy / publish.STAGING_LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    other = inputs / ".lorann-site-not-ours"  # no lock file: not ours to judge
    other.mkdir()
    try:
        builder.build_site([str(inputs / "docs.jsonl")], str(inputs / "out"))
    finally:
        os.close(fd)
    assert not stale.exists() and busy.exists() and other.exists()
    left = [p for p in os.listdir(inputs) if p.startswith(".lorann-site-")]
    assert sorted(left) == [".lorann-site-not-ours", ".lorann-site-running"]
    assert not (inputs / "out" / publish.STAGING_LOCK).exists()


def test_bad_vectors_are_reported_as_vectors_not_as_facets(inputs):
    """[16] --vectors problems were reported as --facet-field errors."""
    bad = np.ones((1, 8), np.float32)
    bad[0, 3] = np.nan
    np.save(inputs / "v.npy", bad)
    with pytest.raises(builder.SiteError, match=r"--vectors .*v.npy: .*NaN"):
        builder.build_site([str(inputs / "docs.jsonl")], str(inputs / "out"),
                           vectors=str(inputs / "v.npy"))
    np.save(inputs / "z.npy", np.zeros((1, 8), np.float32))
    with pytest.raises(builder.SiteError, match=r"--vectors .*z.npy"):
        builder.build_site([str(inputs / "docs.jsonl")], str(inputs / "out"),
                           vectors=str(inputs / "z.npy"))


def test_the_hint_serves_what_makes_the_result_links_work(tmp_path, capsys):
    """[19] after `site --html-root public -o public/search/` the hint said to serve
    public/search/, where every result link (../page.html) went to 404."""
    from lorann_wasm.site.serve import find_sites
    public = tmp_path / "public"
    public.mkdir()
    (public / "page.html").write_text("<title>Page</title><p>Owls hunt at night.</p>")
    assert main(["site", "--html-root", str(public), "-o", str(public / "search")]) == 0
    hint = capsys.readouterr().out.strip().splitlines()[-1]
    assert hint.endswith(f"Try it: lorann-wasm serve {public}"), hint
    assert find_sites(public) == ["search/"]  # served from there, it opens the search page
