// The search box for a lorann-wasm site, for its own page or any other page.
//
//   import { mount } from "./search/widget.js";
//   mount(document.querySelector("#search"), { base: "./search/" });
// or, with the module loaded:   <lorann-search base="./search/"></lorann-search>
//
// Results appear as you type; Arrow keys move through them, Enter opens one.
// Everything from the documents is shown as text, never as HTML.
import { LorannEngine } from "./engine.js";

const STAGES = { runtime: "the Python runtime", packages: "NumPy and lorann_wasm",
                 index: "the index", prepare: "the index", model: "the language model",
                 "model-prepare": "the language model", records: "the records" };
// Pieces that, joined, give back the text exactly: sentences with their
// trailing space, and runs of newlines.
const SENTENCE = /[^.!?…\n]*[.!?…]+\s*|[^.!?…\n]+\s*|\n+/g;
//: what a site downloads for offline use by default, at most (site.json may say)
const PREFETCH_LIMIT = 150e6;

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

// The site's site.json, read once per page (search.js and the widget share it).
const configs = new Map();
export function siteConfig(base) {
  const url = new URL("site.json", new URL(base, document.baseURI)).href;
  if (!configs.has(url)) {
    configs.set(url, fetch(url).then(async (response) => {
      if (!response.ok) throw new Error(`could not fetch site.json: HTTP ${response.status}`);
      return response.json();
    }));
  }
  return configs.get(url);
}

// The Cache API name the site's service worker (sw.js) keeps it under; files
// completed in the background go there too, so a redeploy drops them.
export function cacheName(siteBase, site) {
  return `lorann-site ${siteBase} ${site.version}`;
}

// Boot the engine, open the index (lazily unless the site says whole) and the
// records; onStatus(text) hears what is being fetched.
export async function openSite(base, onStatus = () => {}) {
  const siteBase = new URL(base, document.baseURI).href;
  const site = await siteConfig(siteBase);
  const s = site.search;
  if (!s) throw new Error("site.json describes no search index");
  // offline: the background download, { loaded, total } and then done,
  // skipped (over the site's limit) or error
  const handle = { site, notices: [], k: 10, offline: null,
                   report: (text) => onStatus(text, true) };
  const cache = cacheName(siteBase, site);
  const early = (name, stage, head = 8) => ({ url: name, stage, head, cacheName: cache });
  const engine = await LorannEngine.create({
    baseUrl: siteBase, config: site, prefetch: s.model ? [s.model] : [],
    open: s.whole ? [] : [early(s.index, "index", s.index_head || 8),
                          early(s.records, "records"),
                          early(s.offsets, "records", s.offsets_head || 8),
                          ...(s.tokens ? [early(s.tokens, "model")] : [])],
    onProgress: ({ stage, loaded, total }) => {
      if (stage === "offline") {
        handle.offline = { loaded, total };
        onStatus(`Downloading the rest for offline use: ${mb(loaded)} of ${mb(total)}…`, true);
      } else if (stage === "offline-done") {
        handle.offline = { loaded: total, total, done: true };
        onStatus("Everything is here: searches need no network now.", true);
      } else {
        onStatus(`Loading ${STAGES[stage] || stage}${total ? ` (${mb(loaded)} of ${mb(total)})` : ""}…`);
      }
    },
  });
  handle.engine = engine;
  const files = site.files || {};
  const size = (name) => (files[name] || {}).bytes || 0;
  const url = (name) => new URL(name, siteBase).href;
  handle.info = await engine.loadIndex(url(s.index), { lazy: !s.whole, cacheName: cache,
                                                        size: size(s.index) });
  if (s.model) {
    await engine.loadEncoder(url(s.model), {
      tokensUrl: s.tokens ? url(s.tokens) : null, tokensSize: size(s.tokens),
      whole: s.whole || Boolean(handle.info.rangeFallback), cacheName: cache });
  }
  const records = await engine.openRecords({
    recordsUrl: url(s.records), offsetsUrl: url(s.offsets), count: s.n,
    width: s.length_bytes, whole: s.whole || Boolean(handle.info.rangeFallback),
    cacheName: cache, sizes: [size(s.records), size(s.offsets)] });
  if (s.model) await engine.warm();
  if (handle.info.rangeFallback) {
    handle.notices.push("This host does not support HTTP Range requests, so the whole index " +
                        "was downloaded.");
  }
  const limit = s.prefetch_limit ?? PREFETCH_LIMIT;
  const byRange = Boolean(engine.encoder) && engine.encoder.tokens === "by range";
  const lazy = !s.whole && !handle.info.rangeFallback
    && !(handle.info.local && records.whole && !byRange);
  handle.completion = lazy && limit > 0
    ? [["index", s.index], ["records", s.records], ["offsets", s.offsets],
       ["tokens", s.tokens]]
      .filter(([role, name]) => name && (role === "index" ? !handle.info.local
        : role === "tokens" ? byRange : !records.whole))
      .map(([role, name]) => ({ role, url: url(name), size: size(name) }))
    : [];
  handle.records = records;  // { whole }: the records are all here
  handle.completionLimit = limit;
  handle.cacheName = cache;
  return handle;
}

