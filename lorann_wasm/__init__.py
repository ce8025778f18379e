"""lorann_wasm: LoRANN approximate nearest-neighbour search in pure NumPy.

Runs unchanged in CPython and in Pyodide (WebAssembly).
"""

from .exact import ExactIndex
from .index import LorannIndex, NotBuiltError

__all__ = ["LorannIndex", "ExactIndex", "NotBuiltError"]
__version__ = "0.1.0"
