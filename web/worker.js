// Web Worker: boots Pyodide, loads NumPy and the lorann_wasm wheel, holds one
// index and answers search requests. Talks to engine.js with messages
// {id, op, ...} -> {id, ok, result | error}; progress goes out as
// {progress: {stage, loaded, total}}. A failed request leaves the worker usable.

let pyodide = null;
let session = null;

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

async function boot({ baseUrl, wheel }) {
  progress("runtime");
  const { loadPyodide } = await import(new URL("pyodide/pyodide.mjs", baseUrl).href);
  pyodide = await loadPyodide({ indexURL: new URL("pyodide/", baseUrl).href });
  progress("packages");
  await pyodide.loadPackage(["numpy", new URL(wheel, baseUrl).href], { messageCallback: () => {} });
  session = pyodide.runPython("from lorann_wasm.bridge import Session; Session()");
  return { pyodide: pyodide.version };
}

// Lazy loading asks for byte ranges. Every Range response goes through one
// check: a 206, or an error that says what went wrong.
function expectPartial(status, url, start, stop) {
  if (status === 206) return;
  if (status === 200) {
    throw new Error(`${url}: the server does not support HTTP Range requests ` +
                    `(status 200), so the index cannot be loaded lazily`);
  }
  throw new Error(`could not fetch bytes ${start}-${stop - 1} of ${url}: HTTP ${status}`);
}

// Python reads on its own (the header, then the prefix, or clusters a search
// was not given) with synchronous Range requests (allowed in workers), so the
// same Python code serves CPython (a local file) and the browser.
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
  expectPartial(xhr.status, url, start, stop);
  // A short body is reported by Python, which knows how many bytes it asked for.
  return new Uint8Array(xhr.response);
}

// The same, asynchronous: used to fetch a query's ranges in parallel.
// Returns the bytes and the file's size (from Content-Range). no-store: the
// browser's HTTP cache serialises requests for one URL (measured: median cold
// lazy query 443 -> 357 ms), and fetched clusters are cached in Python (and by
// a site's service worker) anyway.
async function fetchRange(url, start, stop) {
  let response;
  try {
    response = await fetch(url, { headers: { Range: `bytes=${start}-${stop - 1}` }, cache: "no-store" });
  } catch (err) {
    throw new Error(`could not fetch bytes ${start}-${stop - 1} of ${url}: ${err.message}`);
  }
  if (response.status !== 206 && response.body) await response.body.cancel().catch(() => {});
  expectPartial(response.status, url, start, stop);
  const size = Number((response.headers.get("Content-Range") || "").split("/")[1]);
  return { bytes: new Uint8Array(await response.arrayBuffer()), size };
}

let lazyUrl = null;

// Read a whole response body, reporting progress under ``stage``.
async function readBody(response, stage) {
  const total = Number(response.headers.get("Content-Length")) || 0;
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    progress(stage, loaded, total);
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

function loadWhole(bytes) {
  progress("prepare", bytes.length, bytes.length);
  return JSON.parse(session.load(bytes));
}

async function openLazy(url, cacheBytes) {
  progress("index");
  // One small Range request first. A host that ignores Range answers with
  // the whole file: then that answer is used, and the index is loaded whole.
  let response;
  try {
    response = await fetch(url, { headers: { Range: "bytes=0-7" } });
  } catch (err) {
    throw new Error(`could not fetch ${url}: ${err.message}`);
  }
  if (response.status === 200) {
    const info = loadWhole(await readBody(response, "index"));
    return { ...info, rangeFallback: true };
  }
  if (response.body) await response.body.cancel().catch(() => {});
  expectPartial(response.status, url, 0, 8);
  const size = Number((response.headers.get("Content-Range") || "").split("/")[1]);
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new Error(`${url}: the Range response gives no file size (Content-Range)`);
  }
  const reader = {
    size,
    read: (rangesJson) => JSON.parse(rangesJson).map(([start, stop]) => readRange(url, start, stop)),
  };
  progress("prepare");
  const info = JSON.parse(session.load_lazy(reader, cacheBytes));
  lazyUrl = url;
  return info;
}

async function loadIndex({ url, lazy = false, cacheBytes = 0 }) {
  lazyUrl = null;
  if (lazy) return openLazy(url, cacheBytes);
  return loadWhole(await fetchBytes(url, "index"));
}

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

// Plan, fetch what the plan still needs (lazily loaded: the probed clusters'
// ranges, then the candidates' vector rows, each set in parallel), then
// finish without probing again.
async function planAndFinish(queries, count, k, clustersToSearch, pointsToRerank, filter = "") {
  let fetchMs = 0;
  let plan = JSON.parse(session.plan(queries, count, k, clustersToSearch, pointsToRerank, filter));
  const path = plan.path;
  const passing = plan.passing;
  while (plan.ranges.length) {
    const url = lazyUrl;
    const fetchStart = performance.now();
    const parts = await Promise.all(plan.ranges.map(([a, b]) => fetchRange(url, a, b)));
    fetchMs += performance.now() - fetchStart;
    plan = JSON.parse(session.supply(parts.map((part) => part.bytes)));
  }
  const out = unpack(session.finish());
  out.path = path;  // "approximate", or for a filter "filtered" / "exact"
  if (passing !== null) out.passing = passing;  // estimated points passing the filter
  const fetched = JSON.parse(session.fetch_stats());
  if (fetched) out.fetched = { ...fetched, ms: fetchMs };  // lazily loaded: what this search fetched
  return out;
}

async function search({ queries, count, k, clustersToSearch = 0, pointsToRerank = 0, filter = "",
                        exact = false }) {
  const start = performance.now();
  let out;
  if (exact) {
    out = unpack(session.exact_search(queries, count, k));
  } else if (lazyUrl === null && !filter) {  // nothing to fetch, nothing to report: one call
    out = unpack(session.search(queries, count, k, clustersToSearch, pointsToRerank));
    out.path = "approximate";
  } else {
    out = await planAndFinish(queries, count, k, clustersToSearch, pointsToRerank, filter);
  }
  out.ms = performance.now() - start;
  return out;
}

function vectors({ ids }) {
  return { vectors: take(session.vectors(ids)) };
}

async function loadEncoder({ url }) {
  const bytes = await fetchBytes(url, "model");
  progress("model-prepare", bytes.length, bytes.length);
  return JSON.parse(session.load_encoder(bytes));
}

function embed({ texts }) {
  return { vectors: take(session.embed(JSON.stringify(texts))) };
}

async function searchText({ text, k, clustersToSearch = 0, pointsToRerank = 0, filter = "" }) {
  if (typeof text !== "string" || !text.trim()) throw new Error("the query text is empty");
  const start = performance.now();
  const vector = take(session.embed(JSON.stringify([text])));
  const embedded = performance.now();
  const out = await planAndFinish(vector, 1, k, clustersToSearch, pointsToRerank, filter);
  out.embedMs = embedded - start;
  out.searchMs = performance.now() - embedded;
  out.ms = performance.now() - start;
  return out;
}

const OPS = { boot, loadIndex, search, vectors, loadEncoder, embed, searchText };

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
