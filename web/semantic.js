// Semantic search page: free text -> MiniLM embedding (in the worker) -> LoRANN search.
import { LorannEngine } from "./engine.js";

const $ = (sel) => document.querySelector(sel);
const STAGES = ["runtime", "packages", "index", "model", "texts"];
const POS = { n: "noun", v: "verb", a: "adjective", r: "adverb" };
const K = 10;
let engine = null;
let texts = null; // [pos, lemmas, gloss] per id
let latest = 0; // only the newest query's answer is shown

function showError(message) {
  $("#error").textContent = message;
  $("#error").hidden = !message;
}

function setStage(stage, loaded = 0, total = 0) {
  const at = STAGES.indexOf(stage === "prepare" ? "index" : stage === "model-prepare" ? "model" : stage);
  document.querySelectorAll("#stages li").forEach((li, i) => {
    li.classList.toggle("done", i < at);
    li.classList.toggle("active", i === at);
  });
  const detail = document.querySelector(`[data-stage="${stage}"] .detail`);
  if (detail && total) detail.textContent = `${(loaded / 1e6).toFixed(1)} / ${(total / 1e6).toFixed(1)} MB`;
  $("#bar").max = STAGES.length;
  $("#bar").value = at + (total ? loaded / total : 0);
}

function fact(name, value) {
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = name;
  dd.textContent = value;
  $("#facts").append(dt, dd);
}

function showFacts(info, model, loadMs) {
  fact("vectors", `${info.n.toLocaleString()} × ${info.dim} (${info.distance})`);
  fact("clusters", `${info.n_clusters} k-means clusters, global dim ${info.global_dim}, rank ${info.rank}`);
  fact("search", `${info.clusters_to_search} clusters probed, ${info.points_to_rerank} reranked exactly` +
       (info.tuning ? ` (tuned for recall@10 ≥ ${info.tuning.target_recall})` : ""));
  fact("index file", `${(info.bytes / 1e6).toFixed(1)} MB, rerank vectors ${info.rerank_dtype}`);
  fact("model", `all-MiniLM-L6-v2, ${model.num_hidden_layers} layers, ${(model.bytes / 1e6).toFixed(1)} MB of int8 weights`);
  fact("loaded in", `${(loadMs / 1000).toFixed(2)} s`);
}

function render(result, heading) {
  const list = $("#hits");
  list.replaceChildren();
  result.ids.forEach((id, i) => {
    if (id < 0) return;
    const [pos, lemmas, gloss] = texts[id];
    const li = document.createElement("li");
    li.dataset.id = String(id);
    const name = document.createElement("span");
    name.className = "lemmas";
    name.textContent = lemmas;
    const tag = document.createElement("span");
    tag.className = "pos";
    tag.textContent = POS[pos] || pos;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = (-result.distances[i]).toFixed(3);
    score.title = "cosine similarity";
    const similar = document.createElement("a");
    similar.href = "#";
    similar.className = "similar";
    similar.textContent = "similar to this";
    similar.onclick = (ev) => { ev.preventDefault(); searchSimilar(id); };
    const text = document.createElement("div");
    text.className = "gloss";
    text.textContent = gloss;
    li.append(name, tag, score, similar, text);
    list.append(li);
  });
  $("#status").textContent = heading;
  document.body.dataset.answers = String(Number(document.body.dataset.answers || 0) + 1);
}

async function searchText(query) {
  const token = ++latest;
  if (!query.trim()) {
    $("#hits").replaceChildren();
    $("#status").textContent = "";
    return;
  }
  try {
    const result = await engine.searchText(query, K);
    if (token !== latest) return;
    showError("");
    if (!document.body.dataset.firstAnswerMs) {
      document.body.dataset.firstAnswerMs = String(Math.round(performance.now()));
    }
    render(result, `embed ${result.embedMs.toFixed(1)} ms · search ${result.searchMs.toFixed(1)} ms`);
  } catch (err) {
    if (token === latest) showError(err.message);
  }
}

async function searchSimilar(id) {
  const token = ++latest;
  try {
    const vector = await engine.vectors([id]);
    const result = await engine.search(vector, K + 1);
    if (token !== latest) return;
    const keep = Array.from(result.ids).map((x, i) => [x, result.distances[i]]).filter(([x]) => x !== id).slice(0, K);
    render({ ids: keep.map(([x]) => x), distances: keep.map(([, d]) => d) },
           `similar to “${texts[id][1]}” · search ${result.ms.toFixed(1)} ms`);
    $("#q").value = "";
  } catch (err) {
    if (token === latest) showError(err.message);
  }
}

async function main() {
  const params = new URLSearchParams(location.search);
  const started = performance.now();
  try {
    const site = await (await fetch("site.json")).json();
    const entry = site.indexes.find((e) => e.name === params.get("index")) ||
                  site.indexes.find((e) => e.texts && e.model);
    if (!entry) throw new Error("this site has no text index (build it with --demo)");
    engine = await LorannEngine.create({ onProgress: (p) => setStage(p.stage, p.loaded, p.total) });
    window.lorannEngine = engine;
    const info = await engine.loadIndex(entry.file);
    const model = await engine.loadEncoder(params.get("model") || entry.model);
    setStage("texts");
    const response = await fetch(entry.texts);
    if (!response.ok) throw new Error(`could not fetch ${entry.texts}: HTTP ${response.status}`);
    texts = await response.json();
    if (texts.length !== info.n) throw new Error(`${entry.texts} has ${texts.length} entries, the index ${info.n}`);
    setStage("done");
    document.querySelectorAll("#stages li").forEach((li) => li.classList.add("done"));
    showFacts(info, model, performance.now() - started);
  } catch (err) {
    showError(`Could not start: ${err.message}`);
    document.body.dataset.ready = "error";
    return;
  }
  $("#search").hidden = false;
  const input = $("#q");
  input.disabled = false;
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => searchText(input.value), 200);
  });
  document.body.dataset.ready = "true";
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  if (params.get("q")) {
    input.value = params.get("q");
    searchText(input.value);
  }
  input.focus();
}

main();
