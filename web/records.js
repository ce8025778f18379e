// RecordStore: a site's result records, fetched a few at a time by HTTP Range.
//
//   const store = await RecordStore.open(recordsUrl, offsetsUrl, { whole: false });
//   const records = await store.get([12, 13, 900]);   // objects, in the order asked
//
// offsets.bin holds n + 1 little-endian uint64 byte offsets into records.bin
// (one UTF-8 JSON object per record). Lazily, a lookup fetches the offsets it
// needs, then the records, merging ranges that touch. A host that ignores
// Range answers the first request with a whole file: then both files are
// kept whole (store.whole becomes true), and nothing breaks.

const decoder = new TextDecoder();

async function get(url, range) {
  let response;
  try {
    // no-store: the browser's HTTP cache serialises requests for one URL, and
    // ranges are kept by the service worker anyway
    response = await fetch(url, range ? { headers: { Range: `bytes=${range[0]}-${range[1] - 1}` },
                                          cache: "no-store" } : {});
  } catch (err) {
    throw new Error(`could not fetch ${url}: ${err.message}`);
  }
  if (!response.ok) throw new Error(`could not fetch ${url}: HTTP ${response.status}`);
  return { partial: response.status === 206, bytes: new Uint8Array(await response.arrayBuffer()) };
}

// Sorted [start, stop) ranges, touching or overlapping ones merged.
function merge(ranges) {
  const sorted = ranges.slice().sort((a, b) => a[0] - b[0]);
  const out = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

// Fetch byte ranges of url: a function (start, stop) -> Uint8Array view.
async function fetchRanges(url, ranges) {
  const merged = merge(ranges);
  const parts = await Promise.all(merged.map((r) => get(url, r)));
  if (parts.some((p) => !p.partial)) return { whole: parts.find((p) => !p.partial).bytes };
  return {
    slice(start, stop) {
      const i = merged.findIndex(([a, b]) => a <= start && stop <= b);
      return parts[i].bytes.subarray(start - merged[i][0], stop - merged[i][0]);
    },
  };
}

export class RecordStore {
  constructor(recordsUrl, offsetsUrl, count) {
    this.recordsUrl = recordsUrl;
    this.offsetsUrl = offsetsUrl;
    this.count = count;
    this.whole = false;
    this.records = null; // whole: the two files' bytes
    this.offsets = null;
    this.fetchedBytes = 0;
  }

  static async open(recordsUrl, offsetsUrl, { count, whole = false } = {}) {
    const store = new RecordStore(recordsUrl, offsetsUrl, count);
    if (whole) await store.loadWhole();
    return store;
  }

  async loadWhole(offsetsBytes = null, recordsBytes = null) {
    const [offsets, records] = await Promise.all([
      offsetsBytes || get(this.offsetsUrl).then((r) => r.bytes),
      recordsBytes || get(this.recordsUrl).then((r) => r.bytes),
    ]);
    if (offsets.length !== (this.count + 1) * 8) {
      throw new Error(`${this.offsetsUrl}: ${offsets.length} bytes, expected ${(this.count + 1) * 8}`);
    }
    this.offsets = new DataView(offsets.buffer, offsets.byteOffset, offsets.byteLength);
    this.records = records;
    this.whole = true;
  }

  _check(ids) {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.count) throw new Error(`no record ${id}`);
    }
  }

  _decode(bytes, id) {
    try {
      return JSON.parse(decoder.decode(bytes));
    } catch (err) {
      throw new Error(`record ${id} is damaged (${err.message})`);
    }
  }

  // The records of ids (integers in [0, count)), in the order given.
  async get(ids) {
    this._check(ids);
    if (!ids.length) return [];
    if (!this.whole) {
      const offs = await fetchRanges(this.offsetsUrl, ids.map((id) => [id * 8, id * 8 + 16]));
      if (offs.whole) {
        await this.loadWhole(offs.whole);
      } else {
        const spans = ids.map((id) => {
          const view = offs.slice(id * 8, id * 8 + 16);
          const dv = new DataView(view.buffer, view.byteOffset, 16);
          return [Number(dv.getBigUint64(0, true)), Number(dv.getBigUint64(8, true))];
        });
        const recs = await fetchRanges(this.recordsUrl, spans);
        if (recs.whole) {
          await this.loadWhole(null, recs.whole);
        } else {
          this.fetchedBytes += ids.length * 16 + spans.reduce((s, [a, b]) => s + b - a, 0);
          return spans.map(([a, b], i) => this._decode(recs.slice(a, b), ids[i]));
        }
      }
    }
    return ids.map((id) => {
      const a = Number(this.offsets.getBigUint64(id * 8, true));
      const b = Number(this.offsets.getBigUint64(id * 8 + 8, true));
      return this._decode(this.records.subarray(a, b), id);
    });
  }
}
