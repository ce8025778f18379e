// RangeFile: byte ranges of one file over HTTP, in as few requests as the host allows.
//
//   const file = await RangeFile.open(url);      // { file } or { whole: Uint8Array }
//   const [a, b] = await file.read([[0, 100], [5000, 5400]]);   // Uint8Array each
//
// A read asks for all its ranges in one request (`Range: bytes=0-99,5000-5399`):
// nginx, Apache and `lorann-wasm serve` answer with one multipart/byteranges
// body, so a search's scattered rows cost one round trip and one request.
// A host that answers such a request with only some of the ranges, or whole
// (200), is asked again one range per request, from then on. A host that
// ignores Range altogether is found out by `open`, which then returns the
// whole file instead. `file.stats` counts requests and bytes. A file can be
// opened early (`RangeFile.prefetch(url, readWhole, head)`) with its first
// bytes — a header, say — which are then read with no request. Once the
// host has answered Range, reads go to `direct(url)`, which the site's
// service worker lets through untouched (see sw.js).

const encoder = new TextEncoder();
const decoder = new TextDecoder();
//: ranges in one request at most (Apache answers more than 200 whole), and the
//: longest Range header sent (servers refuse request headers past about 8 kB)
const MAX_PARTS = 150;
const MAX_HEADER = 6000;
//: ranges closer than this are fetched as one (a multipart part header is ~80 bytes)
const MERGE_GAP = 96;
//: opens started by RangeFile.prefetch, by URL, until an open takes them
const early = new Map();

//: the query that marks a read of a file whose host answers Range: sw.js lets
//: such requests go to the network without it (see there)
export const DIRECT = "lorann-range";

// url as a Range read of a host known to answer Range asks for it.
export function direct(url) {
  return url.includes("?") ? url : `${url}?${DIRECT}`;
}

function rangeError(url, detail) {
  return new Error(`could not fetch ${url}: ${detail}`);
}

