// LorannEngine: a small promise API over the worker, reusable by any page.
//
//   const engine = await LorannEngine.create({ indexUrl, baseUrl, onProgress });
//   const { ids, distances, ms } = await engine.search(float32Vector, 10,
//                                       { clustersToSearch, pointsToRerank });
//   const verbs = await engine.search(v, 10, { where: { pos: "verb" }, allow: [3, 7, 9] });
//   // verbs.path: "filtered" (adaptive probing) or "exact"; verbs.passing: estimated
//   // points passing (filters as in Python's LorannIndex.search(where=, allow=))
//   const batch = await engine.searchBatch(float32Matrix, count, 10);  // flat (count * k)
//   await engine.loadIndex(url, { lazy: true });  // big index: fetch clusters on demand
//   const found = await engine.searchText("a cat", 10, { withRecords: true });  // a site
//
// Vectors are Float32Arrays; they are transferred to the worker, not copied
// element by element. Ids are Int32Array (row numbers of the indexed data),
// distances Float32Array, smaller is better. Options default to the index's
// stored presets. Errors reject the promise; the engine stays usable.

export class LorannEngine {
  constructor(worker, config) {
    this.worker = worker;
    this.config = config;
    this.info = null;
    this.runtime = null;  // after boot: { pyodide: its version, simd: products in WebAssembly SIMD }
    this.pending = new Map();
    this.nextId = 1;
    this.onProgress = () => {};
    worker.onmessage = ({ data }) => {
      if (data.progress) {
        this.onProgress(data.progress);
        return;
      }
      const entry = this.pending.get(data.id);
      if (!entry) return;
      this.pending.delete(data.id);
      if (data.ok) entry.resolve(data.result);
      else entry.reject(new Error(data.error));
    };
    worker.onerror = (event) => {
      const error = new Error(`worker failed: ${event.message || "unknown error"}`);
      for (const entry of this.pending.values()) entry.reject(error);
      this.pending.clear();
    };
  }

  // Boot the runtime (and load an index if indexUrl is given). baseUrl is the
  // site root holding site.json, pyodide/ and the wheel; config is its
  // site.json when the caller has read it already. prefetch: files (e.g. the
  // model for loadEncoder) to download while the runtime starts. open: files
  // that loadIndex, loadEncoder (tokens) or openRecords will read by Range, to
  // open meanwhile: [{ url, head, stage, cacheName }], head the bytes to read
  // at once (an index's header and prefix: site.json's index_head).
  static async create({ indexUrl = null, baseUrl = new URL(".", document.baseURI).href,
                        config = null, prefetch = [], open = [],
                        onProgress = () => {} } = {}) {
    const base = new URL(baseUrl, document.baseURI).href;
    if (!config) {
      const response = await fetch(new URL("site.json", base));
      if (!response.ok) throw new Error(`could not fetch site.json: HTTP ${response.status}`);
      config = await response.json();
    }
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    const engine = new LorannEngine(worker, config);
    engine.onProgress = onProgress;
    engine.runtime = await engine.call("boot", {
      baseUrl: base, wheel: config.wheel, prefetch: prefetch.map((u) => new URL(u, base).href),
      open: open.map((f) => ({ ...f, url: new URL(f.url, base).href })) });
    if (indexUrl) await engine.loadIndex(new URL(indexUrl, base).href);
    return engine;
  }

  call(op, args = {}, transfer = []) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  // Load (or replace) the index; resolves to its parameters.
  // { lazy: true } fetches only the file's prefix now and each query's probed
  // clusters when needed (HTTP Range; cacheBytes bounds the cluster cache).
  // With cacheName and size, a copy completed on an earlier visit (see
  // complete) is loaded from that cache instead (info.local).
  async loadIndex(url, { lazy = false, cacheBytes = 0, cacheName = null, size = 0 } = {}) {
    this.info = null;
    this.info = await this.call("loadIndex", { url: new URL(url, document.baseURI).href, lazy,
                                               cacheBytes, cacheName, size });
    return this.info;
  }

