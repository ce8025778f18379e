// Web Worker: boots Pyodide, loads NumPy and the lorann_wasm wheel, holds one
// index (and a site's records) and answers search requests. Talks to
// engine.js with messages {id, op, ...} -> {id, ok, result | error}; progress
// goes out as {progress: {stage, loaded, total}}. A failed request leaves the
// worker usable.
//
// A lazily loaded index answers a query in two network rounds: the probed
// clusters' scorers (and their records' offsets), then the candidates'
// vectors (and their records), each round one request per file where the
// host answers several ranges at once (ranges.js). After the first answer
// the page may ask for the rest in the background (complete): it is fetched
// in chunks while no search runs, kept in the site's cache, and then the
// index and the records are held whole: every query is answered with no
// request, offline too, on this visit and the next.

import { RangeFile, direct } from "./ranges.js";
import { Records } from "./records.js";
import { offerProducts } from "./products.js";

let pyodide = null;
let session = null;
let index = null;  // while lazy: { url, file: RangeFile }
let records = null;  // a site's Records
let tokens = null;  // while word-piece rows are read by Range: { url, file: RangeFile }
let searching = 0;  // searches running: background fetches wait for none
let background = null;  // { controller } of the chunk being fetched

//: records fetched ahead of the answer at most (an exact filtered search may
//: rerank thousands of points; then only the results' records are fetched).
//: Every candidate's record comes in round 2, not only the likeliest: on 560
//: WordNet queries the top 10 lay within the approximate top 100 of the 300
//: candidates for 81 % of them (top 200: 95 %), so fewer would often cost a
//: third round to save about 45 kB (of round 2's 210: 300 records took 70).
const RECORDS_AHEAD = 2000;
//: probed clusters' ranges worth handing to Python before the rest have come
//: (a call costs about 1 ms in Pyodide; WordNet's first round asks for ~100)
const PART_RANGES = 24;
//: bytes of one background chunk: small enough that a search waits little
//: for the chunk it interrupts (0.2 s at 20 Mbit/s)
const CHUNK = 512 << 10;

function progress(stage, loaded = 0, total = 0) {
  self.postMessage({ progress: { stage, loaded, total } });
}

// Python errors carry the whole traceback; the page wants its last line.
function describe(err) {
  const text = String(err && err.message ? err.message : err);
  const lines = text.trim().split("\n").filter((l) => l.trim());
  return lines.length ? lines[lines.length - 1].trim() : text;
}

async function fetchBytes(url, stage) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new Error(`could not fetch ${url}: ${err.message}`);
  }
  if (!response.ok) throw new Error(`could not fetch ${url}: HTTP ${response.status}`);
  return readBody(response, stage);
}

// Read a whole response body, reporting progress under ``stage``.
async function readBody(response, stage) {
  // an encoded body's Content-Length counts the bytes sent, not the bytes read here
  const total = response.headers.get("Content-Encoding") ? 0
    : Number(response.headers.get("Content-Length")) || 0;
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    if (stage) progress(stage, loaded, total);
  }
  return join(chunks, loaded);
}

