// Records: a site's result records, kept by the search worker and fetched by
// HTTP Range in the same rounds as the index's bytes.
//
// records.bin holds one UTF-8 JSON object per record in id order; offsets.bin
// holds n + 1 little-endian byte offsets into it, of `width` bytes each (4, or
// 8 past 4 GiB). A site's ids are its index's storage positions (see
// LorannIndex.number_by_position), so the records of one cluster lie
// together: a search fetches the offsets of the clusters it probes with
// their scorers (round 1), then the records of its candidates with their
// vectors (round 2), and shows the results with no further round.

import { RangeFile } from "./ranges.js";

const decoder = new TextDecoder();

export class Records {
  constructor(count, width) {
    this.count = count;
    this.width = width;
    this.offsets = new Float64Array(count + 1);  // known where `known` says
    this.known = new Uint8Array(count + 1);
    this.bytes = new Map();  // id -> its record's bytes, fetched ahead
    this.whole = null;  // the records file's bytes, once it is all here
    this.recordsFile = null;
    this.offsetsFile = null;
  }

  // Open a site's records: whole (both files downloaded now) or by Range.
  static async open({ recordsUrl, offsetsUrl, count, width = 8, whole = false, fetchWhole }) {
    if (!Number.isSafeInteger(count) || count < 0) throw new Error(`bad record count ${count}`);
    const store = new Records(count, width);
    if (whole) {
      store.setWhole(await fetchWhole(recordsUrl), await fetchWhole(offsetsUrl));
      return store;
    }
    const [records, offsets] = await Promise.all([
      RangeFile.open(recordsUrl, (r) => r.arrayBuffer().then((b) => new Uint8Array(b))),
      RangeFile.open(offsetsUrl, (r) => r.arrayBuffer().then((b) => new Uint8Array(b)))]);
    if (records.whole || offsets.whole) {  // a host without Range: both files whole
      store.setWhole(records.whole || await fetchWhole(recordsUrl),
                     offsets.whole || await fetchWhole(offsetsUrl));
    } else {
      store.recordsFile = records.file;
      store.offsetsFile = offsets.file;
    }
    return store;
  }

  get lazy() {
    return this.whole === null;
  }

  get stats() {
    const files = [this.recordsFile, this.offsetsFile].filter(Boolean);
    return { requests: files.reduce((s, f) => s + f.stats.requests, 0),
             bytes: files.reduce((s, f) => s + f.stats.bytes, 0) };
  }

  // Both files' bytes: every record is then read locally.
  setWhole(records, offsets) {
    if (offsets.length !== (this.count + 1) * this.width) {
      throw new Error(`offsets: ${offsets.length} bytes, expected ${(this.count + 1) * this.width}`);
    }
    const view = new DataView(offsets.buffer, offsets.byteOffset, offsets.byteLength);
    for (let i = 0; i <= this.count; i++) this.offsets[i] = this._offset(view, i * this.width);
    this.known.fill(1);
    this.whole = records;
    this.bytes.clear();
  }

  _offset(view, at) {
    return this.width === 4 ? view.getUint32(at, true) : Number(view.getBigUint64(at, true));
  }

  _check(ids) {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.count) throw new Error(`no record ${id}`);
    }
  }

  // Fetch the offsets of the records [lo, hi) of each span that are not known yet.
  async loadOffsets(spans, signal) {
    const wanted = [];
    for (const [lo, hi] of spans) {
      let a = lo;
      while (a < hi) {
        if (this.known[a] && this.known[a + 1]) { a++; continue; }
        let b = a + 1;
        while (b < hi && !(this.known[b] && this.known[b + 1])) b++;
        wanted.push([a, b]);
        a = b;
      }
    }
    if (!wanted.length || !this.lazy) return;
    const parts = await this.offsetsFile.read(
      wanted.map(([a, b]) => [a * this.width, (b + 1) * this.width]), { signal });
    wanted.forEach(([a, b], i) => {
      const view = new DataView(parts[i].buffer, parts[i].byteOffset, parts[i].byteLength);
      for (let j = a; j <= b; j++) {
        this.offsets[j] = this._offset(view, (j - a) * this.width);
        this.known[j] = 1;
      }
    });
  }

  // Fetch ahead the records of ids whose offsets are known (the others are left
  // for get()).
  async prefetch(ids, signal) {
    if (!this.lazy) return;
    const todo = [...new Set(ids)].filter((id) => !this.bytes.has(id) && this.known[id]
                                                  && this.known[id + 1]);
    if (!todo.length) return;
    const parts = await this.recordsFile.read(
      todo.map((id) => [this.offsets[id], this.offsets[id + 1]]), { signal });
    todo.forEach((id, i) => this.bytes.set(id, parts[i]));
  }

  // Which of ids still need a round trip (offsets or record).
  missing(ids) {
    return this.lazy ? ids.filter((id) => !this.bytes.has(id)) : [];
  }

  _decode(bytes, id) {
    try {
      return JSON.parse(decoder.decode(bytes));
    } catch (err) {
      throw new Error(`record ${id} is damaged (${err.message})`);
    }
  }

  // The records of ids, in the order given (fetching what is still missing).
  async get(ids) {
    this._check(ids);
    const missing = this.missing(ids);
    if (missing.length) {
      await this.loadOffsets(missing.map((id) => [id, id + 1]));
      await this.prefetch(missing);
    }
    return ids.map((id) => {
      const bytes = this.lazy ? this.bytes.get(id)
        : this.whole.subarray(this.offsets[id], this.offsets[id + 1]);
      return this._decode(bytes, id);
    });
  }
}
