"""Reliability scores of a page of listings and of their providers, in one query
(the definition: ``marketplace.reliability``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Q

from marketplace.models import Match
from marketplace.reliability import COUNTED_STATUSES, MatchTime, Reliability, reliability, window_start


@dataclass(frozen=True)
class ReliabilityIndex:
    """Scores by listing id and by provider id (``None`` for an id it was not built for)."""

    by_listing: dict[int, Reliability] = field(default_factory=dict)
    by_provider: dict[int, Reliability] = field(default_factory=dict)


def reliability_index(
    *, listing_ids: Iterable[int] = (), provider_ids: Iterable[int] = (), now: datetime
) -> ReliabilityIndex:
    """Scores of the given listings and providers at ``now``: one query, whatever their number.

    Reads the counted matches of the window (``marketplace.reliability``) of those listings and of
    every listing of those providers; a listing or provider without any gets a ``new`` score of 0
    matches. The rows are a page's listings' and providers' last 30 days of matches.
    """
    listing_ids, provider_ids = set(listing_ids), set(provider_ids)
    if not listing_ids and not provider_ids:
        return ReliabilityIndex()
    rows = Match.objects.filter(
        Q(listing_id__in=listing_ids) | Q(listing__provider_id__in=provider_ids),
        status__in=COUNTED_STATUSES,
        starts_at__lt=now,
        ends_at__gt=window_start(now),
    ).order_by().values_list(
        "listing_id", "listing__provider_id", "gpus", "status", "starts_at", "ends_at", "ended_at", "ready_at"
    )
    by_listing: dict[int, list[MatchTime]] = defaultdict(list)
    by_provider: dict[int, list[MatchTime]] = defaultdict(list)
    for listing_id, provider_id, gpus, status, starts_at, ends_at, ended_at, ready_at in rows:
        match = MatchTime(gpus, status, starts_at, ends_at, ended_at, ready_at)
        by_listing[listing_id].append(match)
        by_provider[provider_id].append(match)
    least = settings.RELIABILITY_MIN_MATCHES
    return ReliabilityIndex(
        by_listing={pk: reliability(by_listing[pk], now=now, min_matches=least) for pk in listing_ids},
        by_provider={pk: reliability(by_provider[pk], now=now, min_matches=least) for pk in provider_ids},
    )
