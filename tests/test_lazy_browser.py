"""Lazy loading in real headless Chromium: a multi-hundred-MB index over HTTP Range.

The index is built out of core in CPython and served by the local static
server; the worker fetches the prefix, then each query's probed clusters.
Results must equal CPython's, and the first query must fetch at most 2% of
the file.
"""

import os

import numpy as np
import pytest

from lorann_wasm.site.explorer import build_explorer_site
from conftest import local_page, recall, served
from lorann_wasm import ExactIndex, LorannIndex
from lorann_wasm.bench.datasets import low_rank_mixture
from lorann_wasm.lazy import FileReader, LazyIndex
from lorann_wasm.training.out_of_core import build_file

N_QUERIES = 200
BIG = (250_000, 384)  # float32 rerank vectors: about 400 MB
CLUSTERS_TO_SEARCH = 4
CACHE_BYTES = 96 << 20
BOOT_MS = 120_000


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("lazy")
    n, d = BIG
    both = low_rank_mixture(n + N_QUERIES, d, seed=41)
    data, queries = both[:n], both[n:]
    small = LorannIndex(data[:20000, :64], rank=16, seed=1).build(target_recall=None)
    small.save(work / "small.lorann")
    root = str(work / "site")
    build_explorer_site(root, [("small", str(work / "small.lorann"), "small")])
    big_path = os.path.join(root, "indexes", "big.lorann")
    build_file(data, big_path, distance="l2", seed=0, n_clusters=700)
    truth = ExactIndex(data, distance="l2").search(queries, 10)
    del both, data
    queries.tofile(os.path.join(root, "indexes", "big.queries.bin"))
    old = os.path.join(os.path.dirname(__file__), "data", "made-before-the-redesign.lorann")
    with open(old, "rb") as src, open(os.path.join(root, "indexes", "old.lorann"), "wb") as dst:
        dst.write(src.read())
    raw = bytearray((work / "small.lorann").read_bytes())
    raw[-10] ^= 0x40  # inside the last cluster's vectors
    with open(os.path.join(root, "indexes", "corrupt.lorann"), "wb") as f:
        f.write(raw)
    with served(root) as url:
        yield {"root": root, "url": url, "queries": queries, "truth": truth, "big": big_path,
               "small": small, "small_path": str(work / "small.lorann")}


@pytest.fixture
def page(browser, site):
    with local_page(browser, site["url"]) as p:
        p.goto(site["url"] + "bench.html")
        p.wait_for_function("window.LorannEngine !== undefined")
        yield p


RUN_LAZY = """async ([url, count, k, c, cacheBytes]) => {
  const engine = await window.LorannEngine.create({});
  const t0 = performance.now();
  const info = await engine.loadIndex(url, { lazy: true, cacheBytes });
  const openMs = performance.now() - t0;
  const q = new Float32Array(await (await fetch("indexes/big.queries.bin")).arrayBuffer());
  const dim = info.dim;
  const run = async (from) => {
    const ids = [], fetched = [], ms = [];
    for (let i = from; i < count; i++) {
      const r = await engine.search(q.subarray(i * dim, (i + 1) * dim), k, { clustersToSearch: c });
      ids.push(Array.from(r.ids)); fetched.push(r.fetched); ms.push(r.ms);
    }
    return { ids, fetched, ms };
  };
  const cold = await run(0);
  const warm = await run(count - 10);  // the last 10 again: their clusters are cached
  engine.terminate();
  return { info, openMs, cold, warm };
}"""


def test_lazy_index_over_http_range_matches_cpython(page, site):
    size = os.path.getsize(site["big"])
    assert size > 300e6
    got = page.evaluate(RUN_LAZY, ["indexes/big.lorann", N_QUERIES, 10, CLUSTERS_TO_SEARCH,
                                   CACHE_BYTES])
    info = got["info"]
    assert info["lazy"] and info["bytes"] == size and info["n"] == BIG[0]
    full = LorannIndex.load(site["big"])
    want = np.stack([full.search(q, 10, clusters_to_search=CLUSTERS_TO_SEARCH)
                     for q in site["queries"]])
    ids = np.array(got["cold"]["ids"])
    assert np.array_equal(ids, want), np.mean(np.all(ids == want, axis=1))
    assert np.array_equal(np.array(got["warm"]["ids"]), want[-10:])
    assert recall(want, site["truth"]) >= 0.9
    # first query: header + prefix + its probed clusters, at most 2% of the file
    first = info["fetched"]["bytes"] + got["cold"]["fetched"][0]["bytes"]
    assert first <= 0.02 * size, (first, size)
    assert got["cold"]["fetched"][0]["clusters"] == CLUSTERS_TO_SEARCH
    # the cache keeps the last 10 queries' clusters: repeating them fetches nothing
    assert all(f["bytes"] == 0 for f in got["warm"]["fetched"])
    assert all(f["cached_bytes"] <= CACHE_BYTES + 8e6 for f in got["cold"]["fetched"])
    assert sum(f["bytes"] for f in got["cold"]["fetched"]) < 0.01 * N_QUERIES * size


