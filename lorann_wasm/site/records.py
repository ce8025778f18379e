"""The result records of a site, readable a few at a time by HTTP Range.

``records.bin`` holds one UTF-8 JSON object per passage, in id order (which
is the index's storage order, see :meth:`.LorannIndex.number_by_position`,
so the passages of one cluster sit together). ``offsets.bin`` says where
each lies: first the byte offset of every :data:`ANCHOR`-th record (and of
the end, when n is a multiple), uint64, ``n // ANCHOR + 1`` of them; then
each record's length, little-endian, of ``width`` bytes (2 when every
record is shorter than 64 KiB, else 4 or 8: :func:`length_width`). A
record's offset is its block's anchor plus the lengths before it in the
block. A search in the browser reads the anchors when the page opens, then
the lengths of the clusters it probes with their scorers (2 bytes a point
where 4-byte offsets took 4: 36 -> 21 kB of a cold WordNet query), then its
candidates' records with their vectors (``web/records.js``), never the whole
collection.
Each record: ``d`` document number, ``t`` title, ``x`` passage text, and
where they are not empty ``u`` link, ``h`` heading, ``f`` the extra fields
(a search fetches a few hundred records ahead: on WordNet, which has neither
links nor headings, leaving the empty ones out saves 16 of 180 bytes each).
"""

import json

import numpy as np

from ..atomic import atomic_output


def encode_record(passage, doc):
    url = doc.url
    if url is not None and passage.anchor:
        url = f"{url.split('#')[0]}#{passage.anchor}"
    record = {"d": passage.doc, "t": doc.title, "u": url, "h": passage.heading,
              "x": passage.text, "f": doc.fields}
    record = {k: v for k, v in record.items() if k in ("d", "t", "x") or v not in (None, "", {})}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


#: records per block of ``offsets.bin``: each block's first offset is stored whole
ANCHOR = 64


def length_width(longest):
    """Bytes per stored record length when the longest record has ``longest`` bytes."""
    return 2 if longest < 1 << 16 else 4 if longest < 1 << 32 else 8


def anchor_bytes(count):
    """Bytes of the anchors at the start of ``offsets.bin`` for ``count`` records."""
    return 8 * (count // ANCHOR + 1)


def write_records(records_path, offsets_path, records):
    """Write ``records`` (an iterable of bytes) and ``offsets.bin``; returns
    ``(count, bytes per length, bytes of the anchors)``."""
    lengths = []
    with atomic_output(records_path) as f:
        for record in records:
            f.write(record)
            lengths.append(len(record))
    lengths = np.asarray(lengths, dtype=np.uint64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype("<u8")
    width = length_width(int(lengths.max()) if len(lengths) else 0)
    with atomic_output(offsets_path) as f:
        f.write(offsets[::ANCHOR].tobytes())
        f.write(lengths.astype(f"<u{width}").tobytes())
    return len(lengths), width, anchor_bytes(len(lengths))


def read_offsets(offsets, count, width):
    """The ``count + 1`` byte offsets of the records from ``offsets.bin``'s bytes."""
    head = anchor_bytes(count)
    if len(offsets) != head + width * count:
        raise ValueError(f"offsets: {len(offsets)} bytes, expected {head + width * count}")
    anchors = np.frombuffer(offsets, dtype="<u8", count=head // 8)
    lengths = np.frombuffer(offsets, dtype=f"<u{width}", offset=head).astype(np.uint64)
    out = np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint64)
    if not np.array_equal(out[::ANCHOR], anchors):
        raise ValueError("offsets: the lengths do not add up to the anchors")
    return out


def read_records(records, offsets, ids, count, width):
    """The records of ``ids`` from the two files' bytes, ``count`` records with
    lengths of ``width`` bytes (the reader the browser mirrors)."""
    table = read_offsets(offsets, count, width)
    return [json.loads(records[int(table[i]):int(table[i + 1])]) for i in ids]
