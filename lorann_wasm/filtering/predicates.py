"""Filters: ``where`` conditions on attribute columns and ``allow`` lists of ids.

:func:`compile_filter` validates a search's filter against the index's
attribute schema (:mod:`.columns`) and returns a :class:`Filter`, which
answers two questions:

* :meth:`Filter.bounds`: per cluster, from the prefix's summaries alone, an
  estimate of how many points pass and whether all of them certainly do. An
  estimate of 0 is a certainty (the cluster cannot hold a passing point), so
  such clusters are neither scored nor fetched. Counts of categories are
  exact; numeric ranges assume values spread evenly between a cluster's
  minimum and maximum; several conditions are assumed independent.
* :meth:`Filter.passes`: the exact test of given points.

``where`` maps attribute names to conditions, all of which must hold (AND).
A condition is a bare value (equality; for a list column: contains it) or a
dict of operators, all of which must hold:

=================  =========================================================
int, float         ``eq ne in nin gt gte lt lte``
bool               ``eq ne``
string             ``eq ne in nin`` (``ne``/``nin`` also pass points with no
                   value; a value the index never saw matches nothing)
strings (lists)    ``any all none`` (a list of strings; a bare string means
                   ``{"any": [it]}``)
=================  =========================================================
"""

import hashlib
import json
import math

import numpy as np

from .columns import point_tensor, summary_tensor

OPERATORS = {
    "int": ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte"),
    "float": ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte"),
    "bool": ("eq", "ne"),
    "string": ("eq", "ne", "in", "nin"),
    "strings": ("any", "all", "none"),
}


#: the integers an int attribute compares with
INT64 = (-2 ** 63, 2 ** 63 - 1)


def _integer(x):
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _number(x):
    if _integer(x):
        return True  # (math.isfinite of a huge int raises OverflowError)
    return isinstance(x, (float, np.floating)) and math.isfinite(x)


def _both(estimate, other, sizes):
    """Per cluster, the points estimated to pass two conditions taken as independent."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes > 0, estimate * (other / sizes), 0.0)


def _fail(name, msg):
    raise ValueError(f"where: attribute {name!r}: {msg}")


class _Condition:
    """One attribute's conditions: ``estimate(summary, sizes) -> (count, all_pass)``
    and ``test(rows) -> bool``."""

    def __init__(self, col, ops):
        self.name, self.kind = col["name"], col["kind"]
        self.values = col.get("values")
        self.ops = ops  # list of (operator, operand), validated

    # -- per cluster ----------------------------------------------------------

    def estimate(self, summary, sizes):
        sizes = sizes.astype(np.float64)
        est, full = sizes.copy(), np.ones(len(sizes), dtype=bool)
        for op, arg in self.ops:
            if self.kind in ("int", "float"):
                e, f = self._numeric(op, arg, summary, sizes)
            else:
                e, f = self._counted(op, arg, summary.astype(np.float64), sizes)
            est = _both(est, e, sizes)
            full &= f
        return est, full & (sizes > 0)

    def _numeric(self, op, arg, summary, sizes):
        # Comparisons read the summaries as stored (int64 against an int operand is
        # exact); shares are float64 of halves, which cannot overflow, so values near
        # +-1.8e308 give no inf - inf = NaN (once read as "nothing here")
        lo, hi = summary[:, 0], summary[:, 1]
        half_lo, half_hi = lo.astype(np.float64) / 2, hi.astype(np.float64) / 2
        half_width = half_hi - half_lo
        if op in ("eq", "in", "ne", "nin"):
            points = [arg] if op in ("eq", "ne") else arg
            hit = np.zeros(len(sizes))
            certain = np.zeros(len(sizes), dtype=bool)  # every point equals one of them
            for v in points:
                inside = (lo <= v) & (v <= hi)
                share = (1 / (2 * half_width + 1)) if self.kind == "int" else np.zeros(len(sizes))
                hit += np.where(inside, np.maximum(sizes * share, 1.0), 0.0)
                certain |= (lo == hi) & (lo == v)
            hit = np.minimum(np.where(certain, sizes, hit), sizes)
            if op in ("eq", "in"):
                return hit, certain
            none_equal = hit == 0
            return np.where(certain, 0.0, sizes), none_equal
        low, high = (arg, math.inf) if op in ("gt", "gte") else (-math.inf, arg)
        strict = op in ("gt", "lt")
        disjoint = (hi < low) | (lo > high) | (strict & ((hi == low) | (lo == high)))
        inside = (lo >= low) & (hi <= high) & ~(strict & ((lo == low) | (hi == high)))
        with np.errstate(invalid="ignore", divide="ignore"):
            share = (np.minimum(half_hi, high / 2) - np.maximum(half_lo, low / 2)) / half_width
        share = np.where(half_width > 0, share, 1.0)
        est = np.where(disjoint, 0.0, np.where(inside, sizes, np.maximum(sizes * share, 1.0)))
        return np.minimum(est, sizes), inside

    def _counted(self, op, arg, counts, sizes):
        codes = self._codes(arg)
        known = codes[codes >= 0]
        picked = counts[:, known] if len(known) else np.zeros((len(sizes), 0))
        if self.kind in ("bool", "string"):
            hit = picked.sum(axis=1)
            if op in ("eq", "in"):
                return hit, hit == sizes
            return sizes - hit, hit == 0
        if op == "any":
            hit = np.minimum(picked.sum(axis=1), sizes)
            return hit, (picked == sizes[:, None]).any(axis=1)
        if op == "all":
            if len(known) < len(codes):
                return np.zeros(len(sizes)), np.zeros(len(sizes), dtype=bool)
            if not len(known):
                return sizes, np.ones(len(sizes), dtype=bool)
            return picked.min(axis=1), (picked == sizes[:, None]).all(axis=1)
        most = picked.max(axis=1) if len(known) else np.zeros(len(sizes))
        return sizes - most, most == 0  # none

    def _codes(self, arg):
        """Codes of the operand's values (-1 for values the index never saw)."""
        items = arg if isinstance(arg, list) else [arg]
        if self.kind == "bool":
            return np.array([int(v) for v in items], dtype=np.intp)
        lookup = {v: i for i, v in enumerate(self.values)}
        return np.array([lookup.get(v, -1) for v in items], dtype=np.intp)

    # -- per point ---------------------------------------------------------------

    def test(self, rows):
        ok = np.ones(len(rows), dtype=bool)
        for op, arg in self.ops:
            if self.kind in ("int", "float"):
                ok &= _compare(op, arg, rows)
            elif self.kind in ("bool", "string"):
                codes = self._codes(arg)
                hit = np.isin(rows, codes[codes >= 0])
                ok &= hit if op in ("eq", "in") else ~hit
            else:
                ok &= self._test_lists(op, self._codes(arg), rows)
        return ok

    @staticmethod
    def _test_lists(op, codes, rows):
        known = codes[codes >= 0]
        if op == "all" and len(known) < len(codes):
            return np.zeros(len(rows), dtype=bool)
        if not len(known):
            return np.full(len(rows), op != "any")
        has = (rows[:, known >> 3] >> (known & 7).astype(np.uint8)) & 1  # (P, values)
        if op == "any":
            return has.any(axis=1)
        if op == "all":
            return has.all(axis=1)
        return ~has.any(axis=1)


