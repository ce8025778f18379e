"""Reading the rows of a large 2-D array a chunk at a time.

A :class:`RowSource` wraps an in-memory array, a ``np.memmap`` (also what
``np.load(path, mmap_mode="r")`` returns) or an HDF5 dataset, and hands out
float32 copies of row ranges. A memory-mapped ``.npy`` file is read with
ordinary file reads rather than through its mapping, so pages already read
do not stay in this process's resident memory.
"""

import mmap
import os

import numpy as np

#: bytes of float32 rows a streaming pass reads at once
CHUNK_BYTES = 64 << 20


class RowSource:
    """Rows of ``x`` (n, d), read as float32 in chunks.

    ``x`` needs ``shape``, ``dtype`` and row slicing (``x[a:b]``); ``name``
    is used in error messages.
    """

    def __init__(self, x, name="data"):
        shape = getattr(x, "shape", None)
        dtype = getattr(x, "dtype", None)
        if shape is None or dtype is None:
            raise TypeError(f"{name} must be an array-like with shape and dtype "
                            f"(ndarray, np.memmap, h5py.Dataset), got {type(x).__name__}")
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"{name} must be a non-empty 2-D matrix, got shape {tuple(shape)}")
        if np.dtype(dtype).kind not in "biuf":
            raise TypeError(f"{name} must be a real numeric array, got dtype {dtype}")
        self.x, self.name = x, name
        self.n, self.d = int(shape[0]), int(shape[1])
        self.dtype = np.dtype(dtype)
        self._file = self._owned = None

        if (isinstance(x, np.memmap) and isinstance(x.base, mmap.mmap)
                and x.flags.c_contiguous and x.filename):
            # the whole mapped array (not a view of one): read the file directly
            self._file = open(x.filename, "rb")
            self._start = int(x.offset)

    def chunk_rows(self, row_bytes=None):
        """Rows per chunk so that a chunk of float32 rows is about :data:`CHUNK_BYTES`."""
        return max(1, CHUNK_BYTES // (row_bytes or 4 * self.d))

    def read(self, start, stop):
        """Rows ``start:stop`` as a new C-contiguous float32 array of finite values."""
        if self._file is not None:
            raw = np.empty((stop - start, self.d), dtype=self.dtype)
            view = memoryview(raw).cast("B")
            self._file.seek(self._start + start * self.d * self.dtype.itemsize)
            got = self._file.readinto(view)
            if got != view.nbytes:
                raise ValueError(f"{self.name}: file ended after {got} of {view.nbytes} bytes "
                                 f"reading rows {start}:{stop} (truncated?)")
        else:
            raw = np.asarray(self.x[start:stop])
        with np.errstate(over="ignore"):
            rows = np.ascontiguousarray(raw, dtype=np.float32)
        if not np.isfinite(rows).all():
            bad = start + int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
            raise ValueError(f"{self.name} row {bad} contains NaN or infinite values "
                             "(after conversion to float32)")
        return rows

    def chunks(self, rows=None):
        """``(start, stop)`` of consecutive chunks covering every row."""
        step = rows or self.chunk_rows()
        return [(s, min(s + step, self.n)) for s in range(0, self.n, step)]

    def take(self, sorted_rows, transform=None):
        """Rows ``sorted_rows`` (increasing) in one pass, each chunk mapped by ``transform``."""
        sorted_rows = np.asarray(sorted_rows)
        out = None
        for start, stop in self.chunks():
            lo, hi = np.searchsorted(sorted_rows, [start, stop])
            if hi > lo:
                rows = self.read(start, stop)[sorted_rows[lo:hi] - start]
                rows = rows if transform is None else transform(rows)
                if out is None:
                    out = np.empty((len(sorted_rows), rows.shape[1]), dtype=rows.dtype)
                out[lo:hi] = rows
        return out

    def close(self):
        """Close the files this source opened."""
        for f in (self._file, self._owned):
            if f is not None:
                f.close()
        self._file = self._owned = None


def open_vectors(path, key="train"):
    """A :class:`RowSource` over a vector file without reading it into memory.

    ``.npy`` files are memory-mapped, HDF5 datasets read by slices (the file
    stays open), ``.fvecs``/``.bvecs`` mapped row by row.
    """
    from ..io import input_error, load_npy, open_hdf5, read_vecs

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".hdf5", ".h5"):
        f, dataset = open_hdf5(path, key)
        source = RowSource(dataset, name=path)
        source._owned = f  # closed with the source
        return source
    if ext in (".fvecs", ".bvecs"):
        return RowSource(read_vecs(path, np.float32 if ext == ".fvecs" else np.uint8), name=path)
    if ext != ".npy":
        input_error(path, f"streaming builds read .npy, .hdf5, .fvecs or .bvecs, not {ext!r}")
    return RowSource(load_npy(path), name=path)
