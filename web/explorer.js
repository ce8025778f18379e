// The demo page: loading progress by stage, then queries by item or by vector.
import { LorannEngine } from "./engine.js";

const $ = (sel) => document.querySelector(sel);
const STAGES = ["runtime", "packages", "index", "prepare"];
let engine = null;
let site = null;
let current = null; // the manifest entry of the loaded index

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function onProgress({ stage, loaded, total }) {
  const at = STAGES.indexOf(stage);
  document.querySelectorAll("#stages li").forEach((li, i) => {
    li.classList.toggle("done", i < at);
    li.classList.toggle("active", i === at);
  });
  const bar = $("#bar");
  if (stage === "index" && total) {
    bar.max = total;
    bar.value = loaded;
    $('[data-stage="index"] .detail').textContent =
      `${(loaded / 1e6).toFixed(1)} / ${(total / 1e6).toFixed(1)} MB`;
  } else {
    bar.max = STAGES.length;
    bar.value = at;
  }
}

function finishLoading() {
  document.querySelectorAll("#stages li").forEach((li) => {
    li.classList.remove("active");
    li.classList.add("done");
  });
  $("#bar").max = 1;
  $("#bar").value = 1;
}

function describeIndex(info) {
  return `${info.n.toLocaleString()} vectors × ${info.dim} dims, ${info.distance}, ` +
    `${info.n_clusters} clusters, rank ${info.rank}, ${(info.bytes / 1e6).toFixed(1)} MB; ` +
    `defaults: ${info.clusters_to_search} clusters, rerank ${info.points_to_rerank}`;
}

async function loadIndex(entry) {
  showError("");
  $("#query").hidden = true;
  $("#loading").hidden = false;
  try {
    const info = await engine.loadIndex(entry.file);
    current = entry;
    finishLoading();
    $("#index-facts").textContent = describeIndex(info);
    $("#item").max = info.n - 1;
    $("#query").hidden = false;
    document.body.dataset.ready = "true";
  } catch (err) {
    current = null;
    showError(`Could not load index "${entry.title}": ${err.message}`);
    $("#query").hidden = false;
    document.body.dataset.ready = "error";
  }
}

function drawPreview(vector, shape) {
  const [w, h] = shape;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.className = "preview";
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  let lo = Infinity, hi = -Infinity;
  for (const v of vector) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const span = hi - lo || 1;
  for (let i = 0; i < w * h; i++) {
    const g = 255 - Math.round(((vector[i] - lo) / span) * 255);
    img.data.set([g, g, g, 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

async function showResults(result, label) {
  const tbody = $("#results tbody");
  tbody.replaceChildren();
  const shape = current && current.preview ? current.preview : null;
  document.querySelectorAll(".preview-col").forEach((el) => { el.hidden = !shape; });
  const valid = Array.from(result.ids).filter((id) => id >= 0);
  const vectors = shape && valid.length ? await engine.vectors(valid) : null;
  const dim = engine.info.dim;
  result.ids.forEach((id, i) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${i + 1}</td><td class="num">${id}</td>` +
      `<td class="num">${result.distances[i].toPrecision(6)}</td>`;
    if (shape) {
      const td = document.createElement("td");
      if (id >= 0) td.append(drawPreview(vectors.subarray(i * dim, (i + 1) * dim), shape));
      tr.append(td);
    }
    tbody.append(tr);
  });
  $("#status").textContent = `${label}: ${result.ids.length} results in ${result.ms.toFixed(2)} ms (worker time)`;
  document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1);
}

function searchOptions() {
  return {
    clustersToSearch: Number($("#clusters").value) || 0,
    pointsToRerank: Number($("#rerank").value) || 0,
  };
}

async function run(label, getVector) {
  showError("");
  if (!engine.info) {
    showError("No index is loaded.");
    return;
  }
  try {
    const vector = await getVector();
    const result = await engine.search(vector, Number($("#k").value) || 10, searchOptions());
    await showResults(result, label);
  } catch (err) {
    showError(err.message);
  }
}

function parseVector(text) {
  const parts = text.trim().split(/[\s,;\[\]]+/).filter(Boolean);
  const values = parts.map(Number);
  const bad = parts.findIndex((p, i) => !Number.isFinite(values[i]));
  if (!parts.length) throw new Error("The vector is empty.");
  if (bad >= 0) throw new Error(`"${parts[bad]}" is not a number.`);
  return Float32Array.from(values);
}

async function main() {
  const params = new URLSearchParams(location.search);
  try {
    const response = await fetch("site.json");
    if (!response.ok) throw new Error(`could not fetch site.json: HTTP ${response.status}`);
    site = await response.json();
    engine = await LorannEngine.create({ onProgress });
  } catch (err) {
    showError(`Could not start the search engine: ${err.message}`);
    document.body.dataset.ready = "error";
    return;
  }
  const select = $("#index-select");
  for (const entry of site.indexes) select.append(new Option(entry.title, entry.name));
  const wanted = params.get("index");
  const custom = params.get("indexUrl");
  if (custom) {
    const entry = { name: "custom", title: custom, file: custom };
    site.indexes.push(entry);
    select.append(new Option(custom, "custom"));
    select.value = "custom";
  } else if (wanted) {
    select.value = wanted;
  } else {
    const drawable = site.indexes.find((e) => e.preview);
    if (drawable) select.value = drawable.name;
  }
  select.onchange = () => loadIndex(site.indexes.find((e) => e.name === select.value));
  $("#by-item").onsubmit = (ev) => {
    ev.preventDefault();
    const id = Number($("#item").value);
    run(`Neighbours of item ${id}`, async () => {
      if (!Number.isInteger(id) || id < 0 || id >= engine.info.n) {
        throw new Error(`Item must be an integer from 0 to ${engine.info.n - 1}.`);
      }
      return engine.vectors([id]);
    });
  };
  $("#random").onclick = () => {
    $("#item").value = Math.floor(Math.random() * engine.info.n);
    $("#by-item").requestSubmit();
  };
  $("#by-vector").onsubmit = (ev) => {
    ev.preventDefault();
    run("Pasted vector", async () => parseVector($("#vector").value));
  };
  if (!site.indexes.length) {
    showError("This site has no index files.");
    return;
  }
  await loadIndex(site.indexes.find((e) => e.name === select.value) || site.indexes[0]);
}

main();
