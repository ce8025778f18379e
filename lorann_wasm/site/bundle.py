"""What a site ships besides its data: the web pages, this package as a wheel
for Pyodide, and the text encoder's weights for the browser."""

import base64
import hashlib
import os
import zipfile

from .. import __version__

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the engine: its page-side API, its Web Worker and the modules the worker imports
ENGINE_MODULES = ("engine.js", "worker.js", "records.js", "ranges.js", "products.js")
#: the pages of a search site (the demo's explorer and benchmark pages are extra)
SITE_PAGES = ("index.html", "search.js", "widget.js", *ENGINE_MODULES, "sw.js", "offline.js",
              "style.css")
#: sub-packages the browser never imports (training runs natively)
NOT_IN_BROWSER = ("training", "bench", "site", "web")
#: a fixed time stamp, so the same code always makes the same wheel (and site version)
_EPOCH = (1980, 1, 1, 0, 0, 0)


def web_folder():
    """The folder of the web pages: inside the installed package, or the checkout's ``web/``."""
    for folder in (os.path.join(PACKAGE, "web"), os.path.join(os.path.dirname(PACKAGE), "web")):
        if os.path.isfile(os.path.join(folder, "engine.js")):
            return folder
    raise FileNotFoundError("the lorann_wasm web pages are missing from this installation "
                            f"(looked in {PACKAGE}/web); reinstall lorann_wasm")


def _record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def package_wheel(dest):
    """Write a pure-Python wheel of this package's query side into ``dest``; returns its name.

    Made from the installed sources (no build tools, no checkout), byte for
    byte the same for the same code.
    """
    name = f"lorann_wasm-{__version__}-py3-none-any.whl"
    dist = f"lorann_wasm-{__version__}.dist-info"
    files = []
    for folder, dirs, names in os.walk(PACKAGE):
        rel = os.path.relpath(folder, PACKAGE)
        if rel.split(os.sep)[0] in NOT_IN_BROWSER:
            dirs[:] = []
            continue
        dirs.sort()
        for f in sorted(names):
            if f.endswith(".py"):
                with open(os.path.join(folder, f), "rb") as src:
                    arc = os.path.normpath(os.path.join("lorann_wasm", rel, f)).replace(os.sep, "/")
                    files.append((arc, src.read()))
    files.append((f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: lorann_wasm\n"
                                      f"Version: {__version__}\n".encode()))
    files.append((f"{dist}/WHEEL", b"Wheel-Version: 1.0\nGenerator: lorann_wasm.site\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    record = "".join(f"{arc},{_record_hash(data)},{len(data)}\n" for arc, data in files)
    files.append((f"{dist}/RECORD", (record + f"{dist}/RECORD,,\n").encode()))
    tmp = os.path.join(dest, name + ".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in files:
            info = zipfile.ZipInfo(arc, _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    os.replace(tmp, os.path.join(dest, name))
    return name


def browser_model(cache_folder, dtype="int8"):
    """Path of the MiniLM weights exported for the browser (int8), made once and cached."""
    from ..atomic import atomic_output
    from ..embed.minilm import MiniLM, export_weights, minilm_model_dir

    model_dir = minilm_model_dir()
    h = hashlib.sha256(dtype.encode())
    for f in ("minilm.py", "../quantization.py"):
        with open(os.path.join(PACKAGE, "embed", f), "rb") as src:
            h.update(src.read())
    h.update(str(os.path.getsize(os.path.join(model_dir, "model.safetensors"))).encode())
    path = os.path.join(cache_folder, f"minilm-{dtype}-{h.hexdigest()[:12]}.safetensors")
    if not os.path.exists(path):
        os.makedirs(cache_folder, exist_ok=True)
        data = export_weights(MiniLM.from_model_dir(model_dir), dtype)
        with atomic_output(path) as f:
            f.write(data)
    return path


def site_encoder(folder, search):
    """The text encoder of the site in ``folder`` (``search``: its site.json's search
    entry), as the page runs it, in CPython."""
    from ..embed.minilm import MiniLM

    def read(name):
        with open(os.path.join(folder, name), "rb") as f:
            return f.read()
    tokens = read(search["tokens"]) if search.get("tokens") else None
    return MiniLM.from_bytes(read(search["model"]), tokens=tokens)
