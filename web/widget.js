// The search box for a lorann-wasm site, for its own page or any other page.
//
//   import { mount } from "./search/widget.js";
//   mount(document.querySelector("#search"), { base: "./search/" });
// or, with the module loaded:   <lorann-search base="./search/"></lorann-search>
//
// Results appear as you type; Arrow keys move through them, Enter opens one.
// Everything from the documents is shown as text, never as HTML.
import { LorannEngine } from "./engine.js";
import { RecordStore } from "./records.js";

const STAGES = { runtime: "the Python runtime", packages: "NumPy and lorann_wasm",
                 index: "the index", prepare: "the index", model: "the language model",
                 "model-prepare": "the language model" };
// Pieces that, joined, give back the text exactly: sentences with their
// trailing space, and runs of newlines.
const SENTENCE = /[^.!?…\n]*[.!?…]+\s*|[^.!?…\n]+\s*|\n+/g;

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

// Boot the engine, open the index (lazily unless the site says whole) and the
// records; onStatus(text) hears what is being fetched.
export async function openSite(base, onStatus = () => {}) {
  const siteBase = new URL(base, document.baseURI).href;
  const response = await fetch(new URL("site.json", siteBase));
  if (!response.ok) throw new Error(`could not fetch site.json: HTTP ${response.status}`);
  const site = await response.json();
  const s = site.search;
  if (!s) throw new Error("site.json describes no search index");
  const engine = await LorannEngine.create({
    baseUrl: siteBase,
    onProgress: ({ stage, loaded, total }) =>
      onStatus(`Loading ${STAGES[stage] || stage}${total ? ` (${mb(loaded)} of ${mb(total)})` : ""}…`),
  });
  const info = await engine.loadIndex(new URL(s.index, siteBase).href, { lazy: !s.whole });
  if (s.model) await engine.loadEncoder(new URL(s.model, siteBase).href);
  const store = await RecordStore.open(new URL(s.records, siteBase).href,
                                       new URL(s.offsets, siteBase).href,
                                       { count: s.n, whole: s.whole || info.rangeFallback });
  const notices = info.rangeFallback
    ? ["This host does not support HTTP Range requests, so the whole index was downloaded."] : [];
  return { site, engine, info, store, notices, k: 10 };
}

// Search text; returns { groups: [{ doc, title, url, fields, passages: [record] }], ... }.
// where (optional) filters by the site's facets, e.g. { pos: "verb" }.
export async function searchSite(handle, text, k = 10, where = null) {
  const result = await handle.engine.searchText(text, Math.min(3 * k, handle.site.search.n),
                                                where ? { where } : {});
  const ids = Array.from(result.ids).filter((id) => id >= 0);
  const records = await handle.store.get(ids);
  const groups = new Map();
  records.forEach((rec, i) => {
    let group = groups.get(rec.d);
    if (!group) {
      if (groups.size >= k) return;
      group = { doc: rec.d, title: rec.t, url: rec.u, fields: rec.f || {}, passages: [] };
      groups.set(rec.d, group);
    }
    group.passages.push({ ...rec, id: ids[i], score: -result.distances[i] });
  });
  return { groups: [...groups.values()], ids, embedMs: result.embedMs, searchMs: result.searchMs,
           fetched: result.fetched, path: result.path, passing: result.passing };
}

// One <select> per facet of the site ("" = any value); onChange() when one changes.
function facetControls(facets, onChange) {
  const selects = facets.map(({ name, values }) => {
    const select = el("select", { className: "lorann-facet" },
                      el("option", { value: "", textContent: `Any ${name}` }),
                      ...values.map(([value, count]) => el("option", {
                        value, textContent: `${value} (${count.toLocaleString()})` })));
    select.dataset.facet = name;
    select.setAttribute("aria-label", `Filter by ${name}`);
    select.addEventListener("change", onChange);
    return select;
  });
  const where = () => {
    const chosen = selects.filter((s) => s.value !== "");
    return chosen.length ? Object.fromEntries(chosen.map((s) => [s.dataset.facet, s.value])) : null;
  };
  return { node: el("div", { className: "lorann-facets" }, ...selects), where };
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
  try {
    handle = await openSite(base, (text) => { status.textContent = text; });
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
  status.textContent = `${s.documents.toLocaleString()} documents ready to search.`;
  input.disabled = false;
  const facets = facetControls(s.facets || [], () => run(input.value));
  if ((s.facets || []).length) input.after(facets.node);
  let latest = 0;
  const isLatest = (token) => token === latest;
  async function run(query) {
    const token = ++latest;
    if (!query.trim()) {
      list.replaceChildren();
      status.textContent = "";
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
      status.textContent = `${found.groups.length} results · embed ${found.embedMs.toFixed(0)} ms · ` +
        `search ${found.searchMs.toFixed(0)} ms${filtered}`;
      element.dataset.path = found.path;
      element.dataset.answers = String(Number(element.dataset.answers || 0) + 1);
      element.dataset.ids = found.ids.join(" ");
    } catch (err) {
      if (isLatest(token)) status.textContent = `Search failed: ${err.message}`;
    }
  }
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => run(input.value), 150);
  });
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
      run("");
      input.focus();
    }
  });
  handle.search = run;
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
