"""``lorann-wasm site``: a collection of documents in, a static search site out.

The steps: read the documents, cut them into passages, embed them (cached
per text), index them (tuned for recall@10 >= 0.95), store the result
records in the index's order, and add the pages, the Pyodide runtime, this
package as a wheel and the encoder's weights. The site is assembled in a
temporary folder beside ``out`` and moved into place only when complete.
"""

import json
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import replace

from ..params import TARGET_RECALL
from ..user_cache import user_cache
from .bundle import SITE_PAGES, browser_model, package_wheel, web_folder
from .documents import Fields, read_inputs
from .explorer import add_explorer
from .passages import Passage, check_passage_tokens, split_documents
from .paths import inside
from .publish import publish_staged
from .records import encode_record, length_width, write_records
from .runtime import sha256

GENERATOR = "lorann-wasm site"
#: 2: offsets of offset_bytes each (uint32), prefetch_limit; 3: the model's word-piece
#: rows in their own file (search.tokens), read by Range beyond the model's head;
#: 4: offsets.bin holds anchors and record lengths (length_bytes, offsets_head)
FORMAT = 4
#: word pieces whose rows the model file keeps: the site's most frequent. The
#: other rows (11.8 MB in all) are read when a query needs them, in one request.
#: WordNet, 313 queries (lemmas, questions): with 2,048 / 4,096 / 8,192 / 16,384
#: rows (0.8 / 1.6 / 3.2 / 6.4 MB), 81 / 59 / 31 / 9 % of them needed a fetch.
#: BERT's vocabulary order as a prior for everyday words (from id 1996 on it
#: follows frequency in BERT's corpus) did not help: of measure_demo's 60
#: WordNet phrases, 4,096 rows of which 1,024-3,072 taken in that order left
#: 21-24 needing a fetch, against 20 for the site's counts alone. Nor would
#: shipping the other rows coarsely, for a first round probed before the exact
#: rows come (one round fewer): of 280 WordNet queries lacking rows, the exact
#: vector's 48 clusters lay within the coarse vector's 60 for 94 % with 4-bit
#: rows (5.1 MB more to download first), 55 % with 3-bit (3.9 MB), 27 % with
#: 2-bit (2.6 MB), 6 % with 64 PCA coefficients (1.7 MB).
TOKEN_HEAD = 4096
#: bytes of index and records the page downloads for offline use at most, by default
PREFETCH_LIMIT = 150_000_000


#: a site's index is read over the network, a probed cluster's scorer rows at a
#: time, so it is built for bytes per query: 4-bit scorer rows, and twice the
#: library's clusters (smaller ones, a finer choice of which points to fetch).
#: WordNet, recall@10 >= 0.95 on 1,000 held-out glosses, bytes a cold query
#: fetches (scorer rows of the probed points, offsets, candidates' vectors and
#: records): 343 clusters 8-bit 1,053 kB, 4-bit 853 kB; 686 clusters 8-bit
#: 624 kB, 4-bit 530 kB; 1,000 clusters 4-bit 403 kB, but 5 MB of prefix at
#: boot against 1.8 MB (the A matrices grow with the clusters).
SITE_INDEX = {"quantization_bits": 4}
#: the scorers' rank (at most the dimension). Tuned for bytes (below), WordNet's
#: cold query at the server, median of 10, and the first visit's bytes, with
#: 8-bit A: rank 32 (64 probed, 400 reranked) 651 kB, 24.9 MB; rank 40 (56, 300)
#: 576 kB, 25.6 MB; rank 48 (48, 300) 560 kB, 26.3 MB (the A matrices in the
#: prefix grow with it); rank 24 needs (112, 500), rank 16 does not reach 0.95.
#: With 4-bit A (format 7), after the chain numbering (measure_demo, emulated
#: link): rank 40 (64, 300) 565 kB, 23.8 MB; rank 48 (48, 300) 508 kB, 24.1 MB
SITE_RANK = 48
#: held-out queries the site's tuning measures: 4x the library's default halves
#: the standard error of its recall estimates (WordNet: 0.0045 -> 0.0022), so
#: the margin the tuner keeps costs fewer bytes per query; +10 s of build
SITE_TUNING_QUERIES = 2000


#: bytes a ``multipart/byteranges`` answer spends on each range besides the
#: range itself: its boundary, Content-Type and Content-Range lines (nginx and
#: ``serve`` alike). A cold WordNet query asks for several hundred ranges.
PART_BYTES = 110


