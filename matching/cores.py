"""A compiled kernel's independent rows spread over the machine's cores.

The round's heaviest compiled passes (the rules matrix, the bound's per-demand least values, the
covers' costs) visit rows that depend on nothing but their own inputs and write only their own
outputs, and they release the GIL (numba ``nogil=True``). :func:`split` runs such a kernel on
consecutive row ranges at once, one per core, the calling thread taking the first: the same result
as one call over all rows (each row computed by the same code, the ranges' results concatenated in
order), in less wall time.

Threads, not numba's ``parallel=True``: numba's built-in threading layer aborts the process when two
threads launch parallel kernels at once (a web process quoting while a worker solves), and the
layers that do not (TBB, OpenMP) are not installed with numba. A pool thread never waits on another
task, so concurrent callers cannot deadlock.

``MATCHING_THREADS`` (environment) caps the threads (default: the cores this process may run on);
1 runs every kernel in the calling thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: Fewest rows per range: below twice this, one call (a hand-off to a thread costs tens of µs,
#: and a small round is solved in milliseconds anyway).
MIN_ROWS = 2048

_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def configured_threads(environ: Mapping[str, str] = os.environ) -> int:
    """``MATCHING_THREADS`` if set (a whole number, at least 1), else the cores this process may run
    on. A value that is not a whole number is refused when this module loads (the worker does not
    start), not in the middle of a round."""
    configured = environ.get("MATCHING_THREADS", "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise ValueError(f"MATCHING_THREADS must be a whole number, not {configured!r}") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not on Linux)
        return os.cpu_count() or 1


#: The most threads a kernel uses (:func:`configured_threads` when the module loads).
THREADS = configured_threads()


def ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into ``parts`` consecutive (lo, hi) ranges differing by at most one row."""
    step, extra = divmod(n, parts)
    out, lo = [], 0
    for p in range(parts):
        hi = lo + step + (1 if p < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def split(n: int, call: Callable[[int, int], T]) -> list[T]:
    """``call(lo, hi)`` over consecutive ranges covering ``range(n)``, at once on up to
    :data:`THREADS` threads (one range when ``n`` < 2 × :data:`MIN_ROWS`): the results in range order.
    ``call`` must touch only its rows' outputs; an exception in any range is raised here after
    every range has finished."""
    parts = max(1, min(THREADS, n // MIN_ROWS))
    if parts == 1:
        return [call(0, n)]
    spans = ranges(n, parts)
    pool = _executor(parts - 1)
    futures: list[Future[T]] = [pool.submit(call, lo, hi) for lo, hi in spans[1:]]
    try:
        first = call(*spans[0])
    finally:
        done = [f.exception() for f in futures]  # (waits for every range before anything is raised)
    for error in done:
        if error is not None:
            raise error
    return [first, *(f.result() for f in futures)]


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's pool, with at least ``workers`` threads (a bigger one made if it has fewer;
    the old one is left to finish what it was given, and its idle threads end when it is dropped)."""
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers < workers:
            _pool, _pool_workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="matching-cores"), workers
        return _pool


def _forget_pool() -> None:
    # A forked child (a Celery prefork worker) inherits the pool object but not its threads.
    global _pool, _pool_workers, _pool_lock
    _pool, _pool_workers, _pool_lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
