"""The result records of a site, readable a few at a time by HTTP Range.

``records.bin`` holds one UTF-8 JSON object per passage, in id order (which
is the index's storage order, see :meth:`.LorannIndex.number_by_position`,
so the passages of one cluster sit together); ``offsets.bin`` holds n + 1
little-endian byte offsets into it, uint32 (or uint64 when the records
pass 4 GiB: :func:`offset_width`). A search in the browser fetches the
offsets of the clusters it probes with their scorers, then its candidates'
records with their vectors (``web/records.js``), never the whole collection.
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


def offset_width(total_bytes):
    """Bytes per offset for records of ``total_bytes``: 4, or 8 past 4 GiB."""
    return 4 if total_bytes < 1 << 32 else 8


def write_records(records_path, offsets_path, records):
    """Write ``records`` (an iterable of bytes) and their offsets; returns
    ``(count, bytes per offset)``."""
    offsets = [0]
    with atomic_output(records_path) as f:
        for record in records:
            f.write(record)
            offsets.append(offsets[-1] + len(record))
    width = offset_width(offsets[-1])
    with atomic_output(offsets_path) as f:
        f.write(np.asarray(offsets, dtype=f"<u{width}").tobytes())
    return len(offsets) - 1, width


def read_records(records, offsets, ids, width=4):
    """The records of ``ids`` from the two files' bytes (the reader the browser mirrors)."""
    table = np.frombuffer(offsets, dtype=f"<u{width}")
    return [json.loads(records[int(table[i]):int(table[i + 1])]) for i in ids]
