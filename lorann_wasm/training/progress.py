"""Build progress: timed log lines, or progress bars through a reporter."""

import sys
import time


class _Progress:
    """Build progress: ``log(message)`` and ``log.step(stage, done, total)``.

    ``verbose`` may be False (silent), True (timed lines on stderr) or a
    reporter: a callable taking messages, optionally with a
    ``step(stage, done, total)`` method (the CLI draws progress bars with it).
    """

    def __init__(self, verbose):
        self.verbose = verbose
        self.t0 = time.perf_counter()

    def __call__(self, msg):
        if callable(self.verbose):
            self.verbose(msg)
        elif self.verbose:
            print(f"[lorann_wasm {time.perf_counter() - self.t0:7.2f}s] {msg}",
                  file=sys.stderr, flush=True)

    def step(self, stage, done, total):
        step = getattr(self.verbose, "step", None)
        if step is not None:
            step(stage, done, total)
        elif self.verbose and (done == total or done % max(1, total // 10) == 0):
            self(f"{stage}: {done}/{total}")


def progress_logger(verbose):
    """The :class:`_Progress` for a ``verbose`` argument (passes one through)."""
    return verbose if isinstance(verbose, _Progress) else _Progress(verbose)
