"""The market's "now": real time plus the offset ``manage.py advance_clock`` has added.

Everything that decides by time — rounds, the lifecycle sweep, request and listing windows,
settlements — asks here, so a simulated day runs in seconds and tests can set time explicitly.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from marketplace.models import MarketClock


def market_now() -> datetime:
    """Real UTC time shifted by the market clock's offset (one query)."""
    offset = MarketClock.objects.filter(pk=1).values_list("offset_seconds", flat=True).first() or 0
    return timezone.now() + timedelta(seconds=offset)
