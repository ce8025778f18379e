"""Gzip siblings (``name.gz``) of the files a site's visitors fetch whole.

Static hosts that serve precompressed files (nginx ``gzip_static``, Caddy
``file_server precompressed``, ``lorann-wasm serve``) send ``name.gz`` with
``Content-Encoding: gzip`` when the browser accepts it and asks for the whole
file; a ``Range`` request gets the plain file, since ranges of an encoded body
would be ranges of the gzip stream. So the files read by Range (a lazily
loaded index, its records and offsets, the model's word-piece rows) get no
sibling. Measured on the WordNet site: the runtime's ``pyodide.asm.wasm``
10.1 -> 3.1 MB, ``pyodide.asm.js`` 1.26 -> 0.24 MB, the MiniLM model file
13.0 -> 11.7 MB; the NumPy wheel and the standard library are zip files
already (1-2 %).
"""

import gzip
import os

#: a sibling is written only when it is at most this fraction of the file
WORTH = 0.95
#: level 9 made the wasm 0.7 % smaller than level 6, in 3x the time (1.2 s)
LEVEL = 9


#: what a sibling's name adds to its file's
SUFFIX = ".gz"


def sibling(path):
    """The name of ``path``'s precompressed sibling."""
    return path + SUFFIX


def is_sibling(folder, rel):
    """True if ``rel`` (in ``folder``) is the gzip sibling of another file there."""
    return rel.endswith(SUFFIX) and os.path.isfile(os.path.join(folder, rel[:-len(SUFFIX)]))


def write_siblings(folder, names):
    """Write ``name.gz`` beside each of ``names`` (relative to ``folder``) that gzip
    shrinks to at most :data:`WORTH` of its size, and remove stale siblings of the
    others; the bytes depend only on the file's (no time stamp, no name).
    Returns ``{name: compressed bytes}`` of the siblings written."""
    from ..atomic import atomic_output

    written = {}
    for name in sorted(names):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            data = f.read()
        packed = gzip.compress(data, compresslevel=LEVEL, mtime=0)
        if len(packed) <= WORTH * len(data):
            with atomic_output(sibling(path)) as f:
                f.write(packed)
            written[name] = len(packed)
        elif os.path.exists(sibling(path)):
            os.remove(sibling(path))
    return written