def bytes_per_query(index, record_bytes, length_bytes):
    """The cost the site's index is tuned by (``tuning_cost`` of
    :meth:`.LorannIndex.build`): the bytes a cold query fetches at a setting,
    the probed points' scorer rows and record lengths (``length_bytes`` each),
    then the candidates' vectors and records (``record_bytes`` on average),
    each range with its :data:`PART_BYTES`. The site's file numbers its points
    by position, so it holds no ids to fetch."""
    scorer, scorer_ranges, rerank, rerank_ranges = index.fetch_bytes(positional_ids=True)

    def cost(c, points, R, arrays):
        return (points * (scorer + length_bytes) + c * (scorer_ranges + 1) * PART_BYTES
                + R * (rerank + record_bytes + (rerank_ranges + 1) * PART_BYTES))
    return cost


def site_clusters(n):
    """The number of clusters of a site's index of ``n`` passages: about 2 sqrt(n)."""
    return max(1, min(n, int(round(2 * n ** 0.5))))


class SiteError(ValueError):
    """The site cannot be made from this input; the message says why."""


def _log(msg):
    print(f"site: {msg}", file=sys.stderr, flush=True)


def _check_out(out, inputs, html_root=None):
    """Refuse, before any work, an output folder whose replacement would lose or break
    something: one that is not a previous site, that holds an input (replacing it
    would delete the input), or that holds the current directory."""
    for path in list(inputs) + ([html_root] if html_root else []):
        if inside(path, out):
            raise SiteError(f"the output folder {out} holds the input {path}: replacing the "
                            "site would delete it; choose another -o")
    if inside(os.getcwd(), out):
        raise SiteError(f"the output folder {out} holds the current directory, which cannot "
                        "be replaced; choose another -o (a folder of its own)")
    if os.path.isdir(out) and os.listdir(out):
        try:
            with open(os.path.join(out, "site.json")) as f:
                made_by = json.load(f).get("generator")
        except (OSError, ValueError, AttributeError):
            made_by = None
        if made_by != GENERATOR:
            raise SiteError(f"{out} exists and is not a site made by lorann-wasm; refusing to "
                            "replace it (choose an empty or new folder)")
    elif os.path.exists(out) and not os.path.isdir(out):
        raise SiteError(f"{out} exists and is not a folder")


def _embed(passages, vectors_path, n_docs, encoder, executor, workers):
    if vectors_path is not None:
        from .._checks import as_matrix
        from ..io import load_npy
        from ..metrics import check_nonzero_rows
        try:
            vectors = as_matrix(load_npy(vectors_path), "the vectors")
            check_nonzero_rows(vectors, "the vectors")  # (the site searches them by cosine)
        except (TypeError, ValueError) as exc:
            raise SiteError(f"--vectors {vectors_path}: {exc}") from None
        if len(vectors) != n_docs:
            raise SiteError(f"--vectors {vectors_path}: expected one vector per document "
                            f"({n_docs} rows), got shape {vectors.shape}")
        return vectors
    from ..embed.parallel import embed_collection
    return embed_collection([p.embed_text for p in passages], encoder,
                            cache_dir=user_cache("embeddings"), executor=executor,
                            workers=workers, label="site: embedding")


