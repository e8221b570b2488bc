"""Holding the market still while a simulation runs as fast as it can."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from marketplace.services.clock import market_clock_freeze


@contextmanager
def market_time_frozen(at: datetime) -> Iterator[None]:
    """Freeze the market clock at ``at`` (aware) inside the block, thaw it after.

    Why: market time is real time plus the clock's offset, and real time keeps moving while a
    round computes, so match start times, metered hours and every figure derived from them would
    wobble from run to run. Frozen, market time moves only when the simulation advances the clock,
    and a seed gives the same figures to the last digit.
    """
    market_clock_freeze(at=at)
    try:
        yield
    finally:
        market_clock_freeze(at=None)
