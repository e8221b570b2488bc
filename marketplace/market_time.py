"""The market's "now": real time plus the offset ``manage.py advance_clock`` has added.

Everything that decides by time — rounds, the lifecycle sweep, request and listing windows,
settlements — asks here, so a simulated day runs in seconds and tests can set time explicitly.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from marketplace.models import MarketClock


def market_now() -> datetime:
    """Real UTC time (or the instant the clock is frozen at) shifted by the clock's offset; one query."""
    offset, frozen_at = MarketClock.objects.filter(pk=1).values_list("offset_seconds", "frozen_at").first() or (0, None)
    return (frozen_at or timezone.now()) + timedelta(seconds=offset)