def build_site(inputs, out, *, fields=Fields(), html_root=None, link_base=None, vectors=None,
               passage_tokens=200, whole=False, title=None, target_recall=TARGET_RECALL, facets=(),
               encoder="numpy", executor=None, workers=None, prefetch_limit=PREFETCH_LIMIT,
               explorer=()):
    """Make the search site for ``inputs`` in the folder ``out``; returns its manifest.

    ``facets`` are fields (strings or lists of strings) stored in the index as
    attributes: the page offers them as filters. For folders of pages the
    field ``section`` is a page's top folder (``tutorial`` for
    ``tutorial/errors.html``).
    ``html_root``: the root of a built HTML site among the inputs; result
    links are relative to ``link_base`` (default: ``out`` when it is inside
    ``html_root``, else ``html_root``). ``vectors``: an .npy of one embedding
    per document instead of MiniLM (then the site has no text encoder).
    ``whole``: the page downloads index and records whole, not by Range.
    ``prefetch_limit``: after its first answer the page downloads the rest of
    a lazily loaded site in the background, for offline use and queries that
    need no network, when index and records take at most this many bytes
    (0: never).
    ``encoder`` embeds the passages (see :mod:`..embed.encoders`), on
    ``executor`` (e.g. a Dask client's) or in ``workers`` local processes (see
    :func:`..embed.parallel.embed_collection`); ``executor`` also runs the
    index's regressions. ``explorer``: index files (:class:`.explorer.ExplorerIndex`,
    checked by :func:`.explorer.parse_explorer`) that the site's vector explorer
    offers, linked from the search page.
    """
    from .. import LorannIndex
    from ..embed.tokenizer import WordPieceTokenizer
    from ..embed.minilm import minilm_model_dir

    check_passage_tokens(passage_tokens)
    if isinstance(prefetch_limit, bool) or not isinstance(prefetch_limit, int) \
            or prefetch_limit < 0:
        raise SiteError(f"--prefetch-limit must be a number of bytes >= 0, got {prefetch_limit!r}")
    facets = list(dict.fromkeys(facets))
    fields = replace(fields, extra=tuple(dict.fromkeys(fields.extra + tuple(facets))))
    inputs = list(inputs) or ([html_root] if html_root else [])
    if not inputs:
        raise SiteError("no input: give JSONL, CSV, Markdown or HTML files or folders")
    _check_out(out, inputs, html_root)
    if vectors is None:
        from ..embed.encoders import check_encoder
        try:
            check_encoder(encoder)
        except ValueError as exc:
            raise SiteError(f"--encoder: {exc}") from None
    from .runtime import ensure_assets
    runtime = ensure_assets()  # before the slow work: a missing runtime is reported at once
    if html_root is not None and link_base is None:
        link_base = out if inside(out, html_root) else html_root
    t0 = time.perf_counter()
    docs = list(read_inputs(inputs, fields, html_root, link_base, skip=[out]))
    if not docs:
        raise SiteError(f"no documents found in {', '.join(inputs)}")
    if "section" in fields.extra:
        for doc in docs:  # pages: their top folder; records keep their own field
            if "section" not in doc.fields:
                doc.fields["section"] = doc.id.split("/")[0] if "/" in doc.id else None
    if vectors is None:
        tokenizer = WordPieceTokenizer(os.path.join(minilm_model_dir(), "vocab.txt"))
        passages = split_documents(docs, tokenizer, passage_tokens)
    else:  # one vector per document: the document is the passage
        passages = [Passage(i, "", None, "\n".join(s[2] for s in d.sections), "")
                    for i, d in enumerate(docs)]
    if not passages:
        raise SiteError("the documents hold no text")
    _log(f"{len(docs):,} documents, {len(passages):,} passages "
         f"({time.perf_counter() - t0:.1f} s)")
    embeddings = _embed(passages, vectors, len(docs), encoder, executor, workers)
    _log(f"indexing {len(embeddings):,} vectors of dimension {embeddings.shape[1]}")
    distance = "ip" if vectors is None else "cosine"
    try:
        columns = _facet_columns(passages, docs, facets)
        from ..filtering.columns import AttributeTable
        if columns is not None:
            AttributeTable.from_columns(columns, len(passages))
    except (TypeError, ValueError) as exc:
        raise SiteError(f"--facet-field: {exc}") from None
    index = LorannIndex(embeddings, distance=distance, rerank_dtype="int8",
                        rank=min(SITE_RANK, embeddings.shape[1]), **SITE_INDEX,
                        n_clusters=site_clusters(len(embeddings)), attributes=columns)
    records = [encode_record(p, docs[p.doc]) for p in passages]
    total = sum(map(len, records))
    cost = bytes_per_query(index, total / len(records), length_width(max(map(len, records))))
    index.build(target_recall=target_recall, executor=executor,
                tuning_queries=SITE_TUNING_QUERIES, tuning_cost=cost)
    old_ids = index.number_by_position()

    def assemble(staging):
        manifest = _assemble(staging, index, old_ids, records, passages, docs, vectors is None,
                             whole, title or _default_title(inputs), fields, runtime,
                             prefetch_limit)
        manifest["search"]["facets"] = _facet_listing(docs, facets)
        if explorer:
            manifest["indexes"] = add_explorer(staging, explorer)
            manifest["links"] = [{"href": "explorer.html", "text": "Vector explorer"}]
        return manifest

    manifest = publish_staged(out, assemble)
    _log(f"{out}: {len(docs):,} documents, {len(passages):,} passages, "
         f"{manifest['bytes'] / 1e6:.1f} MB in all ({time.perf_counter() - t0:.1f} s)")
    return manifest


