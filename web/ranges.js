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
const CRLF2 = encoder.encode("\r\n\r\n");
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

// [start, stop) spans covering ranges, those less than MERGE_GAP apart joined:
// sorted, or with `ordered` in the ranges' own order (joining only a range to
// the one before it), so that a host answers them in that order.
function spans(ranges, ordered = false) {
  const kept = ranges.map(([a, b]) => [a, b]).filter(([a, b]) => b > a);
  if (!ordered) kept.sort((x, y) => x[0] - y[0]);
  const out = [];
  for (const [a, b] of kept) {
    const last = out[out.length - 1];
    if (last && last[0] <= a && a <= last[1] + MERGE_GAP) last[1] = Math.max(last[1], b);
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

// A multipart/byteranges body read as it arrives: push(chunk) returns the
// parts ({ start, stop, bytes }) it completes; end() all of them, or throws if
// the body stopped short. `size` (Content-Length, if known) sizes the buffer.
export class MultipartReader {
  constructor(contentType, size = 0) {
    const m = /boundary="?([^";]+)"?/i.exec(contentType || "");
    if (!m) throw new Error("a multipart answer without a boundary");
    this.delimiter = encoder.encode(`--${m[1]}`);
    this.buffer = new Uint8Array(Math.max(size, 1024));
    this.length = 0;  // bytes received
    this.at = -1;  // where the next delimiter is looked for (-1: the first one)
    this.parts = [];
    this.done = false;
  }

  push(chunk) {
    if (this.length + chunk.length > this.buffer.length) {
      // a new buffer: the parts found so far keep viewing the old one
      const grown = new Uint8Array(Math.max(2 * this.buffer.length, this.length + chunk.length));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(chunk, this.length);
    this.length += chunk.length;
    const before = this.parts.length;
    while (!this.done && this._next());
    return this.parts.slice(before);
  }

  // Read one more part (or the closing delimiter) if it is all here.
  _next() {
    const body = this.buffer.subarray(0, this.length);
    const at = indexOf(body, this.delimiter, Math.max(this.at, 0));
    if (at < 0 || at + this.delimiter.length + 2 > body.length) return false;
    const from = at + this.delimiter.length;
    if (body[from] === 45 && body[from + 1] === 45) {  // "--": the last delimiter
      this.done = true;
      return false;
    }
    const headEnd = indexOf(body, CRLF2, from);
    if (headEnd < 0) return false;
    const head = decoder.decode(body.subarray(from, headEnd));
    const r = /content-range:\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)/i.exec(head);
    if (!r) throw new Error("a multipart part without Content-Range");
    const start = Number(r[1]);
    const stop = Number(r[2]) + 1;
    if (headEnd + 4 + (stop - start) > body.length) return false;
    this.parts.push({ start, stop, bytes: body.subarray(headEnd + 4, headEnd + 4 + stop - start) });
    this.at = headEnd + 4 + (stop - start);
    return true;
  }

  end() {
    // (a body without its closing delimiter is whole if no part was left half-read)
    if (this.done || indexOf(this.buffer.subarray(0, this.length), this.delimiter,
                             Math.max(this.at, 0)) < 0) return this.parts;
    throw new Error("truncated response (multipart)");
  }
}

// The parts of a whole multipart/byteranges body: [{ start, stop, bytes }].
export function parseMultipart(body, contentType) {
  const reader = new MultipartReader(contentType, body.length);
  reader.push(body);
  return reader.end();
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

  // The bytes of each [start, stop) of ranges, in order. With onRanges, the
  // ranges are asked for in their own order, and as the answers stream in
  // onRanges(done, bytes) hears each time more leading ranges are all here
  // (`done` of them; `bytes` theirs, in order), before read resolves.
  async read(ranges, { signal, onRanges = null } = {}) {
    for (const [a, b] of ranges) {
      if (!(Number.isSafeInteger(a) && Number.isSafeInteger(b) && 0 <= a && a <= b && b <= this.size)) {
        throw new Error(`bytes ${a}-${b} lie outside ${this.url} (${this.size} bytes)`);
      }
    }
    const wanted = spans(ranges.filter(([a, b]) => !this.fromHead(a, b)), Boolean(onRanges));
    let onPart = null;
    if (onRanges) {
      const arrived = [];
      const here = [];  // the bytes of the leading ranges that are all here
      onPart = (part) => {
        if (part) arrived.push(part);
        const before = here.length;
        for (let bytes; here.length < ranges.length
             && (bytes = this._slice(ranges[here.length], arrived)) !== null;) here.push(bytes);
        if (here.length > before) onRanges(here.length, here.slice());
      };
      onPart(null);  // ranges the file's head holds (and empty ones) are here already
    }
    const got = await this._fetch(wanted, signal, onPart);
    return ranges.map((range) => this._slice(range, got));
  }

  // The bytes of range [a, b) from the file's head or from parts; null if not there.
  _slice([a, b], parts) {
    if (b === a) return new Uint8Array(0);
    const known = this.fromHead(a, b);
    if (known) return known;
    const part = parts.find((p) => p.start <= a && b <= p.stop);
    return part ? part.bytes.subarray(a - part.start, b - part.start) : null;
  }

  async _fetch(wanted, signal, onPart) {
    if (!wanted.length) return [];
    if (this.multi && wanted.length > 1) {
      const answers = await Promise.all(groups(wanted).map((g) => this._request(g, signal, onPart)));
      const parts = answers.flat();
      const missing = wanted.filter(([a, b]) => !parts.some((p) => p.start <= a && b <= p.stop));
      if (!missing.length) return parts;
      this.multi = false;  // the host answered only some ranges: one per request from now on
      return parts.concat(await this._fetch(missing, signal, onPart));
    }
    const answers = await Promise.all(wanted.map((s) => this._request([s], signal, onPart)));
    return answers.flat();
  }

  // One request for ranges: its parts ([] if the host answered whole: then
  // this file is read one range per request from now on).
  // onPart(part), if given, hears each part as it arrives.
  async _request(ranges, signal, onPart = null) {
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
    const type = response.headers.get("Content-Type") || "";
    if (/^multipart\/byteranges/i.test(type)) {
      const reader = new MultipartReader(type, Number(response.headers.get("Content-Length")) || 0);
      if (onPart && response.body) {
        const stream = response.body.getReader();
        try {
          for (let chunk = await stream.read(); !chunk.done; chunk = await stream.read()) {
            this.stats.bytes += chunk.value.length;
            reader.push(chunk.value).forEach(onPart);
          }
        } catch (err) {
          stream.cancel().catch(() => {});
          throw err;
        }
      } else {
        const body = new Uint8Array(await response.arrayBuffer());
        this.stats.bytes += body.length;
        reader.push(body);
      }
      return reader.end();
    }
    const body = new Uint8Array(await response.arrayBuffer());
    this.stats.bytes += body.length;
    const r = /bytes\s+(\d+)-(\d+)\//.exec(response.headers.get("Content-Range") || "");
    if (!r) throw rangeError(this.url, "a 206 answer without Content-Range");
    const start = Number(r[1]);
    if (Number(r[2]) + 1 - start !== body.length) {
      throw rangeError(this.url, `truncated response: ${body.length} bytes for ${r[1]}-${r[2]}`);
    }
    const part = { start, stop: start + body.length, bytes: body };
    if (onPart) onPart(part);
    return [part];
  }
}