function join(chunks, length) {
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

function joined(chunks) {
  return join(chunks, chunks.reduce((sum, chunk) => sum + chunk.length, 0));
}

// Files fetched while the runtime starts (url -> promise of the bytes): the
// model's download overlaps Pyodide's start-up instead of following it.
const early = new Map();

function fetchEarly(url, stage) {
  const pending = early.get(url);
  early.delete(url);
  return pending || fetchBytes(url, stage);
}

// Files read by Range, opened while the runtime starts: each open's first
// request (an index's with its header and prefix, `head` bytes) then shares
// the link with the runtime's downloads instead of following them. A file
// completed in the cache on an earlier visit is not opened.
let opensStarted = Promise.resolve();

function openEarly(files) {
  opensStarted = Promise.all(files.map(async ({ url, head = 8, stage, cacheName = null }) => {
    const cache = await openCache(cacheName);
    if (cache && await cache.match(doneKey(url))) return;
    RangeFile.prefetch(url, (response) => readBody(response, stage), head);
  })).catch(() => {});
}

// The wheels the worker installs (NumPy, as the runtime's lock file names and
// hashes it, and lorann_wasm), downloaded while the runtime starts: Pyodide's
// loadPackage would only begin once the runtime is up (WordNet, 40 ms / 20
// Mbit/s: NumPy's 3 MB then arrived last, 0.6 s before the page was ready).
async function wheelBytes(runtimeUrl, wheelUrl) {
  const lock = JSON.parse(new TextDecoder().decode(
    await fetchBytes(new URL("pyodide-lock.json", runtimeUrl).href)));
  const numpy = (lock.packages || {}).numpy;
  if (!numpy) throw new Error("the runtime's pyodide-lock.json does not name NumPy");
  const url = new URL(numpy.file_name, runtimeUrl).href;
  const [bytes, ours] = await Promise.all([fetchBytes(url, "packages"), fetchBytes(wheelUrl)]);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  if (hex !== numpy.sha256) throw new Error(`${url} does not match its sha256 in the lock file`);
  return [bytes, ours];
}

async function boot({ baseUrl, wheel, prefetch = [], open = [] }) {
  for (const url of prefetch) {
    const pending = fetchBytes(url, "model");
    pending.catch(() => {});  // (reported when it is used)
    early.set(url, pending);
  }
  openEarly(open);
  const runtimeUrl = new URL("pyodide/", baseUrl).href;
  const wheels = wheelBytes(runtimeUrl, new URL(wheel, baseUrl).href);
  wheels.catch(() => {});  // (reported below)
  progress("runtime");
  const { loadPyodide } = await import(new URL("pyodide.mjs", runtimeUrl).href);
  pyodide = await loadPyodide({ indexURL: runtimeUrl });
  const simd = offerProducts(pyodide);  // before lorann_wasm is imported
  progress("packages");
  const sitePackages = pyodide.runPython("import site; site.getsitepackages()[0]");
  for (const bytes of await wheels) {
    pyodide.unpackArchive(bytes, "wheel", { extractDir: sitePackages });
  }
  session = pyodide.runPython("from lorann_wasm.bridge import Session; Session()");
  return { pyodide: pyodide.version, simd };
}

// Python reads the header and the prefix itself, with synchronous Range
// requests (allowed in workers), so the same Python code serves CPython (a
// local file) and the browser.
function readRange(url, start, stop) {
  const xhr = new XMLHttpRequest();
  xhr.open("GET", url, false);
  xhr.responseType = "arraybuffer";
  xhr.setRequestHeader("Range", `bytes=${start}-${stop - 1}`);
  try {
    xhr.send();
  } catch (err) {
    throw new Error(`could not fetch bytes ${start}-${stop - 1} of ${url}: ${err.message}`);
  }
  if (xhr.status !== 206) {
    throw new Error(`could not fetch bytes ${start}-${stop - 1} of ${url}: HTTP ${xhr.status}`);
  }
  // A short body is reported by Python, which knows how many bytes it asked for.
  return new Uint8Array(xhr.response);
}

function loadWhole(bytes, quiet = false) {
  if (!quiet) progress("prepare", bytes.length, bytes.length);
  index = null;
  return JSON.parse(session.load(bytes));
}

// -- the site's cache: files completed in the background -------------------

function chunkKey(url, i) {
  return `${url}?lorann-chunk=${i}`;
}

function doneKey(url) {
  return `${url}?lorann-complete`;
}

async function openCache(cacheName) {
  if (!cacheName || typeof caches === "undefined") return null;
  try {
    return await caches.open(cacheName);
  } catch {
    return null;  // storage refused (private mode, quota): work without it
  }
}

// A file completed on an earlier visit, from the cache; null if it is not all there.
async function cachedFile(cache, url, size) {
  if (!cache || !(await cache.match(doneKey(url)))) return null;
  const count = Math.ceil(size / CHUNK);
  const chunks = [];
  for (let i = 0; i < count; i++) {
    const hit = await cache.match(chunkKey(url, i));
    if (!hit) return null;
    chunks.push(new Uint8Array(await hit.arrayBuffer()));
  }
  const bytes = joined(chunks);
  return bytes.length === size ? bytes : null;
}

// -- opening -----------------------------------------------------------------

// A file the page reads by Range: { bytes, local: true } from a copy completed
// on an earlier visit, { bytes } read whole when asked (or { bytes,
// rangeFallback: true } from a host that ignores Range), else { file }, a
// RangeFile to read as needed.
async function openRanged({ url, size = 0, cacheName = null, whole = false, stage }) {
  await opensStarted;
  const cached = size ? await cachedFile(await openCache(cacheName), url, size) : null;
  if (cached) return { bytes: cached, local: true };
  if (whole && !RangeFile.prefetched(url)) return { bytes: await fetchBytes(url, stage) };
  progress(stage);
  const opened = await RangeFile.open(url, (response) => readBody(response, stage));
  if (opened.whole) return { bytes: opened.whole, rangeFallback: true };
  return whole ? { bytes: await fetchBytes(url, stage) } : { file: opened.file };
}

async function loadIndex({ url, lazy = false, cacheBytes = 0, cacheName = null, size = 0 }) {
  index = null;
  const { bytes, local, rangeFallback, file } = await openRanged({
    url, size, cacheName, whole: !lazy, stage: "index" });
  if (bytes) {
    const info = loadWhole(bytes);
    if (local) info.local = true;
    if (rangeFallback) info.rangeFallback = true;
    return info;
  }
  // Python reads the header and the prefix: from the bytes the open read
  // (all of them when the site gives their length), else one request each
  const reader = {
    size: file.size,
    read: (rangesJson) => JSON.parse(rangesJson).map(([start, stop]) => {
      const known = file.fromHead(start, stop);
      if (known) return known.slice();
      const bytes = readRange(url, start, stop);
      file.stats.requests += 1;
      file.stats.bytes += bytes.length;
      return bytes;
    }),
  };
  progress("prepare");
  const info = JSON.parse(session.load_lazy(reader, cacheBytes));
  index = { url, file };
  return info;
}

async function openRecords({ recordsUrl, offsetsUrl, count, width = 2, whole = false,
                             cacheName = null, sizes = null }) {
  await opensStarted;
  const cache = sizes ? await openCache(cacheName) : null;
  const local = cache ? [await cachedFile(cache, recordsUrl, sizes[0]),
                         await cachedFile(cache, offsetsUrl, sizes[1])] : [null, null];
  if (local[0] && local[1]) {
    records = new Records(count, width);
    records.setWhole(local[0], local[1]);
  } else {
    // opened early (a host without Range answered them whole): use those answers
    const opened = RangeFile.prefetched(recordsUrl) || RangeFile.prefetched(offsetsUrl);
    records = await Records.open({ recordsUrl, offsetsUrl, count, width,
                                   whole: whole && !opened, fetchWhole: (url) => fetchBytes(url, "records") });
  }
  return { whole: !records.lazy };
}

// -- searching ---------------------------------------------------------------

// Copy a NumPy array out of WebAssembly memory into a fresh typed array.
function take(proxy) {
  const view = proxy.getBuffer();
  try {
    return view.data.slice();
  } finally {
    view.release();
    proxy.destroy();
  }
}

function unpack(result) {
  const ids = take(result.get(0));
  const distances = take(result.get(1));
  result.destroy();
  return { ids, distances };
}

function traffic() {
  const files = [index && index.file, records && records.recordsFile,
                 records && records.offsetsFile].filter(Boolean);
  return { requests: files.reduce((s, f) => s + f.stats.requests, 0),
           bytes: files.reduce((s, f) => s + f.stats.bytes, 0) };
}

// One network round: everything the plan needs now, fetched at once. While
// the probed clusters stream in, those that have arrived are handed to Python
// (supply_part, at the plan's cuts, PART_RANGES at least) so that checking and
// installing them overlaps the rest of the transfer. Returns the responses to
// the ranges not handed over yet (null if none were asked for).
async function round(plan, withRecords, rounds, timed) {
  const start = performance.now();
  const before = traffic();
  const jobs = [];
  let parts = null;
  if (plan.ranges.length) {
    let handed = 0;
    const onRanges = plan.cuts && plan.cuts.length > 1 ? (done, bytes) => {
      let cut = handed;
      for (const c of plan.cuts) if (c <= done && c < plan.ranges.length) cut = c;
      if (cut - handed < PART_RANGES) return;
      timed(() => session.supply_part(cut - handed, joined(bytes.slice(handed, cut))));
      handed = cut;
    } : null;
    jobs.push(index.file.read(plan.ranges, { onRanges }).then((p) => { parts = p.slice(handed); }));
  }
  if (withRecords && records.lazy) {
    if (plan.spans.length) jobs.push(records.loadOffsets(plan.spans));
    if (plan.candidates && plan.candidates.length <= RECORDS_AHEAD) {
      jobs.push(records.prefetch(plan.candidates));
    }
  }
  await Promise.all(jobs);
  const after = traffic();
  rounds.push({ requests: after.requests - before.requests, bytes: after.bytes - before.bytes,
                ms: performance.now() - start });
  return parts;
}

function pending(plan, withRecords) {
  if (plan.ranges.length) return true;
  if (!withRecords || !records.lazy) return false;
  return plan.spans.length > 0 || (plan.candidates !== null
    && plan.candidates.length <= RECORDS_AHEAD && records.missing(plan.candidates).length > 0);
}

// Run work(), a search's network rounds, with the background completion paused
// (its chunk in flight aborted, fetched again later), after the searches before
// it: Python holds one planned search at a time.
let searchesBefore = Promise.resolve();
function asSearch(work) {
  searching += 1;
  if (background && background.controller) background.controller.abort();
  const run = searchesBefore.then(work).finally(() => { searching -= 1; });
  searchesBefore = run.catch(() => {});
  return run;
}

// Plan, fetch what the plan needs round by round, finish; with records, the
// results' records come too.
function planAndFinish(queries, count, k, clustersToSearch, pointsToRerank, filter,
                       withRecords) {
  withRecords = withRecords && records !== null;
  return asSearch(async () => {
    const rounds = [];
    const python = [];  // ms in each call into Python: plan, supplies, finish
    const timed = (f) => {
      const t = performance.now();
      const value = f();
      python.push(performance.now() - t);
      return value;
    };
    let plan = JSON.parse(timed(() => session.plan(queries, count, k, clustersToSearch,
                                                   pointsToRerank, filter)));
    const { path, passing } = plan;
    while (pending(plan, withRecords)) {
      const parts = await round(plan, withRecords, rounds, timed);
      // the responses back to back: one copy into Python, not one per range
      plan = parts ? JSON.parse(timed(() => session.supply(joined(parts))))
        : { ranges: [], spans: [], candidates: null };
    }
    const out = unpack(timed(() => session.finish()));
    out.pythonMs = python;
    out.path = path;  // "approximate", or for a filter "filtered" / "exact"
    if (passing !== null) out.passing = passing;  // estimated points passing the filter
    if (withRecords) {
      const found = Array.from(out.ids).filter((id) => id >= 0);
      if (records.missing(found).length) {  // not fetched ahead: one more round
        const start = performance.now();
        const before = traffic();
        out.records = await records.get(found);
        const after = traffic();
        rounds.push({ requests: after.requests - before.requests,
                      bytes: after.bytes - before.bytes, ms: performance.now() - start });
      } else {
        out.records = await records.get(found);
      }
    }
    out.rounds = rounds;
    // what the index store counts (clusters fetched, cache size), and what went over HTTP
    const stored = JSON.parse(session.fetch_stats()) || {};
    out.fetched = { clusters: stored.clusters || 0, cached_bytes: stored.cached_bytes || 0,
                    requests: rounds.reduce((s, r) => s + r.requests, 0),
                    bytes: rounds.reduce((s, r) => s + r.bytes, 0),
                    ms: rounds.reduce((s, r) => s + r.ms, 0) };
    return out;
  });
}

async function search({ queries, count, k, clustersToSearch = 0, pointsToRerank = 0, filter = "",
                        exact = false }) {
  const start = performance.now();
  let out;
  if (exact) {
    out = unpack(session.exact_search(queries, count, k));
  } else if (index === null && !filter) {  // nothing to fetch: one call
    out = unpack(session.search(queries, count, k, clustersToSearch, pointsToRerank));
    out.path = "approximate";
  } else {
    out = await planAndFinish(queries, count, k, clustersToSearch, pointsToRerank, filter, false);
  }
  out.ms = performance.now() - start;
  return out;
}

function vectors({ ids }) {
  return { vectors: take(session.vectors(ids)) };
}

// The model; with tokensUrl, its word-piece rows beyond the model file's head
// are read from that file: whole if a completed copy is in the cache, the
// site is read whole or the host ignores Range, else a query's rows by Range
// (see loadTokens) until the background completion brings the whole file.
async function loadEncoder({ url, tokensUrl = null, tokensSize = 0, whole = false,
                             cacheName = null }) {
  const bytes = await fetchEarly(url, "model");
  progress("model-prepare", bytes.length, bytes.length);
  const info = JSON.parse(session.load_encoder(bytes));
  tokens = null;
  if (info.token_row_bytes && tokensUrl) {
    const { bytes: all, file } = await openRanged({ url: tokensUrl, size: tokensSize, cacheName,
                                                    whole, stage: "model" });
    if (file) tokens = { url: tokensUrl, file };
    else session.add_tokens("all", all);
    info.tokens = tokens ? "by range" : "whole";
  }
  return info;
}

// Fetch the word-piece rows the texts need and the model lacks: one request,
// none for most queries (the model file holds the site's frequent ones).
// Returns the round ({ requests, bytes, ms, wordPieces: true }) or null if
// nothing was needed.
async function loadTokens(texts) {
  if (!tokens) return null;
  const { ids, ranges } = JSON.parse(session.token_ranges(JSON.stringify(texts)));
  if (!ids.length) return null;
  const start = performance.now();
  const before = { ...tokens.file.stats };
  const parts = await asSearch(() => tokens.file.read(ranges));
  session.add_tokens(JSON.stringify(ids), joined(parts));
  return { requests: tokens.file.stats.requests - before.requests,
           bytes: tokens.file.stats.bytes - before.bytes, ms: performance.now() - start,
           wordPieces: true };
}

async function embed({ texts }) {
  await loadTokens(texts);
  return { vectors: take(session.embed(JSON.stringify(texts))) };
}

async function searchText({ text, k, clustersToSearch = 0, pointsToRerank = 0, filter = "",
                            withRecords = false }) {
  if (typeof text !== "string" || !text.trim()) throw new Error("the query text is empty");
  const start = performance.now();
  const tokenRound = await loadTokens([text]);
  const vector = take(session.embed(JSON.stringify([text])));
  const embedded = performance.now();
  const out = await planAndFinish(vector, 1, k, clustersToSearch, pointsToRerank, filter,
                                  withRecords);
  if (tokenRound) {  // a round before the search's own
    out.rounds.unshift(tokenRound);
    for (const key of ["requests", "bytes", "ms"]) out.fetched[key] += tokenRound[key];
  }
  out.embedMs = embedded - start;
  out.searchMs = performance.now() - embedded;
  out.ms = performance.now() - start;
  return out;
}

// -- the rest, in the background ---------------------------------------------

function idle() {
  return new Promise((resolve) => {
    const check = () => (searching ? setTimeout(check, 50) : resolve());
    check();
  });
}

// Fetch chunk i of url while no search runs; a search that starts aborts it,
// and it is fetched again once the search is done.
async function fetchChunk(url, i, size) {
  for (;;) {
    await idle();
    const controller = new AbortController();
    background.controller = controller;
    try {
      const stop = Math.min(size, (i + 1) * CHUNK);
      const response = await fetch(direct(url), { headers: { Range: `bytes=${i * CHUNK}-${stop - 1}` },
                                          cache: "no-store", priority: "low",
                                          signal: controller.signal });
      if (response.status !== 206) throw new Error(`${url}: HTTP ${response.status}`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (bytes.length !== stop - i * CHUNK) throw new Error(`${url}: a short chunk`);
      return bytes;
    } catch (err) {
      if (err.name !== "AbortError") throw err;
    } finally {
      background.controller = null;
    }
  }
}

// Everything a lazily opened site still lacks: each file in chunks, kept in
// the site's cache; then the index and the records are held whole. files:
// [{ url, size, role: "index" | "records" | "offsets" | "tokens" }].
async function complete({ files, cacheName = null, limit = 0 }) {
  const total = files.reduce((s, f) => s + f.size, 0);
  if (!files.length || (limit && total > limit)) return { skipped: true, total };
  if (background) return { running: true };
  background = { controller: null };
  const cache = await openCache(cacheName);
  const start = performance.now();
  let loaded = 0;
  let fetched = 0;
  const whole = {};
  try {
    for (const { url, size, role } of files) {
      const chunks = [];
      for (let i = 0; i * CHUNK < size; i++) {
        const hit = cache && await cache.match(chunkKey(url, i));
        let bytes = hit ? new Uint8Array(await hit.arrayBuffer()) : null;
        if (!bytes) {
          bytes = await fetchChunk(url, i, size);
          fetched += bytes.length;
          if (cache) await cache.put(chunkKey(url, i), new Response(bytes));
        }
        chunks.push(bytes);
        loaded += bytes.length;
        progress("offline", loaded, total);
      }
      whole[role] = join(chunks, size);
      if (cache) await cache.put(doneKey(url), new Response("1"));
      if (role === "tokens" && tokens !== null && tokens.url === url) {
        await idle();
        session.add_tokens("all", whole.tokens);
        tokens = null;
      }
      if (role === "index" && index !== null && index.url === url) {
        await idle();
        loadWhole(whole.index, true);  // searches need no network from here on
      }
    }
    if (records && records.lazy && whole.records && whole.offsets) {
      await idle();
      records.setWhole(whole.records, whole.offsets);
    }
    progress("offline-done", total, total);
    return { total, fetched, ms: performance.now() - start };
  } finally {
    background = null;
  }
}

// Run the text query path once on a made-up query (fetching at most its word
// pieces' rows, not the index's), while the page still says it is loading: its
// first real query then runs in code the WebAssembly engine has already
// compiled (measured: 40-50 ms faster). Searching it too, fetches and all, did
// not pay: WordNet on localhost, a cold query's p50 102-112 ms against 108-115
// (two runs each, alternated), for 470 kB more before the page is ready.
async function warm() {
  const start = performance.now();
  await loadTokens(["warming up the search"]);
  const vector = take(session.embed(JSON.stringify(["warming up the search"])));
  if (index !== null) session.plan(vector, 1, 1, 0, 0, "");
  return { ms: performance.now() - start };
}

const OPS = { boot, loadIndex, openRecords, search, vectors, loadEncoder, embed, searchText,
              complete, warm };

self.onmessage = async ({ data }) => {
  const { id, op, args } = data;
  try {
    if (!OPS[op]) throw new Error(`unknown operation ${op}`);
    if (op !== "boot" && !session) throw new Error("the Python runtime is not ready");
    const result = await OPS[op](args || {});
    const transfer = Object.values(result).filter((v) => ArrayBuffer.isView(v)).map((v) => v.buffer);
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (err) {
    self.postMessage({ id, ok: false, error: describe(err) });
  }
};
