"""The result records of a site, readable a few at a time by HTTP Range.

``records.bin`` holds one UTF-8 JSON object per passage, in id order (which
is the index's storage order, see :meth:`.LorannIndex.number_by_position`,
so the passages of one cluster sit together); ``offsets.bin`` holds n + 1
little-endian uint64 byte offsets into it. Showing ten results fetches 2 x
10 small ranges (merged where they touch), never the whole collection.
Each record: ``d`` document number, ``t`` title, ``u`` link (or null),
``h`` heading, ``x`` passage text, ``f`` the extra fields.
"""

import json

import numpy as np

from ..atomic import atomic_output


def encode_record(passage, doc):
    url = doc.url
    if url is not None and passage.anchor:
        url = f"{url.split('#')[0]}#{passage.anchor}"
    return json.dumps({"d": passage.doc, "t": doc.title, "u": url, "h": passage.heading,
                       "x": passage.text, "f": doc.fields},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write_records(records_path, offsets_path, records):
    """Write ``records`` (an iterable of bytes) and their offsets; returns their count."""
    offsets = [0]
    with atomic_output(records_path) as f:
        for record in records:
            f.write(record)
            offsets.append(offsets[-1] + len(record))
    with atomic_output(offsets_path) as f:
        f.write(np.asarray(offsets, dtype="<u8").tobytes())
    return len(offsets) - 1


def read_records(records, offsets, ids):
    """The records of ``ids`` from the two files' bytes (the reader the browser mirrors)."""
    table = np.frombuffer(offsets, dtype="<u8")
    return [json.loads(records[int(table[i]):int(table[i + 1])]) for i in ids]
