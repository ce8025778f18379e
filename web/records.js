// Records: a site's result records, kept by the search worker and fetched by
// HTTP Range in the same rounds as the index's bytes.
//
// records.bin holds one UTF-8 JSON object per record in id order; offsets.bin
// holds the byte offset of every ANCHOR-th record (uint64, `head` bytes,
// read when the file is opened), then each record's length (little-endian,
// `width` bytes: 2, or 4 and 8 for records of 64 KiB and more); see
// lorann_wasm/site/records.py. A site's ids are its index's storage
// positions (see LorannIndex.number_by_position), so the records of one
// cluster lie together: a search fetches the lengths of the clusters it
// probes (from their block's anchor on) with their scorers (round 1), then
// the records of its candidates with their vectors (round 2), and shows the
// results with no further round.

import { RangeFile } from "./ranges.js";

const decoder = new TextDecoder();
//: records per block of offsets.bin (its anchors), as records.py writes them
const ANCHOR = 64;

export class Records {
  constructor(count, width) {
    this.count = count;
    this.width = width;  // bytes of one record length
    this.head = 8 * (Math.floor(count / ANCHOR) + 1);  // bytes of the anchors
    this.offsets = new Float64Array(count + 1);  // known where `known` says
    this.known = new Uint8Array(count + 1);
    this.bytes = new Map();  // id -> its record's bytes, fetched ahead
    this.whole = null;  // the records file's bytes, once it is all here
    this.recordsFile = null;
    this.offsetsFile = null;
  }

  // Open a site's records: whole (both files downloaded now) or by Range.
  static async open({ recordsUrl, offsetsUrl, count, width = 2, whole = false, fetchWhole }) {
    if (!Number.isSafeInteger(count) || count < 0) throw new Error(`bad record count ${count}`);
    if (![2, 4, 8].includes(width)) throw new Error(`bad record length width ${width}`);
    const store = new Records(count, width);
    if (whole) {
      store.setWhole(await fetchWhole(recordsUrl), await fetchWhole(offsetsUrl));
      return store;
    }
    const readWhole = (r) => r.arrayBuffer().then((b) => new Uint8Array(b));
    const [records, offsets] = await Promise.all([
      RangeFile.open(recordsUrl, readWhole),
      RangeFile.open(offsetsUrl, readWhole, store.head)]);  // (taken from an early open)
    if (records.whole || offsets.whole) {  // a host without Range: both files whole
      store.setWhole(records.whole || await fetchWhole(recordsUrl),
                     offsets.whole || await fetchWhole(offsetsUrl));
    } else {
      store.recordsFile = records.file;
      store.offsetsFile = offsets.file;
      store._anchors(await offsets.file.read([[0, store.head]]).then(([bytes]) => bytes));
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
    const expected = this.head + this.count * this.width;
    if (offsets.length !== expected) {
      throw new Error(`offsets: ${offsets.length} bytes, expected ${expected}`);
    }
    this._anchors(offsets.subarray(0, this.head));
    this._lengths(0, offsets.subarray(this.head));
    this.whole = records;
    this.bytes.clear();
  }

  // The anchors: the offsets of records 0, ANCHOR, 2 ANCHOR, ... (and of the end).
  _anchors(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let k = 0; k * 8 < bytes.length; k++) {
      this.offsets[k * ANCHOR] = Number(view.getBigUint64(k * 8, true));
      this.known[k * ANCHOR] = 1;
    }
  }

  // The lengths of records a, a + 1, ... (a an anchor's record): their offsets,
  // each checked against the anchors it reaches.
  _lengths(a, bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const w = this.width;
    let offset = this.offsets[a];
    for (let j = 0; (j + 1) * w <= bytes.length; j++) {
      offset += w === 2 ? view.getUint16(j * w, true)
        : w === 4 ? view.getUint32(j * w, true) : Number(view.getBigUint64(j * w, true));
      const i = a + j + 1;
      if ((i % ANCHOR === 0 || i === this.count) && this.known[i] && this.offsets[i] !== offset) {
        throw new Error(`offsets: the lengths before record ${i} do not add up to its anchor`);
      }
      this.offsets[i] = offset;
      this.known[i] = 1;
    }
  }

  _check(ids) {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.count) throw new Error(`no record ${id}`);
    }
  }

  // Fetch what the offsets of the records [lo, hi) of each span need: the
  // lengths from the anchor at or before lo up to hi, unless all are known.
  async loadOffsets(spans, signal) {
    if (!this.lazy) return;
    const wanted = [];
    for (const [lo, hi] of spans) {
      let known = true;
      for (let i = lo; i <= hi && known; i++) known = this.known[i] === 1;
      if (!known) wanted.push([lo - (lo % ANCHOR), hi]);
    }
    if (!wanted.length) return;
    const parts = await this.offsetsFile.read(
      wanted.map(([a, b]) => [this.head + a * this.width, this.head + b * this.width]),
      { signal });
    wanted.forEach(([a], i) => this._lengths(a, parts[i]));
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
