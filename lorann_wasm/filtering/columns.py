"""Attribute columns: what a point may be filtered on, and how the file stores it.

An index may carry named attribute columns, one value per point, of five kinds:

=========  ======================================  ==========================
kind       stored per point (``attr.NAME``)        per-cluster summary
                                                   (``summary.NAME``, prefix)
=========  ======================================  ==========================
int        int64                                   (C, 2) int64 min, max
float      float64 (finite)                        (C, 2) float64 min, max
bool       uint8 0/1                               (C, 2) uint32 counts
string     code into ``values`` (uint8/16/32);     (C, V) uint32 counts
           ``len(values)`` means "no value"
strings    bit set over ``values``, (n, ceil(V/8)) (C, V) uint32 counts
           uint8 (a list of strings, maybe empty)
=========  ======================================  ==========================

The per-point columns are kept in cluster order beside the other per-point
tensors, with a CRC-32 per cluster of their own (``cluster_attribute_crc32``,
format 8), so a lazy reader fetches a probed cluster's attributes with its
scorer only for a search with conditions on them. The summaries sit in the
prefix: a filter learns from them, before touching any point, which clusters
cannot hold a passing point (they are neither scored nor fetched) and about
how many points pass in the others.

The schema (name, kind and, for the two string kinds, the sorted distinct
``values``) is part of :class:`.IndexParams`, so the header says what the
tensors hold. This module has no dependency on the rest of the package.
"""

import json
import re

import numpy as np

KINDS = ("int", "float", "bool", "string", "strings")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
#: distinct values of a string column at most (its codes then fit in uint16)
MAX_STRING_VALUES = 65535
#: distinct values of a list-of-strings column at most (a 128-byte bit set per point)
MAX_LIST_VALUES = 1024
#: the values of all string columns, as JSON, at most (they live in the file's header)
MAX_VALUES_JSON = 256 << 10
#: int64 values beyond this lose precision in the float arithmetic of estimates
MAX_INT = 2 ** 53
#: a string column's "no value" while it is read (no string holds a NUL; a lone NUL
#: would not do: NumPy drops trailing NULs, so it read as "", the empty string)
NO_VALUE = "\0none"


def point_tensor(name):
    return f"attr.{name}"


def summary_tensor(name):
    return f"summary.{name}"


def is_point_tensor(name):
    return name.startswith("attr.")


def code_dtype(n_values):
    """The dtype of a string column's codes: ``n_values`` itself means "no value"."""
    return "u1" if n_values < 255 else "<u2" if n_values < 65535 else "<u4"


