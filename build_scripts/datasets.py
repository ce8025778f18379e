"""Real data sets, read from Debian packages (no downloads).

``fashion_mnist()`` reads ``dataset-fashion-mnist`` (idx format, gzip):
60,000 training images as the data and 10,000 test images as held-out
queries, 784-d, Euclidean, as in ann-benchmarks.
"""

import gzip
import os
import struct

import numpy as np

FASHION_MNIST_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx(path):
    """Read an idx-format array (optionally gzip-compressed)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown idx type code {raw[2]:#x}")
    ndim = raw[3]
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {shape} values, found {data.size}")
    return data.reshape(shape)


def fashion_mnist():
    """``(train, test)`` float32 arrays of shape (60000, 784) and (10000, 784)."""
    def images(name):
        path = os.path.join(FASHION_MNIST_DIR, name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found: install it with 'apt-get install dataset-fashion-mnist'")
        arr = read_idx(path)
        return arr.reshape(arr.shape[0], -1).astype(np.float32)

    return images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