def _facet_columns(passages, docs, facets):
    """The facet fields per passage (its document's value), as index attributes: a
    field that is a list anywhere is a list of strings everywhere."""
    if not facets:
        return None
    columns = {}
    for name in facets:
        values = [docs[p.doc].fields.get(name) for p in passages]
        if any(isinstance(v, list) for v in values):
            values = [v if isinstance(v, list) else [] if v is None else [v] for v in values]
        columns[name] = values
    return columns


def _facet_listing(docs, facets):
    """For site.json: each facet's values with their numbers of documents."""
    out = []
    for name in facets:
        counts = Counter()
        for doc in docs:
            value = doc.fields.get(name)
            counts.update(value if isinstance(value, list) else [] if value is None else [value])
        out.append({"name": name, "values": sorted([v, c] for v, c in counts.items())})
    return out


def _default_title(inputs):
    name = os.path.basename(os.path.normpath(inputs[0]))
    return f"Search {os.path.splitext(name)[0]}"


def _hashed(staging, folder, stem, suffix):
    """Rename ``stem + suffix`` to carry its content hash: a redeploy changes the name."""
    path = os.path.join(staging, folder, stem + suffix)
    named = f"{stem}-{sha256(path)[:12]}{suffix}"
    os.replace(path, os.path.join(staging, folder, named))
    return f"{folder}/{named}"


def _prefix_bytes(path):
    """Bytes from the start of the index file at ``path`` through its prefix: what
    the page reads before any cluster (``index_head`` in site.json)."""
    from ..lazy import FileReader, LazyIndex

    reader = FileReader(path)
    try:
        return LazyIndex(reader).prefix_bytes
    finally:
        reader.close()


def _assemble(staging, index, old_ids, records, passages, docs, with_model, whole, title,
              fields, runtime, prefetch_limit):
    from .runtime import copy_runtime

    web = web_folder()
    for name in SITE_PAGES:
        shutil.copy(os.path.join(web, name), os.path.join(staging, name))
    data = os.path.join(staging, "data")
    os.makedirs(data)
    index.save(os.path.join(data, "index.lorann"))
    head = _prefix_bytes(os.path.join(data, "index.lorann"))
    _, width, anchors = write_records(os.path.join(data, "records.bin"),
                                      os.path.join(data, "offsets.bin"),
                                      (records[i] for i in old_ids))
    search = {"title": title, "documents": len(docs), "passages": len(passages),
              "whole": bool(whole), "fields": list(fields.extra),
              "index": _hashed(staging, "data", "index", ".lorann"),
              # its header and prefix, which the page reads while the runtime starts
              "index_head": head,
              "records": _hashed(staging, "data", "records", ".bin"),
              "offsets": _hashed(staging, "data", "offsets", ".bin"),
              # each record's length takes length_bytes; the anchors before them,
              # offsets_head bytes, are read when the page opens
              "length_bytes": width, "offsets_head": anchors, "prefetch_limit": prefetch_limit,
              "n": index.n, "dim": index.dim, "distance": index.distance}
    if with_model:
        _write_model(data, passages)
        search["model"] = _hashed(staging, "data", "model", ".safetensors")
        search["tokens"] = _hashed(staging, "data", "tokens", ".bin")
    copy_runtime(os.path.join(staging, "pyodide"), src=runtime)
    os.makedirs(os.path.join(staging, "wheels"))
    wheel = package_wheel(os.path.join(staging, "wheels"))
    return {"generator": GENERATOR, "format": FORMAT, "wheel": f"wheels/{wheel}",
            "search": search, "indexes": []}


def _write_model(data, passages):
    """The browser's MiniLM in ``data``: model.safetensors with the rows of the
    passages' :data:`TOKEN_HEAD` most frequent word pieces, tokens.bin with all rows."""
    from ..embed.minilm import minilm_model_dir, split_token_rows
    from ..embed.tokenizer import WordPieceTokenizer

    tokenizer = WordPieceTokenizer(os.path.join(minilm_model_dir(), "vocab.txt"))
    step = max(1, len(passages) // 20_000)  # a sample is enough to rank the frequent ones
    counts = Counter()
    for p in passages[::step]:
        counts.update(tokenizer.encode(p.embed_text))
    head = [t for t, _ in counts.most_common(TOKEN_HEAD)] + [tokenizer.vocab["[UNK]"]]
    with open(browser_model(user_cache("models")), "rb") as f:
        model, tokens = split_token_rows(f.read(), head)
    for name, blob in (("model.safetensors", model), ("tokens.bin", tokens)):
        with open(os.path.join(data, name), "wb") as f:
            f.write(blob)
