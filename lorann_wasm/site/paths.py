"""Where a path lies: the one check the site builder, the page reader and ``serve``
make before they read, replace or serve a file."""

import os


def inside(path, folder):
    """Whether ``path`` is ``folder`` or lies below it, both with links resolved."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