OPEN_AND_SEARCH = """async ([url, vector, c]) => {
  const engine = window.engine || (window.engine = await window.LorannEngine.create({}));
  let info;
  try {
    info = await engine.loadIndex(url, { lazy: true });
  } catch (err) {
    return { stage: "open", error: err.message };
  }
  try {
    const r = await engine.search(Float32Array.from(vector), 10, { clustersToSearch: c });
    return { ids: Array.from(r.ids), lazy: Boolean(info.lazy), rangeFallback: Boolean(info.rangeFallback) };
  } catch (err) {
    return { stage: "search", error: err.message };
  }
}"""


def _probe_last_cluster(site):
    """A data vector whose nearest cluster is the last one (where the corrupt byte is)."""
    lazy = LazyIndex(FileReader(site["small_path"]))
    data = site["small"].get_vectors(np.arange(2000))
    best = lazy._prefix.probe(lazy._prefix.reduce(data), 1)[:, 0]
    last = lazy.params["n_clusters"] - 1
    return data[int(np.flatnonzero(best == last)[0])], data[int(np.flatnonzero(best != last)[0])]


def test_lazy_errors_are_clear(page, site):
    bad, good = _probe_last_cluster(site)
    got = page.evaluate(OPEN_AND_SEARCH, ["indexes/corrupt.lorann", bad.tolist(), 1])
    assert got["stage"] == "search" and "failed its checksum" in got["error"], got
    got = page.evaluate(OPEN_AND_SEARCH, ["indexes/corrupt.lorann", good.tolist(), 1])
    assert "ids" in got and got["ids"][0] >= 0  # the worker is still usable

    raw = open(site["small_path"], "rb").read()
    page.route("**/indexes/norange.lorann*", lambda route: route.fulfill(status=200, body=raw))
    # a host that ignores Range: its (whole) answer is used, and the index loaded whole
    got = page.evaluate(OPEN_AND_SEARCH, ["indexes/norange.lorann", good.tolist(), 1])
    assert got["rangeFallback"] and not got["lazy"], got
    assert got["ids"] == list(site["small"].search(good, 10, clusters_to_search=1)), got

    prefix = LazyIndex(FileReader(site["small_path"])).prefix_bytes

    def truncating(route):  # (a host that answers the first of several ranges only)
        first = route.request.headers["range"][6:].split(",")[0]
        start, stop = (int(v) for v in first.split("-"))
        body = raw[start:stop + 1]
        if start >= prefix:
            body = body[:-1]  # a response cut short
        route.fulfill(status=206, body=body, headers={
            "Content-Range": f"bytes {start}-{stop}/{len(raw)}", "Accept-Ranges": "bytes"})

    page.route("**/indexes/short.lorann*", truncating)  # (reads carry ?lorann-range)
    got = page.evaluate(OPEN_AND_SEARCH, ["indexes/short.lorann", good.tolist(), 1])
    assert got["stage"] == "search" and "truncated response" in got["error"], got
    got = page.evaluate(OPEN_AND_SEARCH, ["indexes/missing.lorann", good.tolist(), 1])
    assert got["stage"] == "open" and "HTTP 404" in got["error"], got


def test_a_file_of_an_older_format_answers_lazily_as_in_cpython(page, site):
    """The fixture saved before the format's redesign (tensor-major, whole clusters, no
    row checksums) searched lazily in Chromium gives its stored answers."""
    from conftest import clustered
    folder = os.path.join(os.path.dirname(__file__), "data")
    want = np.load(os.path.join(folder, "made-before-the-redesign.ids.npy"))
    queries = clustered(400, 16, seed=41)[:20] + 0.01
    got = page.evaluate("""async ([url, flat, count]) => {
      const engine = await window.LorannEngine.create({});
      const info = await engine.loadIndex(url, { lazy: true });
      const r = await engine.searchBatch(Float32Array.from(flat), count, 5);
      engine.terminate();
      return { lazy: info.lazy, ids: Array.from(r.ids), rounds: r.rounds.length };
    }""", ["indexes/old.lorann", queries.ravel().tolist(), len(queries)])
    assert got["lazy"] and got["rounds"] <= 2
    assert np.array_equal(np.array(got["ids"]).reshape(want.shape), want)


