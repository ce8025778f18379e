"""Embedding a collection: the texts not cached yet, cut into units of work and run
in this process, in a pool of local processes, or on a Dask cluster.

A unit is a run of texts of similar length (:func:`units`); each is encoded
by :func:`.encoders.encode_unit` wherever it runs and cached as soon as it is
back, in the order the units were made. The units, and the batches inside
each, do not depend on where they run, and NumPy's MiniLM gives the same
bits for one BLAS thread or several (checked on this machine's OpenBLAS):
the cache and the site come out identical for any number of workers.
Progress is reported at least every :data:`REPORT_SECONDS`.
"""

import concurrent.futures
import contextlib
import os
import sys
import time
from collections import deque

from ..training.parallel import ONE_THREAD, executor_width, process_pool
from .cache import EmbeddingCache
from .encoders import cache_name, check_encoder, encode_unit

#: a unit holds at most this many characters, counted as its longest text times
#: its texts (about 4,000 word pieces: ~1.5 s of one NumPy worker on 200-token
#: passages, so a pool reports often and an interrupt loses little)
UNIT_CHARS = 16_000
#: ... and at most this many texts
UNIT_TEXTS = 512
#: seconds between progress lines at most
REPORT_SECONDS = 2.0
#: below this many texts to embed, one process (starting a pool costs ~2 s)
POOL_MIN_TEXTS = 1_000


def units(texts):
    """Runs of positions into ``texts`` by increasing length, each within
    :data:`UNIT_CHARS` and :data:`UNIT_TEXTS`."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out, start = [], 0
    while start < len(order):
        stop = start + 1
        while (stop < len(order) and stop - start < UNIT_TEXTS
               and (stop - start + 1) * len(texts[order[stop]]) <= UNIT_CHARS):
            stop += 1
        out.append(order[start:stop])
        start = stop
    return out


def _count(n, unit):
    """"1 passage", "2 passages", "3 glosses"."""
    return f"{n:,} {unit}" if n == 1 else f"{n:,} {unit}{'es' if unit.endswith('s') else 's'}"


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class Progress:
    """Progress lines for ``total`` texts: done, rate and time left, at most
    :data:`REPORT_SECONDS` apart (rewritten in place on a terminal)."""

    def __init__(self, label, total, unit="passage", stream=None):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = self.last = time.perf_counter()
        self.done = 0

    def line(self, done):
        elapsed = time.perf_counter() - self.t0
        text = (f"{self.label}: {done:,} of {_count(self.total, self.unit)} "
                f"({done / self.total:.0%})")
        if done and elapsed > 0:
            rate = done / elapsed
            text += (f", {rate:,.1f} {_count(2, self.unit)[2:]}/s, about "
                     f"{_duration((self.total - done) / rate)} left")
        else:
            text += f", started {_duration(elapsed)} ago"
        return text

    def update(self, done, force=False):
        """Report ``done`` texts if a line is due (or ``force``)."""
        self.done = done
        now = time.perf_counter()
        if force or now - self.last >= REPORT_SECONDS:
            self.last = now
            end = "" if self.tty else "\n"
            print(("\r\033[K" if self.tty else "") + self.line(done), end=end,
                  file=self.stream, flush=True)

    def close(self, summary):
        print(("\r\033[K" if self.tty else "") + summary, file=self.stream, flush=True)


def embed_collection(texts, encoder="numpy", *, cache_dir, executor=None, workers=None,
                     label="embedding", unit="passage", stream=None):
    """``(len(texts), 384)`` float32: every text's embedding, from the cache or computed.

    The texts not cached yet are encoded by ``encoder`` (see :mod:`.encoders`)
    in units (:func:`units`) on ``executor`` (any ``concurrent.futures``
    executor, e.g. a Dask client's), else in a pool of ``workers`` local
    processes (default: one per CPU from :data:`POOL_MIN_TEXTS` texts up), else
    here. Each unit is cached in ``cache_dir`` once done, so an interrupted
    run resumes. Progress and a summary go to ``stream`` (stderr).
    """
    check_encoder(encoder)
    cache = EmbeddingCache(cache_dir, cache_name(encoder))
    missing = cache.missing(texts)
    stream = stream or sys.stderr
    t0 = time.perf_counter()
    if missing:
        if executor is None and workers is None:
            workers = (os.cpu_count() or 1) if len(missing) >= POOL_MIN_TEXTS else 1
        if executor is not None:
            where, threads, width = "on the Dask cluster", 1, executor_width(executor)
            context = contextlib.nullcontext(executor)
        elif workers > 1:
            where, threads, width = f"in {workers} processes", 1, workers
            context = process_pool(workers, ONE_THREAD)  # the processes share the cores
        else:
            where, threads, width = "in this process", None, 1
            context = concurrent.futures.ThreadPoolExecutor(1)
        progress = Progress(label, len(missing), unit, stream)
        print(f"{label}: {_count(len(missing), unit)} to embed with the {encoder} encoder "
              f"{where} ({len(texts) - len(missing):,} from the cache)", file=stream, flush=True)
        with context as pool:
            _run(cache, missing, encoder, pool, threads, width, progress)
        elapsed = time.perf_counter() - t0
        progress.close(f"{label}: embedded {_count(len(missing), unit)} in "
                       f"{_duration(elapsed)} ({len(missing) / max(elapsed, 1e-9):,.1f} "
                       f"{_count(2, unit)[2:]}/s, {encoder} encoder {where}); "
                       f"{len(texts) - len(missing):,} came from the cache")
    return cache.vectors(texts)


def _run(cache, missing, encoder, pool, threads, width, progress):
    """Encode ``missing`` (key, text) pairs unit by unit on ``pool``, at most
    ``2 * width`` units in flight, caching each in the order the units were made."""
    texts = [t for _, t in missing]
    pending = deque()
    todo = deque(units(texts))
    done = 0
    while todo or pending:
        while todo and len(pending) < 2 * width:
            rows = todo.popleft()
            pending.append((rows, pool.submit(encode_unit, encoder, [texts[i] for i in rows],
                                              threads)))
        rows, future = pending[0]
        concurrent.futures.wait([future], timeout=REPORT_SECONDS)
        if future.done():
            pending.popleft()
            cache.save([missing[i][0] for i in rows], future.result())
            done += len(rows)
        finished = sum(len(r) for r, f in pending if f.done())
        progress.update(done + finished)