// After the first answer: fetch the rest in the background (see engine.complete).
function startCompletion(handle) {
  if (handle.completionStarted || !handle.completion.length) return;
  handle.completionStarted = true;
  handle.engine.complete(handle.completion, { cacheName: handle.cacheName,
                                              limit: handle.completionLimit })
    .then((result) => {
      if (!result.skipped) return;
      handle.offline = { skipped: true, total: result.total };
      handle.report(`New searches need the network: the rest of this site (${mb(result.total)}) ` +
                    `is more than it downloads for offline use (${mb(handle.completionLimit)}).`);
    })
    .catch((err) => {  // what is in the cache stays: the next visit goes on from there
      handle.offline = { error: err.message };
      handle.report(`The download for offline use stopped (${err.message}); ` +
                    "the next visit goes on with it.");
    });
}

// Search text; returns { groups: [{ doc, title, url, fields, passages: [record] }], ... }.
// where (optional) filters by the site's facets, e.g. { pos: "verb" }.
export async function searchSite(handle, text, k = 10, where = null) {
  const s = handle.site.search;
  // a document per passage (as WordNet): k passages make k results
  const wanted = s.documents === s.passages ? k : 3 * k;
  const result = await handle.engine.searchText(text, Math.min(wanted, s.n),
                                                { where: where || undefined, withRecords: true });
  const ids = Array.from(result.ids).filter((id) => id >= 0);
  const groups = new Map();
  result.records.forEach((rec, i) => {
    let group = groups.get(rec.d);
    if (!group) {
      if (groups.size >= k) return;
      group = { doc: rec.d, title: rec.t, url: rec.u, fields: rec.f || {}, passages: [] };
      groups.set(rec.d, group);
    }
    group.passages.push({ ...rec, id: ids[i], score: -result.distances[i] });
  });
  startCompletion(handle);
  return { groups: [...groups.values()], ids, embedMs: result.embedMs, searchMs: result.searchMs,
           fetched: result.fetched, rounds: result.rounds, pythonMs: result.pythonMs,
           path: result.path,
           passing: result.passing };
}

// One <select> per facet of the site; onChange() when one changes. An option's
// value is its place in the facet's list ("" = any value), so a document value
// "" is an option of its own, shown as "(empty)".
function facetControls(facets, onChange) {
  const selects = facets.map(({ name, values }) => {
    const select = el("select", { className: "lorann-facet" },
                      el("option", { value: "", textContent: `Any ${name}` }),
                      ...values.map(([value, count], i) => el("option", {
                        value: String(i),
                        textContent: `${value === "" ? "(empty)" : value} (${count.toLocaleString()})` })));
    select.dataset.facet = name;
    select.setAttribute("aria-label", `Filter by ${name}`);
    select.addEventListener("change", onChange);
    return { select, values: values.map(([value]) => value) };
  });
  const where = () => {
    const chosen = selects.filter(({ select }) => select.value !== "");
    return chosen.length ? Object.fromEntries(chosen.map(({ select, values }) =>
      [select.dataset.facet, values[Number(select.value)]])) : null;
  };
  return { node: el("div", { className: "lorann-facets" }, ...selects.map((s) => s.select)),
           where };
}

function pieces(text) {
  return text.match(SENTENCE) || [];
}

function sentences(text) {
  return pieces(text).map((s) => s.trim()).filter(Boolean);
}

