"""Wall-clock phase timings in milliseconds, as plans and matching runs record them.

Timings are the one thing about a plan that is not a function of its inputs: they are reported,
never decided on.
"""

from __future__ import annotations

import time


def ms_since(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading), to 0.01 ms."""
    return round((time.perf_counter() - start) * 1000, 2)
