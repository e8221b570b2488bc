"""Time passing: requests that can no longer start expire, listings past their window close."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from marketplace.models import BuyerRequest, Listing


@dataclass(frozen=True)
class ExpiredCounts:
    requests: int
    listings: int


@transaction.atomic
def stale_rows_expire(*, now: datetime) -> ExpiredCounts:
    """Expire open requests whose ``start_by`` passed with nothing matched, and close active
    listings whose window ended. Idempotent.

    A partially matched request keeps its matches; past ``start_by`` the engine's snapshot no
    longer offers it, so it stays ``partially_matched``.
    """
    requests = BuyerRequest.objects.filter(status=BuyerRequest.Status.OPEN, start_by__lt=now).update(
        status=BuyerRequest.Status.EXPIRED
    )
    listings = Listing.objects.filter(status=Listing.Status.ACTIVE, available_until__lte=now).update(
        status=Listing.Status.CLOSED
    )
    return ExpiredCounts(requests=requests, listings=listings)