// The passage as text nodes, its `best`-th sentence inside <mark>; a long
// passage is cut to about SNIPPET_CHARS around that sentence (or its start).
const SNIPPET_CHARS = 320;

function passageNode(text, best) {
  const node = el("p", { className: "lorann-passage" });
  const all = pieces(text);
  let n = 0;
  const index = all.map((piece) => (piece.trim() !== "" ? n++ : -1));
  let lo = Math.max(0, index.indexOf(best));
  let hi = lo + 1;
  let used = all[lo] ? all[lo].length : 0;
  while (used < SNIPPET_CHARS && (lo > 0 || hi < all.length)) {
    if (hi < all.length) used += all[hi++].length;
    if (used < SNIPPET_CHARS && lo > 0 && best >= 0) used += all[--lo].length;
  }
  if (lo > 0) node.append("… ");
  for (let i = lo; i < hi; i++) {
    const piece = all[i];
    node.append(index[i] === best && best >= 0 ? el("mark", { textContent: piece })
                                               : document.createTextNode(piece));
  }
  if (hi < all.length) node.append(" …");
  return node;
}

// A link from a document, or null: only http(s) and relative links, never
// javascript: or data: URLs (a document's fields are untrusted).
function safeHref(url) {
  if (typeof url !== "string" || !url) return null;
  try {
    const resolved = new URL(url, document.baseURI);
    return ["http:", "https:"].includes(resolved.protocol) ? resolved.href : null;
  } catch {
    return null;
  }
}

function resultNode(group, queryStems) {
  const title = group.title || group.url || "(untitled)";
  const href = safeHref(group.passages[0].u || group.url);
  const head = href ? el("a", { href, textContent: title, className: "lorann-link" })
    : el("span", { textContent: title, className: "lorann-link", tabIndex: 0 });
  const li = el("li", { className: "lorann-result" }, head);
  li.dataset.ids = group.passages.map((p) => p.id).join(" ");
  const tags = Object.entries(group.fields).filter(([, v]) => v !== null && v !== "");
  if (tags.length) {
    li.append(el("span", { className: "lorann-fields" },
                 ...tags.map(([k, v]) => el("span", { className: "lorann-tag", title: k,
                                                       textContent: Array.isArray(v) ? v.join(", ") : String(v) }))));
  }
  for (const p of group.passages.slice(0, 2)) {
    if (p.h && p.h !== group.title) {
      const link = safeHref(p.u);
      li.append(link ? el("a", { href: link, className: "lorann-heading", textContent: p.h })
                     : el("span", { className: "lorann-heading", textContent: p.h }));
    }
    li.append(passageNode(p.x, bestSentence(p.x, queryStems)));
  }
  return li;
}

// The sentence to mark in a passage: the one sharing the most query words
// (by their first five letters, a crude stem). Embedding the sentences
// instead was measured in Chromium: 32 sentences took over 20 s of the
// worker's time (wasm MiniLM, ~20 MFLOP per token), blocking the next query.
const STOP = new Set("the and for with that this from are was were what how who why when which does can into about your you not but all any its his her their our has have had".split(" "));

function stems(text) {
  return new Set((text.toLowerCase().match(/[\p{L}\p{N}_]+/gu) || [])
    .filter((w) => w.length > 2 && !STOP.has(w)).map((w) => w.slice(0, 5)));
}

function bestSentence(text, queryStems) {
  const ss = sentences(text);
  if (ss.length < 2) return -1;
  let best = -1;
  let bestScore = 0;
  ss.forEach((s, i) => {
    let score = 0;
    for (const w of stems(s)) if (queryStems.has(w)) score++;
    if (score > bestScore) { bestScore = score; best = i; }
  });
  return best;
}

