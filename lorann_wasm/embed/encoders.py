"""The corpus encoders a build can choose, by name, and the unit of work they run.

* ``numpy``: :class:`.minilm.MiniLM`, the reference; the browser runs the
  same code on queries.
* ``torch``: :class:`.torch_encoder.TorchMiniLM`, the same model in PyTorch
  (bfloat16 products where the CPU has them); only when PyTorch is installed.

Each encoder's vectors are cached under a name of their own
(:func:`cache_name`), so a site's vectors never mix two encoders.
"""

ENCODERS = ("numpy", "torch")

#: encoders loaded in this process (a worker keeps its model between units)
_LOADED = {}


def check_encoder(name):
    """``name`` if it is an encoder this installation can run, else ``ValueError``."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; expected one of {', '.join(ENCODERS)}")
    if name == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ValueError("the torch encoder needs PyTorch: pip install torch") from None
    return name


def load_encoder(name):
    """The encoder ``name``, loaded once per process: it has ``encode(texts)``."""
    if name not in _LOADED:
        from .minilm import MiniLM, minilm_model_dir
        folder = minilm_model_dir()
        if check_encoder(name) == "torch":
            from .torch_encoder import TorchMiniLM
            _LOADED[name] = TorchMiniLM(folder)
        else:
            _LOADED[name] = MiniLM.from_model_dir(folder)
    return _LOADED[name]


def cache_name(name):
    """The embedding cache's folder name for encoder ``name``'s vectors."""
    if check_encoder(name) == "torch":
        from .torch_encoder import native_bfloat16
        return f"all-MiniLM-L6-v2-torch-{'bfloat16' if native_bfloat16() else 'float32'}"
    return "all-MiniLM-L6-v2-numpy"


def encode_unit(name, texts, threads=None):
    """Unit-length embeddings of ``texts`` by encoder ``name``: what an executor runs.

    ``threads`` caps PyTorch's threads in this process (worker processes take
    one each, set through the environment for BLAS before NumPy loads)."""
    model = load_encoder(name)
    if threads and name == "torch":
        import torch
        torch.set_num_threads(threads)
    return model.encode(list(texts))
