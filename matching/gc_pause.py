"""Python's cyclic garbage collector paused while an engine solve allocates.

A 10k × 2k inference round holds millions of small objects (the pairs' candidates, covers' items,
placements); every collection of the oldest generation walks all of them, and the allocations of
the solve trigger dozens. Pausing the collector for the solve cut the 10k × 2k round from ~12 s to
~10 s (measured side by side); reference counting still frees everything not in a cycle, and the
few cycles (the batch and its candidates) go at the first collection after the pause.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block (nests, and across threads: it resumes, if it ran
    before the first, when the last block still inside ends)."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