// Build the search UI inside element; resolves to the opened site handle.
export async function mount(element, { base = "./", k = 10, placeholder = "Search…" } = {}) {
  const input = el("input", { type: "search", placeholder, autocomplete: "off", spellcheck: false,
                              disabled: true, className: "lorann-input" });
  input.setAttribute("aria-label", "Search");
  const status = el("p", { className: "lorann-status" });
  status.setAttribute("aria-live", "polite");
  const notice = el("p", { className: "lorann-notice", hidden: true });
  const list = el("ol", { className: "lorann-results" });
  element.replaceChildren(input, status, notice, list);
  element.dataset.state = "loading";
  status.textContent = "Loading…";
  let handle;
  let said = "";  // the last answer's line
  let offline = "";  // the background download's line
  const show = () => { status.textContent = [said, offline].filter(Boolean).join(" · "); };
  const onStatus = (text, background = false) => {
    if (background) {
      offline = text;
      const state = handle && handle.offline;  // (handle: not yet while the site opens)
      if (state) {
        element.dataset.offline = state.done ? "done" : state.skipped ? "skipped"
          : state.error ? "stopped" : "downloading";
      }
    } else {
      said = text;
    }
    show();
  };
  try {
    handle = await openSite(base, onStatus);
  } catch (err) {
    element.dataset.state = "error";
    status.textContent = `Search is unavailable: ${err.message}`;
    throw err;
  }
  if (handle.notices.length) {
    notice.textContent = handle.notices.join(" ");
    notice.hidden = false;
  }
  const s = handle.site.search;
  element.dataset.state = "ready";
  if (!s.model) {  // made with --vectors: no text encoder to embed a query
    status.textContent = "This site was made with its own vectors: search it from JavaScript " +
      "with engine.search(vector) (see the README).";
    return handle;
  }
  said = `${s.documents.toLocaleString()} documents ready to search.`;
  show();
  input.disabled = false;
  const facets = facetControls(s.facets || [], () => request(input.value));
  if ((s.facets || []).length) input.after(facets.node);
  let latest = 0;
  const isLatest = (token) => token === latest;
  // Search as you type with no fixed delay: a query starts at once when none
  // runs; typed meanwhile, only the newest waits for it, then starts.
  let running = false;
  let queued = null;
  async function pump() {
    while (queued) {
      const [query, typed] = queued;
      queued = null;
      await run(query, typed);
    }
    running = false;
  }
  function request(query) {
    queued = [query, performance.now()];
    if (!running) {
      running = true;
      pump();
    }
  }
  async function run(query, typed = performance.now()) {
    const token = ++latest;
    if (!query.trim()) {
      list.replaceChildren();
      said = "";
      show();
      return;
    }
    try {
      const where = facets.where();
      const found = await searchSite(handle, query, k, where);
      if (!isLatest(token)) return;
      const queryStems = stems(query);
      list.replaceChildren(...found.groups.map((g) => resultNode(g, queryStems)));
      const filtered = where && found.path !== "approximate"
        ? ` · filtered: about ${Math.round(found.passing).toLocaleString()} passages match` : "";
      said = `${found.groups.length} results · embed ${found.embedMs.toFixed(0)} ms · ` +
        `search ${found.searchMs.toFixed(0)} ms${filtered}`;
      show();
      element.dataset.latency = String(performance.now() - typed);  // typed -> shown
      element.dataset.path = found.path;
      element.dataset.rounds = JSON.stringify(found.rounds || []);
      element.dataset.python = JSON.stringify(found.pythonMs || []);
      element.dataset.embed = String(found.embedMs);  // the query's embedding, ms
      element.dataset.query = query;  // the query these results answer
      element.dataset.answers = String(Number(element.dataset.answers || 0) + 1);
      element.dataset.ids = found.ids.join(" ");
    } catch (err) {
      if (isLatest(token)) {
        said = `Search failed: ${err.message}`;
        show();
      }
    }
  }
  input.addEventListener("input", () => request(input.value));
  element.addEventListener("keydown", (ev) => {
    const links = [...list.querySelectorAll(".lorann-link")];
    const at = links.indexOf(document.activeElement);
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const next = ev.key === "ArrowDown" ? at + 1 : at - 1;
      if (next < 0) input.focus();
      else if (links[Math.min(next, links.length - 1)]) links[Math.min(next, links.length - 1)].focus();
    } else if (ev.key === "Escape") {
      input.value = "";
      request("");
      input.focus();
    }
  });
  handle.search = request;
  return handle;
}

export class LorannSearchElement extends HTMLElement {
  connectedCallback() {
    if (this.started) return;
    this.started = true;
    this.ready = mount(this, { base: this.getAttribute("base") || new URL(".", import.meta.url).href,
                               k: Number(this.getAttribute("k")) || 10,
                               placeholder: this.getAttribute("placeholder") || "Search…" });
    this.ready.catch(() => {});
  }
}

if (!customElements.get("lorann-search")) customElements.define("lorann-search", LorannSearchElement);
