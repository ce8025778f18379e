"""The vector explorer: pages that load index files and query them by item or by vector.

A search site made by ``lorann-wasm site --explorer-index NAME=PATH[:TITLE]``
carries it beside its search page (listed in site.json, so the site's version
covers it); :func:`build_explorer_site` makes a site of just these pages,
for index files without documents.
"""

import os
import re
import shutil
from dataclasses import dataclass

from .bundle import ENGINE_MODULES, package_wheel, web_folder

#: the explorer's and the benchmark page's files, on top of the search site's engine
EXPLORER_PAGES = ("explorer.html", "explorer.js", "bench.html", "bench.js", *ENGINE_MODULES,
                  "style.css")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ExplorerIndex:
    """An index file shown in the explorer: ``image`` is (width, height) when its
    vectors are images of that many pixels (the explorer draws them)."""
    name: str
    path: str
    title: str = ""
    image: tuple = None

    @classmethod
    def parse(cls, spec, images=None):
        """From ``NAME=PATH[:TITLE]``; ``images`` maps names to ``WxH`` strings."""
        name, eq, rest = spec.partition("=")
        path, _, title = rest.partition(":")
        if not eq or not path or not _NAME.fullmatch(name):
            raise ValueError(f"--explorer-index: expected NAME=PATH[:TITLE] with a NAME of "
                             f"letters, digits, '_', '.' or '-', got {spec!r}")
        image = (images or {}).get(name)
        return cls(name, path, title or name, image and parse_image(image))


def parse_image(text):
    """``"28x28"`` -> (28, 28)."""
    m = re.fullmatch(r"([1-9][0-9]{0,3})x([1-9][0-9]{0,3})", text.strip())
    if not m:
        raise ValueError(f"--explorer-image: expected WIDTHxHEIGHT such as 28x28, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_explorer(specs, images=()):
    """The ``--explorer-index`` and ``--explorer-image NAME=WxH`` options, checked:
    names unique, every image named, each file a valid index whose dimension
    fits its image. Returns a list of :class:`ExplorerIndex`."""
    from .. import LorannIndex

    shapes = {}
    for spec in images:
        name, eq, shape = spec.partition("=")
        if not eq:
            raise ValueError(f"--explorer-image: expected NAME=WxH, got {spec!r}")
        shapes[name] = shape
    indexes = [ExplorerIndex.parse(s, shapes) for s in specs]
    names = [e.name for e in indexes]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"--explorer-index: the name {name!r} is given twice")
    for name in shapes.keys() - set(names):
        raise ValueError(f"--explorer-image: no --explorer-index is named {name!r}")
    for e in indexes:
        try:
            dim = LorannIndex.load(e.path).dim  # validates before a slow build
        except (OSError, ValueError) as exc:
            raise ValueError(f"--explorer-index {e.name}: {exc}") from None
        if e.image and e.image[0] * e.image[1] != dim:
            raise ValueError(f"--explorer-image {e.name}: {e.image[0]}x{e.image[1]} pixels, "
                             f"but its vectors have {dim} dimensions")
    return indexes


def add_explorer(site, indexes):
    """Copy the explorer's pages and ``indexes`` into the site folder being
    assembled; returns site.json's ``indexes`` entries (a link to the explorer
    is added by the caller when the site has a search page)."""
    from .. import LorannIndex

    web = web_folder()
    for name in EXPLORER_PAGES:
        shutil.copy(os.path.join(web, name), os.path.join(site, name))
    entries = []
    if indexes:
        os.makedirs(os.path.join(site, "indexes"), exist_ok=True)
    for e in indexes:
        with open(e.path, "rb") as f:
            buf = f.read()
        p = LorannIndex.from_bytes(buf).params  # the bytes checked are the bytes published
        rel = f"indexes/{e.name}.lorann"
        with open(os.path.join(site, rel), "wb") as f:
            f.write(buf)
        entry = {"name": e.name, "title": e.title or e.name, "file": rel, "bytes": len(buf),
                 "n": p["n"], "dim": p["dim"], "distance": p["distance"]}
        if e.image:
            entry["preview"] = list(e.image)
        entries.append(entry)
    return entries


def build_explorer_site(out, indexes=(), with_scipy=False):
    """A site of just the explorer and benchmark pages with ``indexes`` (a list of
    :class:`ExplorerIndex` or ``(name, path, title)``), assembled beside ``out``
    and moved into place when complete; returns its manifest."""
    from .publish import publish_staged
    from .runtime import copy_runtime

    indexes = [e if isinstance(e, ExplorerIndex) else ExplorerIndex(*e) for e in indexes]

    def assemble(staging):
        os.makedirs(os.path.join(staging, "wheels"))
        copy_runtime(os.path.join(staging, "pyodide"), with_scipy)
        wheel = package_wheel(os.path.join(staging, "wheels"))
        return {"wheel": f"wheels/{wheel}", "indexes": add_explorer(staging, indexes)}

    return publish_staged(out, assemble)
