"""Moving the market clock forward (simulated time for tests and demos)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from marketplace.errors import InvalidInput
from marketplace.models import MarketClock


@transaction.atomic
def market_clock_advance(*, by: timedelta) -> None:
    """Move market time forward by ``by``; it never goes back (a constraint guards it too)."""
    if by <= timedelta(0):
        raise InvalidInput("The market clock only moves forward.", field="hours")
    MarketClock.objects.get_or_create(pk=1)
    MarketClock.objects.filter(pk=1).update(offset_seconds=F("offset_seconds") + int(by.total_seconds()))


@transaction.atomic
def market_clock_freeze(*, at: datetime | None) -> None:
    """Stand the market at ``at`` (aware; plus the offset) regardless of real time; None: thaw."""
    if at is not None and timezone.is_naive(at):
        raise InvalidInput("The clock needs an aware time.", field="at")
    MarketClock.objects.get_or_create(pk=1)
    MarketClock.objects.filter(pk=1).update(frozen_at=at)
