"""A site folder written atomically: assembled in a locked staging folder beside
its destination, listed with every file's hash in site.json, then renamed into
place (a previous site is replaced only then; nothing is left on failure)."""

import hashlib
import json
import os
import shutil
import sys
import tempfile

from ..atomic import atomic_output
from .precompress import is_sibling, write_siblings
from .runtime import sha256

#: the staging folders of site builds, beside -o: a build holds a lock on its own
#: (STAGING_LOCK inside it), so one whose lock can be taken was left by a build
#: that was killed, and the next build beside it removes it
STAGING_PREFIX = ".lorann-site-"
STAGING_LOCK = ".lorann-building"


def _staging(parent):
    """A new staging folder in ``parent``, locked by this process: ``(path, lock file)``.
    Stale ones left by killed builds are removed first."""
    import fcntl

    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if not name.startswith(STAGING_PREFIX) or not os.path.isdir(path):
            continue
        try:
            fd = os.open(os.path.join(path, STAGING_LOCK), os.O_RDWR)
        except OSError:
            continue  # no lock file: not (or not yet) one of ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # another build is using it
        print(f"site: removing {path}, left by a build that was stopped", file=sys.stderr,
              flush=True)
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)
    fd = os.open(os.path.join(staging, STAGING_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return staging, fd


def _publish(staging, out):
    """Move the finished ``staging`` folder to ``out``, replacing a previous site."""
    old = None
    if os.path.exists(out):
        old = tempfile.mkdtemp(prefix=".lorann-old-", dir=os.path.dirname(os.path.abspath(out)))
        os.rmdir(old)
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        if old:
            os.replace(old, out)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)


def publish_staged(out, assemble):
    """Make a site: ``assemble(staging)`` fills a new staging folder beside ``out``
    and returns the manifest, which :func:`finish_manifest` completes; the folder
    then replaces ``out``. Nothing is left behind on failure. Returns the manifest."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging, lock = _staging(parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700; a site is an ordinary folder
    try:
        manifest = assemble(staging)
        os.remove(os.path.join(staging, STAGING_LOCK))  # (not part of the site)
        finish_manifest(staging, manifest)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.close(lock)
    return manifest


def finish_manifest(staging, manifest):
    """List every file of the site folder ``staging`` with its size and hash in
    ``manifest``, whose version is the hash of that list, and write it as site.json
    (after anything is added to a site: the version covers every file it serves);
    then write the gzip siblings of the files visitors fetch whole (see
    :mod:`.precompress`; they are how those files travel, not files of the site)."""
    files = {}
    for folder, _, names in os.walk(staging):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, staging).replace(os.sep, "/")
            if rel != "site.json" and not is_sibling(staging, rel):
                files[rel] = {"bytes": os.path.getsize(path), "sha256": sha256(path)}
    listing = json.dumps(sorted((k, v["sha256"]) for k, v in files.items())).encode()
    manifest["version"] = hashlib.sha256(listing).hexdigest()[:16]
    manifest["files"] = dict(sorted(files.items()))
    manifest["bytes"] = sum(f["bytes"] for f in files.values())
    with atomic_output(os.path.join(staging, "site.json")) as f:
        f.write(json.dumps(manifest, indent=1).encode())
    s = manifest.get("search") or {}
    ranged = set() if s.get("whole") else {s.get(k) for k in ("index", "records", "offsets",
                                                               "tokens")}
    ranged |= {entry.get("file") for entry in manifest.get("indexes") or []}
    write_siblings(staging, [name for name in [*files, "site.json"] if name not in ranged])
