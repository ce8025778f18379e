"""Attribute columns from a file, for ``lorann-wasm build --attributes``.

Row i of the file belongs to vector i. Three forms:

* ``.jsonl``: one JSON object per line; its keys are the columns (a key
  missing on a line is no value there: allowed for strings and lists);
* ``.csv``: a header row naming the columns; a column whose every cell is an
  integer (or a number) is numeric, one of only ``true``/``false`` is
  boolean, any other is strings (an empty cell: no value);
* ``.npz``: one 1-D array per column (NumPy's ``savez``; no pickled objects).
"""

import csv
import json
import os

import numpy as np


def read_attributes(path, n):
    """The columns of attribute file ``path`` for ``n`` vectors: name -> values.
    ``ValueError`` names the file, line and problem."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise FileNotFoundError(f"attribute file {path} does not exist")
    if ext == ".jsonl":
        columns = _jsonl(path)
    elif ext == ".csv":
        columns = _csv(path)
    elif ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                columns = {name: z[name] for name in z.files}
        except ValueError as exc:
            raise ValueError(f"{path}: {exc} (object arrays are refused)") from None
    else:
        raise ValueError(f"{path}: attribute files are .jsonl, .csv or .npz, not {ext!r}")
    if not columns:
        raise ValueError(f"{path} holds no columns")
    for name, values in columns.items():
        if len(values) != n:
            raise ValueError(f"{path}: column {name!r} has {len(values)} rows for {n} vectors "
                             "(row i belongs to vector i)")
    return columns


def _jsonl(path):
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: not JSON ({exc.args[0]})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got "
                                 f"{type(row).__name__}")
            rows.append(row)
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {name: [row.get(name) for row in rows] for name in names}


def _csv(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path} is empty") from None
        cells = [row for row in reader if row]
    for line_no, row in enumerate(cells, 2):
        if len(row) != len(header):
            raise ValueError(f"{path}:{line_no}: {len(row)} cells for {len(header)} columns")
    return {name: _typed([row[i] for row in cells]) for i, name in enumerate(header)}


def _typed(cells):
    """A CSV column as ints, floats, bools or strings (empty cells: None)."""
    for kind in (int, float):
        try:
            return [kind(c) for c in cells]
        except ValueError:
            pass
    if cells and {c.lower() for c in cells} <= {"true", "false"}:
        return [c.lower() == "true" for c in cells]
    return [c if c != "" else None for c in cells]