  // Open a site's result records (records.bin, offsets.bin; width: bytes of a
  // record's length, site.json's length_bytes): searchText then returns the
  // results' records too, fetched in the same rounds as the index.
  openRecords({ recordsUrl, offsetsUrl, count, width = 2, whole = false, cacheName = null,
                sizes = null }) {
    return this.call("openRecords", {
      recordsUrl: new URL(recordsUrl, document.baseURI).href,
      offsetsUrl: new URL(offsetsUrl, document.baseURI).href, count, width, whole, cacheName,
      sizes });
  }

  // Fetch what a lazily opened site still lacks while no search runs, keep it
  // in the cache cacheName, then hold index and records whole: every later
  // query needs no request. files: [{ url, size, role: "index" | "records" |
  // "offsets" | "tokens" }]; nothing is fetched when they add up to more than
  // limit bytes (0: no limit): then it resolves to { skipped: true, total }.
  // Progress arrives as onProgress({ stage: "offline", loaded, total }); a
  // chunk that fails rejects it, and what came before stays in the cache.
  complete(files, { cacheName = null, limit = 0 } = {}) {
    return this.call("complete", {
      files: files.map((f) => ({ ...f, url: new URL(f.url, document.baseURI).href })),
      cacheName, limit });
  }

  _options(opts) {
    const filtered = opts.where != null || opts.allow != null;
    const filter = filtered ? JSON.stringify({ where: opts.where ?? null,
                                               allow: opts.allow ? Array.from(opts.allow) : null })
      : "";
    return { clustersToSearch: opts.clustersToSearch || 0, pointsToRerank: opts.pointsToRerank || 0,
             filter };
  }

  // One query vector -> { ids, distances, ms } of length k (plus, for a lazily
  // loaded index, rounds and fetched: { requests, bytes, ms }).
  search(vector, k = 10, opts = {}) {
    const queries = Float32Array.from(vector);
    return this.call("search", { queries, count: 1, k, ...this._options(opts) }, [queries.buffer]);
  }

  // count vectors back to back in one Float32Array -> flat results (count * k).
  searchBatch(matrix, count, k = 10, opts = {}) {
    const queries = Float32Array.from(matrix);
    return this.call("search", { queries, count, k, ...this._options(opts) }, [queries.buffer]);
  }

  // Exact (brute-force) search over the same stored vectors; same result layout.
  exactSearch(matrix, count, k = 10) {
    const queries = Float32Array.from(matrix);
    return this.call("search", { queries, count, k, exact: true }, [queries.buffer]);
  }

  // Stored vectors of the given ids, flat Float32Array (ids.length * dim).
  async vectors(ids) {
    const idArray = Int32Array.from(ids);
    const { vectors } = await this.call("vectors", { ids: idArray }, [idArray.buffer]);
    return vectors;
  }

  // Load (or replace) the MiniLM text encoder weights; resolves to its config.
  // { tokensUrl, tokensSize, whole, cacheName }: a site's word-piece rows file
  // (site.json search.tokens), read whole when whole, else the rows a query
  // needs by Range; a copy completed in the cache cacheName is used instead.
  async loadEncoder(url, { tokensUrl = null, tokensSize = 0, whole = false,
                           cacheName = null } = {}) {
    this.encoder = await this.call("loadEncoder", {
      url: new URL(url, document.baseURI).href,
      tokensUrl: tokensUrl && new URL(tokensUrl, document.baseURI).href,
      tokensSize, whole, cacheName });
    return this.encoder;
  }

  // Run the text query path once, fetching nothing, so the first real query is fast.
  warm() {
    return this.call("warm");
  }

  // Unit-length embeddings of strings, flat Float32Array (texts.length * 384).
  async embed(texts) {
    const { vectors } = await this.call("embed", { texts });
    return vectors;
  }

  // Embed a text and search: { ids, distances, embedMs, searchMs, ms, rounds }
  // (rounds: the network rounds it took, each { requests, bytes, ms }); with
  // { withRecords: true } and records open, records holds each result's record.
  searchText(text, k = 10, opts = {}) {
    return this.call("searchText", { text, k, withRecords: Boolean(opts.withRecords),
                                     ...this._options(opts) });
  }

  terminate() {
    this.worker.terminate();
  }
}