def tensor_specs(schema, n, n_clusters):
    """Name -> (dtype string, shape) of the per-point and summary tensors of ``schema``."""
    out = {}
    for col in schema:
        name, kind = col["name"], col["kind"]
        v = len(col.get("values", ()))
        per_point, summary = {
            "int": (("<i8", (n,)), ("<i8", (n_clusters, 2))),
            "float": (("<f8", (n,)), ("<f8", (n_clusters, 2))),
            "bool": (("u1", (n,)), ("<u4", (n_clusters, 2))),
            "string": ((code_dtype(v), (n,)), ("<u4", (n_clusters, v))),
            "strings": (("u1", (n, -(-v // 8))), ("<u4", (n_clusters, v))),
        }[kind]
        out[point_tensor(name)] = per_point
        out[summary_tensor(name)] = summary
    return out


def check_name(name):
    """Refuse an attribute name that is not 1-64 letters, digits, '_' or '-'."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"attribute name {name!r} must be 1-64 letters, digits, '_' or '-'")


def check_schema(schema):
    """Refuse a malformed attribute schema (as stored in the parameters): ``ValueError``."""
    if not isinstance(schema, list) or not schema:
        raise ValueError("attributes must be a non-empty list of columns")
    seen, text = set(), 0
    for col in schema:
        if not isinstance(col, dict) or set(col) - {"name", "kind", "values"}:
            raise ValueError(f"attribute column {col!r} is malformed")
        name, kind = col.get("name"), col.get("kind")
        check_name(name)
        if name in seen:
            raise ValueError(f"attribute {name!r} is given twice")
        seen.add(name)
        if kind not in KINDS:
            raise ValueError(f"attribute {name!r} has unknown kind {kind!r}; expected one of {KINDS}")
        if kind in ("string", "strings"):
            values = col.get("values")
            limit = MAX_STRING_VALUES if kind == "string" else MAX_LIST_VALUES
            if (not isinstance(values, list) or not all(isinstance(v, str) for v in values)
                    or values != sorted(set(values))):
                raise ValueError(f"attribute {name!r}: values must be sorted distinct strings")
            if len(values) > limit:
                raise ValueError(f"attribute {name!r} has {len(values)} distinct values; a "
                                 f"{kind} column holds at most {limit}")
            text += len(json.dumps(values))
        elif "values" in col:
            raise ValueError(f"attribute {name!r} of kind {kind} has no values list")
    if text > MAX_VALUES_JSON:
        raise ValueError(f"the attributes' distinct strings take {text} bytes; at most "
                         f"{MAX_VALUES_JSON} fit in the index header")
    return schema


# -- from user data to columns ------------------------------------------------

class AttributeTable:
    """Validated attribute columns of n points, in id order.

    ``AttributeTable.from_columns({"pos": [...], "year": array, ...}, n)``
    infers each column's kind: bools; integers; floats (finite); strings
    (``None`` for no value); lists of strings (``None`` or ``[]`` for none).
    ``schema`` is what the parameters store; :meth:`point_rows` and
    :meth:`summaries` give the file's tensors.
    """

    def __init__(self, schema, encoded):
        self.schema = check_schema(schema)
        self.encoded = encoded  # name -> per-point array in id order

    @classmethod
    def from_columns(cls, columns, n):
        if isinstance(columns, AttributeTable):
            return columns
        if not isinstance(columns, dict) or not columns:
            raise TypeError("attributes must be a non-empty dict of column name -> values")
        schema, encoded = [], {}
        for name in columns:
            check_name(name)  # before the (slower) encoding of its column
            col, values = _encode(name, columns[name], n)
            schema.append(col)
            encoded[name] = values
        return cls(schema, encoded)

    def point_rows(self, ids):
        """The per-point tensors for points ``ids`` (in that order): name -> rows."""
        return {point_tensor(c["name"]): self.encoded[c["name"]][ids] for c in self.schema}

    def summaries(self, ids, offsets):
        """The prefix's per-cluster summaries, points ``ids`` being stored in cluster
        order with clusters delimited by ``offsets``: name -> array."""
        sizes = np.diff(offsets).astype(np.intp)
        c = len(sizes)
        cluster = np.repeat(np.arange(c), sizes)
        starts = offsets[:-1].astype(np.intp)
        out = {}
        for col in self.schema:
            name, kind = col["name"], col["kind"]
            rows = self.encoded[name][ids]
            if kind in ("int", "float"):
                summary = np.zeros((c, 2), dtype=rows.dtype)
                full = sizes > 0
                if full.any():
                    summary[full, 0] = np.minimum.reduceat(rows, starts[full])
                    summary[full, 1] = np.maximum.reduceat(rows, starts[full])
            elif kind == "bool":
                summary = np.bincount(cluster * 2 + rows, minlength=2 * c).reshape(c, 2)
            elif kind == "string":
                v = len(col["values"])
                ok = rows < v
                summary = np.bincount(cluster[ok] * v + rows[ok], minlength=c * v).reshape(c, v)
            else:
                v = len(col["values"])
                bits = np.unpackbits(rows, axis=1, count=v, bitorder="little").astype(np.uint32)
                summary = np.zeros((c, v), dtype=np.uint32)
                full = sizes > 0
                if full.any() and v:
                    summary[full] = np.add.reduceat(bits, starts[full], axis=0)
            out[summary_tensor(name)] = summary.astype(
                {"int": "<i8", "float": "<f8"}.get(kind, "<u4"))
        return out


def _encode(name, column, n):
    """``(schema entry, encoded values in id order)`` of one user column."""
    where = f"attribute {name!r}"
    if isinstance(column, np.ndarray) and column.dtype.kind in "biufU":
        arr = column
        if arr.ndim != 1:
            raise ValueError(f"{where} must be one value per point, got shape {arr.shape}")
    else:
        try:
            items = list(column)
        except TypeError:
            raise TypeError(f"{where} must be a list or array of values, got "
                            f"{type(column).__name__}") from None
        arr = None
    length = len(arr) if arr is not None else len(items)
    if length != n:
        raise ValueError(f"{where} has {length} values for {n} points")
    if arr is None:
        arr = _array_of_items(where, items)
    elif arr.dtype.kind == "U" and any("\0" in v for v in np.unique(arr).tolist()):
        raise ValueError(f"{where}: strings may not contain NUL characters")
    kind = arr.dtype.kind
    if kind == "b":
        return {"name": name, "kind": "bool"}, arr.astype(np.uint8)
    if kind in "iu":
        if arr.size and (int(arr.max()) > MAX_INT or int(arr.min()) < -MAX_INT):
            raise ValueError(f"{where} holds integers beyond +-2**53")
        return {"name": name, "kind": "int"}, arr.astype("<i8")
    if kind == "f":
        arr = arr.astype("<f8")
        bad = np.flatnonzero(~np.isfinite(arr))
        if len(bad):
            raise ValueError(f"{where}: the value of point {int(bad[0])} is {arr[bad[0]]}; "
                             "numbers must be finite (no NaN for a missing value)")
        return {"name": name, "kind": "float"}, arr
    if kind == "U":  # strings: None was mapped to NO_VALUE
        values = sorted(set(arr.tolist()) - {NO_VALUE})
        col = check_schema([{"name": name, "kind": "string", "values": values}])[0]
        codes = np.searchsorted(np.array(values, dtype=arr.dtype), arr) if values else \
            np.zeros(n, np.intp)
        codes = np.where(arr == NO_VALUE, len(values), codes)
        return col, codes.astype(code_dtype(len(values)))
    # lists of strings
    lists = arr.tolist()
    values = sorted({v for item in lists for v in item})
    col = check_schema([{"name": name, "kind": "strings", "values": values}])[0]
    lengths = np.array([len(item) for item in lists], dtype=np.intp)
    flat = np.array([v for item in lists for v in item], dtype=object)
    codes = (np.searchsorted(np.array(values, dtype=object), flat) if len(flat)
             else np.zeros(0, np.intp))
    bits = np.zeros((n, max(1, len(values))), dtype=np.uint8)
    bits[np.repeat(np.arange(n), lengths), codes] = 1
    return col, np.packbits(bits, axis=1, bitorder="little")[:, :-(-len(values) // 8)]


def _array_of_items(where, items):
    """Classify a Python list of values: a NumPy array of bool, int, float, str
    (``None`` -> :data:`NO_VALUE`) or of tuples of str (lists)."""
    types = {type(v) for v in items}
    if types <= {bool, np.bool_}:
        return np.array(items, dtype=bool)
    if types and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                     for v in items):
        try:
            return np.array(items, dtype=np.int64)
        except OverflowError:
            raise ValueError(f"{where} holds integers beyond int64") from None
    if types and all(isinstance(v, (int, float, np.integer, np.floating))
                     and not isinstance(v, (bool, np.bool_)) for v in items):
        return np.array(items, dtype=np.float64)
    if types <= {str, np.str_, type(None)}:
        if any(v is not None and "\0" in v for v in items):
            raise ValueError(f"{where}: strings may not contain NUL characters")
        return np.array([NO_VALUE if v is None else v for v in items])
    if types <= {list, tuple, type(None)}:
        out = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            item = () if item is None else tuple(item)
            if not all(isinstance(v, str) for v in item):
                raise ValueError(f"{where}: point {i} holds {list(item)!r}; a list column "
                                 "holds strings only")
            out[i] = item
        return out
    examples = {}
    for i, v in enumerate(items):
        examples.setdefault(type(v).__name__, f"point {i} holds {v!r}")
    raise ValueError(f"{where} mixes kinds of values ({'; '.join(examples.values())}); a "
                     "column holds one kind: numbers, booleans, strings (or None) or lists "
                     "of strings")


def check_columns(tensors, schema):
    """Refuse stored attribute values a query could trip on (codes past their values,
    bools that are not 0/1): ``ValueError``."""
    for col in schema:
        rows = tensors.get(point_tensor(col["name"]))
        if rows is None or not rows.size:
            continue
        if col["kind"] == "string" and int(rows.max()) > len(col["values"]):
            raise ValueError(f"attribute {col['name']!r} holds codes past its values")
        if col["kind"] == "bool" and int(rows.max()) > 1:
            raise ValueError(f"attribute {col['name']!r} holds booleans other than 0 and 1")
        if col["kind"] == "float" and not np.isfinite(rows).all():
            raise ValueError(f"attribute {col['name']!r} holds NaN or infinite values")
        if col["kind"] == "int" and (np.abs(rows) > MAX_INT).any():
            raise ValueError(f"attribute {col['name']!r} holds integers beyond +-2**53")