def test_a_multipart_answer_is_read_as_it_streams_in(page, site):
    """ranges.js reads a multipart/byteranges answer as it arrives, cut anywhere
    (the same parts as whole; a body cut short is an error), and RangeFile.read
    with onRanges asks in the caller's order and tells of each longer prefix of
    the ranges that is all here."""
    got = page.evaluate("""async () => {
      const { MultipartReader, parseMultipart, RangeFile } = await import("./ranges.js");
      const enc = new TextEncoder();
      const type = 'multipart/byteranges; boundary="B0UND"';
      let text = "\\r\\n";
      for (const [start, data] of [[3, "abc"], [100, "0123456789"], [7, "x"]]) {
        text += `--B0UND\\r\\nContent-Type: application/octet-stream\\r\\n` +
                `Content-Range: bytes ${start}-${start + data.length - 1}/1000\\r\\n\\r\\n${data}\\r\\n`;
      }
      const body = enc.encode(text + "--B0UND--\\r\\n");
      const show = (parts) => JSON.stringify(parts.map((p) => [p.start, p.stop, Array.from(p.bytes)]));
      const whole = show(parseMultipart(body, type));
      let cutsAgree = true;
      for (let i = 0; i <= body.length; i++) {
        const reader = new MultipartReader(type, i % 2 ? body.length : 0);
        const early = reader.push(body.subarray(0, i));
        const late = reader.push(body.subarray(i));
        cutsAgree = cutsAgree && show(early.concat(late)) === whole && show(reader.end()) === whole;
      }
      const byByte = new MultipartReader(type);
      const seen = [];
      for (let i = 0; i < body.length; i++) seen.push(...byByte.push(body.subarray(i, i + 1)));
      let truncated = "";
      try {
        parseMultipart(body.subarray(0, body.length - 24), type);
      } catch (err) { truncated = err.message; }

      const { file } = await RangeFile.open("indexes/small.lorann", null);
      const ranges = [[5000, 5100], [100, 200], [3000, 3050], [3050, 3100], [4, 4]];
      const reports = [];
      const streamed = await file.read(ranges, { onRanges: (done, bytes) =>
        reports.push([done, bytes.map((b) => Array.from(b))]) });
      const plain = await file.read(ranges);
      const same = (a, b) => JSON.stringify(a.map((x) => Array.from(x))) ===
                             JSON.stringify(b.map((x) => Array.from(x)));
      return { whole, cutsAgree, byByte: show(seen) === whole, truncated,
               same: same(streamed, plain), lengths: streamed.map((b) => b.length),
               dones: reports.map((r) => r[0]),
               prefixes: reports.every(([done, bytes]) =>
                 JSON.stringify(bytes) === JSON.stringify(plain.slice(0, done).map((x) => Array.from(x)))) };
    }""")
    assert got["whole"] == ('[[3,6,[97,98,99]],[100,110,[48,49,50,51,52,53,54,55,56,57]],'
                            '[7,8,[120]]]')
    assert got["cutsAgree"] and got["byByte"], got
    assert "truncated" in got["truncated"], got
    assert got["same"] and got["lengths"] == [100, 100, 50, 50, 0], got
    assert got["dones"] and got["dones"][-1] == 5 and got["dones"] == sorted(set(got["dones"]))
    assert got["prefixes"], got