def _compare(op, arg, rows):
    """The points' values ``rows`` (int64 or float64) against an operand: ints
    compare exactly with an int column (2**53 + 1 is not 2**53)."""
    if op == "eq":
        return rows == arg
    if op == "ne":
        return rows != arg
    if op in ("in", "nin"):
        exact = rows.dtype.kind == "i" and all(isinstance(v, int) for v in arg)
        hit = np.isin(rows, np.array(arg, dtype=np.int64 if exact else np.float64))
        return hit if op == "in" else ~hit
    return {"gt": np.greater, "gte": np.greater_equal, "lt": np.less,
            "lte": np.less_equal}[op](rows, arg)


def _operand(name, kind, op, arg):
    """Validate one operand; lists for in/nin/any/all/none, else a scalar."""
    listed = op in ("in", "nin", "any", "all", "none")
    if listed:
        if not isinstance(arg, (list, tuple, np.ndarray)):
            _fail(name, f"{op!r} takes a list of values, got {arg!r}")
        arg = list(arg.tolist() if isinstance(arg, np.ndarray) else arg)
        items = arg
    else:
        items = [arg]
    for v in items:
        if kind in ("int", "float") and not _number(v):
            _fail(name, f"{op!r} compares numbers; got {v!r}")
        if kind == "int" and _integer(v) and not INT64[0] <= int(v) <= INT64[1]:
            _fail(name, f"{v} is outside the range of integers an attribute holds "
                        f"(-2**63 .. 2**63 - 1)")
        if kind == "bool" and not isinstance(v, (bool, np.bool_)):
            _fail(name, f"a bool attribute compares with true or false; got {v!r}")
        if kind in ("string", "strings") and not isinstance(v, str):
            _fail(name, f"a {kind} attribute compares with strings; got {v!r}")
    if kind == "int":  # ints stay ints: compared exactly with the stored int64
        items = [int(v) if _integer(v) else float(v) for v in items]
    elif kind == "float":
        try:
            items = [float(v) for v in items]
        except OverflowError:
            _fail(name, f"{op!r}: a number too large for a float")
    elif kind == "bool":
        items = [bool(v) for v in items]
    if listed:  # operands are a set: a value given twice counts once in the estimates
        items = list(dict.fromkeys(items))
    return items if listed else items[0]