async function send(url, header, signal) {
  try {
    // no-store: the HTTP cache serialises requests for one URL, and what is
    // fetched is kept by the worker anyway
    return await fetch(url, { headers: { Range: header }, cache: "no-store", signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw rangeError(url, err.message);
  }
}

// Sorted [start, stop) spans covering ranges, those less than MERGE_GAP apart joined.
function spans(ranges) {
  const sorted = ranges.map(([a, b]) => [a, b]).filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  const out = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + MERGE_GAP) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

// Groups of spans, each within MAX_PARTS ranges and MAX_HEADER characters.
function groups(all) {
  const out = [];
  let group = [];
  let length = 6;
  for (const [a, b] of all) {
    const text = `${a}-${b - 1}`;
    if (group.length && (group.length >= MAX_PARTS || length + text.length + 1 > MAX_HEADER)) {
      out.push(group);
      group = [];
      length = 6;
    }
    group.push([a, b]);
    length += text.length + 1;
  }
  if (group.length) out.push(group);
  return out;
}

function indexOf(haystack, needle, from) {
  outer: for (let i = from; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

// The parts of a multipart/byteranges body: [{ start, stop, bytes }].
export function parseMultipart(body, contentType) {
  const m = /boundary="?([^";]+)"?/i.exec(contentType || "");
  if (!m) throw new Error("a multipart answer without a boundary");
  const delimiter = encoder.encode(`--${m[1]}`);
  const parts = [];
  let at = indexOf(body, delimiter, 0);
  while (at >= 0) {
    at += delimiter.length;
    if (body[at] === 45 && body[at + 1] === 45) break;  // "--": the last delimiter
    const headEnd = indexOf(body, encoder.encode("\r\n\r\n"), at);
    if (headEnd < 0) throw new Error("a multipart part without its headers' end");
    const head = decoder.decode(body.subarray(at, headEnd));
    const r = /content-range:\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)/i.exec(head);
    if (!r) throw new Error("a multipart part without Content-Range");
    const start = Number(r[1]);
    const stop = Number(r[2]) + 1;
    const from = headEnd + 4;
    if (from + (stop - start) > body.length) throw new Error("truncated response (multipart)");
    parts.push({ start, stop, bytes: body.subarray(from, from + stop - start) });
    at = indexOf(body, delimiter, from + (stop - start));
  }
  return parts;
}

export class RangeFile {
  constructor(url, size) {
    this.url = url;
    this.size = size;
    this.multi = true;  // until the host shows otherwise
    this.head = new Uint8Array(0);  // the file's first bytes, read when it was opened
    this.stats = { requests: 0, bytes: 0 };
  }

  // Open url by one Range request for its first `head` bytes (kept as
  // file.head, read with no request later): { file } or, from a host that
  // ignores Range, { whole } (the file's bytes, read from that same answer).
  // An open started early by prefetch(url) is taken instead of a new request.
  static async open(url, readWhole, head = 8) {
    const pending = early.get(url);
    if (pending) {
      early.delete(url);
      return pending;
    }
    const response = await send(url, `bytes=0-${Math.max(1, head) - 1}`);
    if (response.status === 200) return { whole: await readWhole(response) };
    if (response.status !== 206) {
      if (response.body) await response.body.cancel().catch(() => {});
      throw rangeError(url, `HTTP ${response.status}`);
    }
    const size = Number((response.headers.get("Content-Range") || "").split("/")[1]);
    if (!Number.isSafeInteger(size) || size <= 0) {
      if (response.body) await response.body.cancel().catch(() => {});
      throw rangeError(url, "the Range answer gives no file size (Content-Range)");
    }
    const file = new RangeFile(url, size);
    file.head = new Uint8Array(await response.arrayBuffer());
    if (file.head.length !== Math.min(Math.max(1, head), size)) {
      throw rangeError(url, `truncated response: ${file.head.length} bytes of the first ${head}`);
    }
    file.stats.requests += 1;
    file.stats.bytes += file.head.length;
    return { file };
  }

  // Start opening url now (say, while the runtime starts), as open(url,
  // readWhole, head) would: the next open(url) takes its answer or its error.
  static prefetch(url, readWhole, head = 8) {
    if (early.has(url)) return;
    const pending = RangeFile.open(url, readWhole, head);
    pending.catch(() => {});  // (reported by the open that takes it)
    early.set(url, pending);
  }

  // Whether an open of url was started by prefetch and not taken yet.
  static prefetched(url) {
    return early.has(url);
  }

  // The bytes [start, stop) if the file's head holds them, else null.
  fromHead(start, stop) {
    return stop <= this.head.length ? this.head.subarray(start, stop) : null;
  }

  // The bytes of each [start, stop) of ranges, in order.
  async read(ranges, { signal } = {}) {
    for (const [a, b] of ranges) {
      if (!(Number.isSafeInteger(a) && Number.isSafeInteger(b) && 0 <= a && a <= b && b <= this.size)) {
        throw new Error(`bytes ${a}-${b} lie outside ${this.url} (${this.size} bytes)`);
      }
    }
    const wanted = spans(ranges.filter(([a, b]) => !this.fromHead(a, b)));
    const got = await this._fetch(wanted, signal);
    return ranges.map(([a, b]) => {
      if (b === a) return new Uint8Array(0);
      const known = this.fromHead(a, b);
      if (known) return known;
      const part = got.find((p) => p.start <= a && b <= p.stop);
      return part.bytes.subarray(a - part.start, b - part.start);
    });
  }

  async _fetch(wanted, signal) {
    if (!wanted.length) return [];
    if (this.multi && wanted.length > 1) {
      const answers = await Promise.all(groups(wanted).map((g) => this._request(g, signal)));
      const parts = answers.flat();
      const missing = wanted.filter(([a, b]) => !parts.some((p) => p.start <= a && b <= p.stop));
      if (!missing.length) return parts;
      this.multi = false;  // the host answered only some ranges: one per request from now on
      return parts.concat(await this._fetch(missing, signal));
    }
    const answers = await Promise.all(wanted.map((s) => this._request([s], signal)));
    return answers.flat();
  }

  // One request for ranges: its parts ([] if the host answered whole: then
  // this file is read one range per request from now on).
  async _request(ranges, signal) {
    const header = "bytes=" + ranges.map(([a, b]) => `${a}-${b - 1}`).join(",");
    const response = await send(direct(this.url), header, signal);
    this.stats.requests += 1;
    if (response.status === 200) {  // ranges ignored: do not read the whole file
      if (response.body) await response.body.cancel().catch(() => {});
      if (ranges.length === 1) throw rangeError(this.url, "the host stopped answering Range requests");
      this.multi = false;
      return [];
    }
    if (response.status !== 206) {
      if (response.body) await response.body.cancel().catch(() => {});
      throw rangeError(this.url, `HTTP ${response.status} for ${ranges.length} range(s)`);
    }
    const body = new Uint8Array(await response.arrayBuffer());
    this.stats.bytes += body.length;
    const type = response.headers.get("Content-Type") || "";
    if (/^multipart\/byteranges/i.test(type)) return parseMultipart(body, type);
    const r = /bytes\s+(\d+)-(\d+)\//.exec(response.headers.get("Content-Range") || "");
    if (!r) throw rangeError(this.url, "a 206 answer without Content-Range");
    const start = Number(r[1]);
    if (Number(r[2]) + 1 - start !== body.length) {
      throw rangeError(this.url, `truncated response: ${body.length} bytes for ${r[1]}-${r[2]}`);
    }
    return [{ start, stop: start + body.length, bytes: body }];
  }
}
