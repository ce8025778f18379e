"""Where slow work is kept between runs: ``$LORANN_WASM_CACHE`` or ``~/.cache/lorann_wasm``."""

import os


def user_cache(*parts):
    """A path under the per-user cache folder (not created)."""
    home = os.environ.get("LORANN_WASM_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "lorann_wasm"))
    return os.path.join(home, *parts)
