"""Writing a file atomically: a temporary file beside it, renamed when complete."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_output(path):
    """Yield a binary file object open on a temporary file beside ``path``.

    When the block ends normally the file is flushed, synced to disk, given
    the permissions of an ordinary new file and renamed to ``path``; if it
    raises, the temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".lorann-", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an index is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
