"""Moving the market clock forward (simulated time for tests and demos)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import F

from marketplace.errors import InvalidInput
from marketplace.models import MarketClock


@transaction.atomic
def market_clock_advance(*, by: timedelta) -> None:
    """Move market time forward by ``by``; it never goes back (a constraint guards it too)."""
    if by <= timedelta(0):
        raise InvalidInput("The market clock only moves forward.", field="hours")
    MarketClock.objects.get_or_create(pk=1)
    MarketClock.objects.filter(pk=1).update(offset_seconds=F("offset_seconds") + int(by.total_seconds()))