def test_a_host_answering_ranges_reordered_or_merged_gives_the_same_bytes(page, site):
    """A host may answer a multipart request's ranges in another order, or join
    neighbouring ones into one part: RangeFile.read then gives the same bytes, and
    onRanges still ends on every range (later, when the first ones come last)."""
    got = page.evaluate("""async () => {
      const { RangeFile, parseMultipart } = await import("./ranges.js");
      const enc = new TextEncoder();
      const realFetch = window.fetch;
      let mode = "plain";
      let joined = 0;  // parts the "merged" host joined to another
      window.fetch = async (url, init) => {
        const response = await realFetch(url, init);
        const type = response.headers.get("Content-Type") || "";
        if (mode === "plain" || !/^multipart\\/byteranges/i.test(type)) return response;
        let parts = parseMultipart(new Uint8Array(await response.arrayBuffer()), type);
        if (mode === "merged") {  // each part joined to the next when they touch or overlap
          const merged = [];
          for (const p of [...parts].sort((x, y) => x.start - y.start)) {
            const last = merged[merged.length - 1];
            if (last && p.start <= last.stop) {
              const bytes = new Uint8Array(Math.max(last.stop, p.stop) - last.start);
              bytes.set(last.bytes);
              bytes.set(p.bytes, p.start - last.start);
              merged[merged.length - 1] = { start: last.start, stop: last.start + bytes.length, bytes };
            } else merged.push(p);
          }
          joined += parts.length - merged.length;
          parts = merged;
        } else parts = [...parts].reverse();
        const chunks = [];
        for (const p of parts) {
          chunks.push(enc.encode(`\\r\\n--R\\r\\nContent-Range: bytes ${p.start}-${p.stop - 1}/*\\r\\n\\r\\n`), p.bytes);
        }
        chunks.push(enc.encode("\\r\\n--R--\\r\\n"));
        return new Response(new Blob(chunks), { status: 206,
          headers: { "Content-Type": "multipart/byteranges; boundary=R" } });
      };
      // (out of order, so that the reader does not join them itself)
      const ranges = [[5000, 5100], [200, 260], [100, 200], [3040, 3100], [3000, 3050], [9, 9]];
      const out = {};
      for (mode of ["plain", "reversed", "merged"]) {
        const { file } = await RangeFile.open("indexes/small.lorann", null);
        const dones = [];
        const bytes = await file.read(ranges, { onRanges: (done) => dones.push(done) });
        out[mode] = { bytes: bytes.map((b) => Array.from(b)), dones, requests: file.stats.requests };
      }
      window.fetch = realFetch;
      out.joined = joined;
      return out;
    }""")
    plain = got["plain"]
    assert [len(b) for b in plain["bytes"]] == [100, 60, 100, 60, 50, 0]
    raw = open(site["small_path"], "rb").read()
    assert plain["bytes"][0] == list(raw[5000:5100]) and plain["bytes"][3] == list(raw[3040:3100])
    assert got["joined"] == 2, got  # the host did join the touching and the overlapping pair
    for mode in ("reversed", "merged"):
        assert got[mode]["bytes"] == plain["bytes"], mode
        assert got[mode]["dones"][-1] == 6, (mode, got[mode])
        assert got[mode]["requests"] == plain["requests"], (mode, got)  # no range asked again
    assert got["reversed"]["dones"] == [1, 6] or got["reversed"]["dones"] == [6], got["reversed"]


def test_probed_clusters_are_handed_over_as_they_stream_in(browser, site):
    """Over a paced link the worker hands the clusters that have come to Python
    while the rest stream in (supply_part): more calls into Python than plan,
    supply, supply and finish, and the answers still equal CPython's."""
    from lorann_wasm.site.serve import serve_in_background

    server, url = serve_in_background(site["root"], rate_mbit=100)
    try:
        with local_page(browser, url) as p:
            p.goto(url + "bench.html")
            p.wait_for_function("window.LorannEngine !== undefined")
            got = p.evaluate("""async ([count, c]) => {
              const engine = await window.LorannEngine.create({});
              const info = await engine.loadIndex("indexes/big.lorann", { lazy: true });
              const q = new Float32Array(await (await fetch("indexes/big.queries.bin")).arrayBuffer());
              const out = [];
              for (let i = 0; i < count; i++) {
                const r = await engine.search(q.subarray(i * info.dim, (i + 1) * info.dim), 10,
                                              { clustersToSearch: c });
                out.push({ ids: Array.from(r.ids), calls: r.pythonMs.length });
              }
              engine.terminate();
              return out;
            }""", [4, 48])
    finally:
        server.shutdown()
    lazy = LazyIndex(FileReader(site["big"]))
    for i, r in enumerate(got):
        assert r["ids"] == lazy.search(site["queries"][i], 10, clusters_to_search=48).tolist()
    assert max(r["calls"] for r in got) > 4, got  # plan, a part or more, supply, supply, finish


def test_searches_started_together_each_get_their_own_answer(page, site):
    """Python holds one planned search at a time: searches started at once on one
    engine run one after another in the worker, each answered as CPython answers it."""
    got = page.evaluate("""async ([count, c]) => {
      const engine = await window.LorannEngine.create({});
      const info = await engine.loadIndex("indexes/big.lorann", { lazy: true });
      const q = new Float32Array(await (await fetch("indexes/big.queries.bin")).arrayBuffer());
      const all = await Promise.all(Array.from({ length: count }, (_, i) =>
        engine.search(q.subarray(i * info.dim, (i + 1) * info.dim), 10, { clustersToSearch: c })));
      engine.terminate();
      return all.map((r) => Array.from(r.ids));
    }""", [6, 8])
    lazy = LazyIndex(FileReader(site["big"]))
    assert got == [lazy.search(site["queries"][i], 10, clusters_to_search=8).tolist()
                   for i in range(6)]
