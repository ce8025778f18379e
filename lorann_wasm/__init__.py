"""lorann_wasm: LoRANN approximate nearest-neighbour search in pure NumPy.

Runs unchanged in CPython and in Pyodide (WebAssembly).
"""

import importlib

#: public name -> module; imported on first use, so that the browser worker,
#: which imports only the query side (lorann_wasm.bridge), never loads the build side
_EXPORTS = {
    "LorannIndex": ".index", "NotBuiltError": ".index", "ExactIndex": ".exact",
    "LazyIndex": ".lazy", "FileReader": ".lazy", "IndexParams": ".params",
    "build_file": ".training.out_of_core",
}
_MODULES = {"reference"}  # imported on first use too

__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lorann_wasm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)


def __dir__():
    return sorted(list(globals()) + __all__)
