"""Reading vector files: .npy, .fvecs / .bvecs / .ivecs (TEXMEX), ann-benchmarks .hdf5.

Every reader returns a 2-D array (memory-mapped where the format allows)
or raises ``ValueError`` naming the file and what is wrong with it.
"""

import os

import numpy as np

FORMATS = (".npy", ".fvecs", ".bvecs", ".ivecs", ".hdf5", ".h5")


def input_error(path, msg):
    """Raise the ValueError that names a bad input file and what is wrong with it."""
    raise ValueError(f"{path}: {msg}")


def read_vecs(path, dtype):
    """Read a TEXMEX ``.fvecs`` / ``.bvecs`` / ``.ivecs`` file: per row an int32 d, then d values."""
    size = os.path.getsize(path)
    if size < 4:
        input_error(path, "file is too short to hold a vector")
    with open(path, "rb") as f:
        dim = int(np.frombuffer(f.read(4), dtype="<i4")[0])
    itemsize = np.dtype(dtype).itemsize
    if not 0 < dim < 1 << 20:
        input_error(path, f"first vector claims dimension {dim}; not a {os.path.splitext(path)[1]} file?")
    row = 4 + dim * itemsize
    if size % row:
        input_error(path, f"size {size} is not a multiple of the {row}-byte rows of dimension {dim} "
                    "(truncated, or mixed dimensions)")
    n = size // row
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, row))
    dims = raw[:, :4].copy().view("<i4").ravel()
    if np.any(dims != dim):
        bad = int(np.flatnonzero(dims != dim)[0])
        input_error(path, f"row {bad} has dimension {dims[bad]}, expected {dim}")
    return raw[:, 4:].view(np.dtype(dtype).newbyteorder("<")).reshape(n, dim)


def open_hdf5(path, key):
    """``(file, dataset)``: one dataset of an HDF5 file, not yet read; close the file after."""
    try:
        import h5py
    except ImportError:
        raise ValueError(f"{path}: reading HDF5 needs h5py (pip install 'lorann_wasm[hdf5]')") from None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        input_error(path, f"not a readable HDF5 file ({exc})")
    if key not in f:
        keys = sorted(f.keys())
        f.close()
        input_error(path, f"has no dataset {key!r} (it has {keys})")
    return f, f[key]


def read_hdf5(path, key):
    """One dataset of an HDF5 file (ann-benchmarks files hold train/test/neighbors)."""
    f, dataset = open_hdf5(path, key)
    with f:
        return dataset[()]


def load_npy(path):
    """A ``.npy`` array, memory-mapped; ``ValueError`` naming the file if it is not one."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        input_error(path, f"not a readable .npy array ({exc or 'the file is empty'})")


def read_vectors(path, key="train"):
    """Vectors from ``path``, by extension; ``key`` picks the HDF5 dataset."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        arr = load_npy(path)
    elif ext == ".fvecs":
        arr = read_vecs(path, np.float32)
    elif ext == ".bvecs":
        arr = read_vecs(path, np.uint8)
    elif ext == ".ivecs":
        arr = read_vecs(path, np.int32)
    elif ext in (".hdf5", ".h5"):
        arr = read_hdf5(path, key)
    else:
        input_error(path, f"unknown extension {ext!r}; expected one of {', '.join(FORMATS)}")
    if arr.ndim != 2:
        input_error(path, f"expected a 2-D array of vectors, found shape {arr.shape}")
    return arr
