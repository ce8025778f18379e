"""Index parameters: one home for their defaults, validation and JSON form.

:class:`IndexParams` is what an index is built with and what its file
stores in the metadata; :class:`SearchSettings` is one search's validated
settings. Building (``IndexParams.for_data``) and loading
(``IndexParams.from_json``) run the same checks, so anything a build
accepts, a load accepts.
"""

import dataclasses
import json
import math
import numbers
from typing import NamedTuple, Optional

from ._checks import as_int, check_k
from .filtering.columns import check_schema
from .metrics import check_distance, is_euclidean

RERANK_DTYPES = ("float32", "float16", "int8")
#: the recall@10 a build tunes its default search settings for, unless told
TARGET_RECALL = 0.95
INT8_SCALES = ("dimension", "vector")
QUANTIZATION_BITS = (8, 4, None)


def default_n_clusters(n):
    """``round(sqrt(n))``, at least 1: about sqrt(n) points per cluster."""
    return max(1, int(round(math.sqrt(n))))


def default_global_dim(dim):
    """No reduction below 200 dims, 128 up to 1000 dims, 256 above (as in the C++ lorann)."""
    if dim < 200:
        return dim
    return 128 if dim <= 1000 else 256


def default_search_settings(n_clusters, n):
    """``(clusters_to_search, points_to_rerank)`` used when search is not told.

    Probe 1/32 of the clusters (at least 8, at most all of them) and rerank
    100 points (at most n). On Fashion-MNIST (l2) this gives recall@10 of
    about 0.98; see the README for measured trade-offs.
    """
    return min(n_clusters, max(8, -(-n_clusters // 32))), min(n, 100)


def check_target_recall(value, name="target_recall"):
    """``value`` as a float in (0, 1]; bools, NaN and other types are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    value = float(value)
    if not 0 < value <= 1:  # also refuses NaN
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return value


class SearchSettings(NamedTuple):
    """One search's validated settings."""

    k: int
    clusters_to_search: int
    points_to_rerank: int  # already at least k


@dataclasses.dataclass(frozen=True)
class IndexParams:
    """Build parameters of an index and its default search settings.

    ``rank`` is the rank of each cluster's scorer; ``points_to_rerank`` the
    number of candidates reranked exactly by default. ``tuning`` is the
    build-time tuning record (see :mod:`.training.tuning`) or None.
    """

    n: int
    dim: int
    distance: str
    n_clusters: int
    global_dim: int
    rank: int
    train_size: int
    quantization_bits: Optional[int]
    rerank_dtype: str
    int8_scales: Optional[str]
    seed: int
    clusters_to_search: int
    points_to_rerank: int
    tuning: Optional[dict] = None
    #: per-point checksums of the rerank vectors and per-cluster ones of the rest,
    #: so a lazy reader can fetch a cluster's scorer first and only its candidates'
    #: vectors after (files made before this have none)
    row_checksums: bool = False
    #: the attribute columns points may be filtered on (see :mod:`.filtering.columns`):
    #: a list of {"name", "kind"[, "values"]}, or None
    attributes: Optional[list] = None
    #: rerank vectors stored in the data's top ``rerank_dims`` principal directions
    #: (fewer bytes per point, approximate reranking), or None: every dimension as given
    rerank_dims: Optional[int] = None
    #: each cluster's scorer fit to its points minus its centroid, the query's
    #: inner product with the centroid added back exactly (files made before this
    #: fit the points themselves): see :mod:`.training.regression`
    residual_scorers: bool = False
    #: a point's id is its storage position (:meth:`.LorannIndex.number_by_position`):
    #: the file holds no ``ids`` tensor (8 bytes a point less to fetch)
    positional_ids: bool = False
    #: the file holds each point's squared norm (files before format 4 always do;
    #: later ones only for l2, the one metric that reads them)
    stores_norms: bool = True
    #: bits of each rerank vector's check (``vector_checks``): 32 in files before
    #: format 5, 16 after (2 bytes less to fetch for every probed point; a change
    #: of any one byte of a row is still always caught)
    check_bits: int = 32
    #: bits of each point's ``B_scales`` entry (8- and 4-bit scorers): 32 in files
    #: before format 6, 16 after (float16, each cluster's largest scale a power
    #: of two folded into its ``A`` columns: 2 bytes less to fetch a probed point)
    scale_bits: int = 32
    #: bits of each stored ``A`` entry (8- and 4-bit scorers): 8 in files before
    #: format 7; 4 after with 4-bit scorers (the prefix, which a lazy page reads
    #: before its first answer, nearly halves: WordNet's 4.3 -> 2.6 MB)
    a_bits: int = 8
    #: the attribute columns (``attr.*``) have per-cluster checksums of their own
    #: (``cluster_attribute_crc32``), which ``cluster_scorer_crc32`` then leaves
    #: out, so a lazy reader fetches a probed cluster's attributes only for a
    #: filtered search (files before format 8 fetch them with every scorer: on
    #: the WordNet site, two facets, 22 of a cold query's 507 kB)
    attribute_checksums: bool = False

    @classmethod
    def for_data(cls, n, dim, *, n_clusters=None, global_dim=None, rank=32, train_size=5,
                 quantization_bits=8, distance="ip", seed=0, rerank_dtype="float32",
                 int8_scales="dimension", rerank_dims=None, attributes=None):
        """Validated parameters (with default search settings) for n vectors of dimension ``dim``.

        Arguments as :class:`.LorannIndex`; raises ``TypeError``/``ValueError``
        naming the bad one.
        """
        n, dim = as_int(n, "n", low=1), as_int(dim, "dim", low=1)
        n_clusters = default_n_clusters(n) if n_clusters is None else n_clusters
        global_dim = default_global_dim(dim) if global_dim is None else global_dim
        n_clusters = as_int(n_clusters, "n_clusters", low=1)
        c, r = default_search_settings(n_clusters, n)
        if quantization_bits is not None:
            quantization_bits = as_int(quantization_bits, "quantization_bits")
        return cls(n=n, dim=dim, distance=distance, n_clusters=n_clusters,
                   global_dim=as_int(global_dim, "global_dim", low=1),
                   rank=as_int(rank, "rank", low=1),
                   train_size=as_int(train_size, "train_size", low=1),
                   quantization_bits=quantization_bits, rerank_dtype=rerank_dtype,
                   int8_scales=int8_scales if rerank_dtype == "int8" else None,
                   seed=as_int(seed, "seed", low=0), clusters_to_search=min(c, n_clusters),
                   points_to_rerank=r, row_checksums=True, residual_scorers=True, check_bits=16,
                   scale_bits=16 if quantization_bits is not None else 32,
                   a_bits=4 if quantization_bits == 4 else 8,
                   attribute_checksums=attributes is not None,
                   stores_norms=is_euclidean(distance),
                   attributes=attributes,
                   rerank_dims=None if rerank_dims is None else as_int(
                       rerank_dims, "rerank_dims", low=1, high=dim))

    def __post_init__(self):
        check_distance(self.distance)
        for name in ("n", "dim", "n_clusters", "global_dim", "rank", "train_size",
                     "clusters_to_search", "points_to_rerank"):
            if type(getattr(self, name)) is not int:
                raise TypeError(f"{name} has the wrong type: must be an integer, got "
                                f"{getattr(self, name)!r}")
        if type(self.seed) is not int or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.n_clusters > self.n:
            raise ValueError(f"n_clusters={self.n_clusters} is larger than the number of "
                             f"points ({self.n})")
        if self.global_dim > self.dim:
            raise ValueError(f"global_dim={self.global_dim} is larger than the data "
                             f"dimension ({self.dim})")
        if self.rank > self.global_dim:
            raise ValueError(
                f"rank={self.rank} is larger than the dimension it approximates "
                f"(global_dim={self.global_dim}, data dimension {self.dim})")
        if min(self.n, self.dim, self.rank, self.train_size, self.points_to_rerank) < 1:
            raise ValueError(f"sizes must be >= 1: {self}")
        if not 1 <= self.clusters_to_search <= self.n_clusters:
            raise ValueError(f"clusters_to_search={self.clusters_to_search} is not in "
                             f"[1, n_clusters={self.n_clusters}]")
        bits = self.quantization_bits
        if isinstance(bits, bool) or bits not in QUANTIZATION_BITS or (
                bits is not None and type(bits) is not int):
            raise ValueError(f"quantization_bits must be 8, 4 or None, got {bits!r}")
        if self.rerank_dtype not in RERANK_DTYPES:
            raise ValueError(f"unknown rerank_dtype {self.rerank_dtype!r}; "
                             f"expected one of {RERANK_DTYPES}")
        want = INT8_SCALES if self.rerank_dtype == "int8" else (None,)
        if self.int8_scales not in want:
            raise ValueError(f"unknown int8_scales {self.int8_scales!r} for rerank_dtype "
                             f"{self.rerank_dtype!r}; expected one of {want}")
        if self.tuning is not None:
            _check_tuning(self.tuning, self.n_clusters, self.n)
        for name in ("row_checksums", "residual_scorers", "positional_ids", "stores_norms",
                     "attribute_checksums"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("check_bits", "scale_bits"):
            if getattr(self, name) not in (16, 32) or type(getattr(self, name)) is not int:
                raise ValueError(f"{name} must be 16 or 32, got {getattr(self, name)!r}")
        if self.a_bits not in (8, 4) or type(self.a_bits) is not int:
            raise ValueError(f"a_bits must be 8 or 4, got {self.a_bits!r}")
        if self.a_bits == 4 and self.quantization_bits != 4:
            raise ValueError("a_bits 4 needs 4-bit scorers (quantization_bits 4)")
        if self.attribute_checksums and not (self.row_checksums and self.attributes):
            raise ValueError("attribute_checksums needs attributes and row_checksums")
        if self.scale_bits == 16 and self.quantization_bits is None:
            raise ValueError("scale_bits 16 needs 8- or 4-bit scorers (quantization_bits)")
        if not self.stores_norms and is_euclidean(self.distance):
            raise ValueError("an l2 index needs its squared norms (stores_norms)")
        if self.attributes is not None:
            check_schema(self.attributes)
        if self.rerank_dims is not None and (type(self.rerank_dims) is not int
                                             or not 1 <= self.rerank_dims <= self.dim):
            raise ValueError(f"rerank_dims must be None or an integer in [1, dim={self.dim}], "
                             f"got {self.rerank_dims!r}")

    @property
    def stored_dims(self):
        """Values stored per rerank vector: ``rerank_dims``, or every dimension."""
        return self.dim if self.rerank_dims is None else self.rerank_dims

    # -- the file's metadata ----------------------------------------------

    def to_dict(self):
        """A plain dict (a fresh copy, JSON types only)."""
        return json.loads(self.to_json())

    def to_json(self):
        """The JSON stored in an index file's metadata (``tuning`` only when there is one)."""
        fields = dataclasses.asdict(self)
        if fields["tuning"] is None:
            del fields["tuning"]
        for name in ("row_checksums", "residual_scorers", "positional_ids",
                     "attribute_checksums"):
            if not fields[name]:
                del fields[name]  # files without them keep their bytes
        if fields["stores_norms"]:
            del fields["stores_norms"]
        for name in ("check_bits", "scale_bits"):
            if fields[name] == 32:
                del fields[name]
        if fields["a_bits"] == 8:
            del fields["a_bits"]
        for name in ("attributes", "rerank_dims"):  # files without them keep their bytes
            if fields[name] is None:
                del fields[name]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """Parse and validate stored parameters; ``ValueError`` for anything malformed."""
        try:
            raw = json.loads(text)
        except (ValueError, TypeError, RecursionError):
            raise ValueError("params metadata is not valid JSON") from None
        if not isinstance(raw, dict):
            raise ValueError("params metadata is not a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name, f in fields.items()
                   if name not in raw and f.default is dataclasses.MISSING]
        if missing:
            raise ValueError(f"parameters {missing} are missing")
        try:
            return cls(**{name: raw[name] for name in fields if name in raw})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"inconsistent parameters: {exc}") from None

    def replace(self, **changes):
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    # -- searches -----------------------------------------------------------

    def search_settings(self, k, clusters_to_search=None, points_to_rerank=None,
                        target_recall=None):
        """Validated :class:`SearchSettings` for a search of ``k`` neighbours.

        Explicit values are validated; ``target_recall`` picks them from the
        tuning table; otherwise the stored defaults apply. At least k points
        are reranked.
        """
        k = check_k(k, self.n)
        if target_recall is not None:
            if clusters_to_search is not None or points_to_rerank is not None:
                raise ValueError("give target_recall or explicit search parameters, not both")
            target_recall = check_target_recall(target_recall)
            if not self.tuning:
                raise ValueError("this index has no tuning table; build it with target_recall")
            clusters_to_search, points_to_rerank = lookup(self.tuning["table"], target_recall)
        c = self.clusters_to_search if clusters_to_search is None else as_int(
            clusters_to_search, "clusters_to_search", low=1, high=self.n_clusters)
        r = self.points_to_rerank if points_to_rerank is None else as_int(
            points_to_rerank, "points_to_rerank", low=1)
        return SearchSettings(k, c, max(k, r))


def _check_tuning(tuning, n_clusters, n):
    """The tuning record: {"k", "queries", "leave_one_out", "target_recall", "table"}."""
    def count(v, high):
        return type(v) is int and 1 <= v <= high

    ok = (isinstance(tuning, dict) and count(tuning.get("k"), n)
          and count(tuning.get("queries"), n) and isinstance(tuning.get("leave_one_out"), bool)
          and isinstance(tuning.get("target_recall"), (int, float))
          and not isinstance(tuning.get("target_recall"), bool)
          and 0 < tuning["target_recall"] <= 1
          and isinstance(tuning.get("table"), list) and 0 < len(tuning["table"]) <= 64)
    if ok:
        for row in tuning["table"]:
            ok = ok and isinstance(row, list) and len(row) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in row) \
                and 0 < row[0] <= 1 and 0 <= row[3] <= 1 and count(row[1], n_clusters) \
                and type(row[2]) is int and row[2] >= 1
        factors = tuning.get("filter_factors", [])
        ok = ok and isinstance(factors, list) and len(factors) <= 16 and all(
            isinstance(pair, list) and len(pair) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
            and 0 < pair[0] <= 1 and 0.01 <= pair[1] <= 1000 for pair in factors)
    if not ok:
        raise ValueError("the tuning table in the parameters is malformed (it needs k, "
                         "queries, leave_one_out, target_recall and table; filter_factors "
                         "are [share, factor] pairs)")


def lookup_target(table, target):
    """The table target that serves ``target``: the smallest one at least as high."""
    for t, _, _, _ in table:
        if t >= target - 1e-9:
            return t
    return table[-1][0]


def lookup(table, target):
    """``(clusters_to_search, points_to_rerank)`` for a target recall from the table."""
    t = lookup_target(table, target)
    row = next(row for row in table if row[0] == t)
    return row[1], row[2]
