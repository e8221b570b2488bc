"""Moving the market clock (simulated time for tests, demos and the simulation): forward, or frozen."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from marketplace.errors import InvalidInput
from marketplace.models import MarketClock


@transaction.atomic
def market_clock_advance(*, by: timedelta) -> None:
    """Move market time forward by ``by``; it never goes back (a constraint guards it too)."""
    if by <= timedelta(0):
        raise InvalidInput(gettext("The market clock only moves forward."), field="hours")
    MarketClock.objects.get_or_create(pk=1)
    MarketClock.objects.filter(pk=1).update(offset_seconds=F("offset_seconds") + int(by.total_seconds()))


@transaction.atomic
def market_clock_freeze(*, at: datetime | None) -> None:
    """Stand the market at ``at`` (aware; plus the offset) regardless of real time; None: thaw."""
    if at is not None and timezone.is_naive(at):
        raise InvalidInput(gettext("The clock needs an aware time."), field="at")
    MarketClock.objects.get_or_create(pk=1)
    MarketClock.objects.filter(pk=1).update(frozen_at=at)


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
