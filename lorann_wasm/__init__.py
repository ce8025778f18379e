"""lorann_wasm: LoRANN approximate nearest-neighbour search in pure NumPy.

Runs unchanged in CPython and in Pyodide (WebAssembly).
"""

from .exact import ExactIndex
from .index import LorannIndex, NotBuiltError
from .lazy import FileReader, LazyIndex
from .out_of_core import build_file

__all__ = ["LorannIndex", "ExactIndex", "NotBuiltError", "LazyIndex", "FileReader", "build_file"]
__version__ = "0.1.0"