def _condition(col, spec):
    name, kind = col["name"], col["kind"]
    if isinstance(spec, dict):
        if not spec:
            _fail(name, "an empty condition {}")
        pairs = list(spec.items())
    elif kind == "strings":
        pairs = [("any", [spec])]
    else:
        pairs = [("eq", spec)]
    ops = []
    for op, arg in pairs:
        if op not in OPERATORS[kind]:
            _fail(name, f"unknown operator {op!r} for a {kind} attribute; use one of "
                        f"{', '.join(OPERATORS[kind])}")
        ops.append((op, _operand(name, kind, op, arg)))
    return _Condition(col, ops)


def as_allowed(allow, n):
    """``allow`` (ids, or a boolean mask of n) as a boolean mask over ids."""
    arr = np.asarray(allow)
    if arr.dtype == object and arr.ndim == 1 and all(_integer(v) for v in arr.tolist()):
        raise ValueError(f"allow holds ids outside [0, {n}) (too large for int64)")
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"allow as a boolean mask must have shape ({n},), got {arr.shape}")
        return arr
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise TypeError(f"allow must be a 1-D array of integer ids or a boolean mask, got "
                        f"dtype {arr.dtype} and shape {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
        raise ValueError(f"allow holds ids outside [0, {n}): range [{arr.min()}, {arr.max()}]")
    mask = np.zeros(n, dtype=bool)
    mask[arr.astype(np.intp)] = True
    return mask


class Filter:
    """A validated filter: ``conditions`` on attributes (AND) and an ``allowed``
    mask over ids (or None)."""

    def __init__(self, conditions, allowed):
        self.conditions, self.allowed = conditions, allowed

    def bounds(self, summaries, sizes):
        """``(estimate, all_pass)`` per cluster: the estimated number of passing points
        (0 only if none can pass) and whether every point certainly passes.

        ``summaries`` are the prefix's summary tensors by name. Which cluster holds
        an id is not in the prefix: an allow list is assumed spread evenly."""
        size = sizes.astype(np.float64)
        est, full = size.copy(), sizes > 0
        for cond in self.conditions:
            e, f = cond.estimate(summaries[summary_tensor(cond.name)], sizes)
            est = _both(est, e, size)
            full &= f
        if self.allowed is not None:
            share = self.allowed.mean() if len(self.allowed) else 0.0
            e, f = size * share, np.full(len(size), share == 1.0)
            if share > 0:
                e = np.maximum(e, np.minimum(size, 1.0))
            est = _both(est, e, size)
            full &= f
        # a product of shares can fall below one point; only a certain zero may be 0
        est = np.where(est > 0, np.maximum(est, np.minimum(size, 1.0)), 0.0)
        return est, full

    def passes(self, arrays):
        """Whether each point (by position) of the :class:`.ClusterArrays` ``arrays``
        passes: one vectorised test of whole columns."""
        ok = np.ones(len(arrays.ids), dtype=bool)
        for cond in self.conditions:
            ok &= cond.test(arrays.attribute(point_tensor(cond.name)))
        if self.allowed is not None:
            ok &= self.allowed[arrays.ids]
        return ok


def compile_filter(where, allow, schema, n):
    """A :class:`Filter` for ``where`` and ``allow``, or None if neither filters.

    ``schema`` is the index's attribute schema (None: it has no attributes).
    Raises ``ValueError`` (or ``TypeError``) naming what is wrong.
    """
    conditions = []
    if where is not None:
        if not isinstance(where, dict):
            raise TypeError(f"where must be a dict of attribute -> condition, got "
                            f"{type(where).__name__}")
        columns = {c["name"]: c for c in schema or ()}
        for name, spec in where.items():
            if name not in columns:
                have = ", ".join(sorted(columns)) or "none"
                raise ValueError(f"where: unknown attribute {name!r}; this index has: {have}")
            conditions.append(_condition(columns[name], spec))
    allowed = None if allow is None else as_allowed(allow, n)
    if not conditions and allowed is None:
        return None
    return Filter(conditions, allowed)


def filter_key(where, allow):
    """A string that is equal for equal filters (to reuse their bounds), or None."""
    try:  # (NumPy operands in full: their repr elides long arrays)
        text = json.dumps(where, sort_keys=True,
                          default=lambda o: o.tolist() if hasattr(o, "tolist") else repr(o))
    except (TypeError, ValueError, RecursionError):
        return None
    if allow is not None:
        arr = np.ascontiguousarray(allow)
        if arr.dtype == object:
            return None
        text += f"|{arr.dtype.str}{arr.shape}:" + hashlib.blake2b(arr.tobytes(),
                                                                  digest_size=16).hexdigest()
    return text
