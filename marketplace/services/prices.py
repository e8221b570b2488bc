"""Writes of clearing prices: a round's record (in its run's transaction) and the history's pruning."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from marketplace.models import ClearingPrice, GpuModel, MatchingRun, Region
from matching.prices import by_region
from matching.problem import ListingPrice


def clearing_prices_record(*, run: MatchingRun, prices: tuple[ListingPrice, ...], recorded_at: datetime) -> int:
    """Store ``prices`` aggregated per (region, GPU model) for ``run``; the rows written.

    Called by ``services.rounds.matching_run_finish`` inside the transaction that records the run,
    so a run's prices appear with it or not at all. Regions or models unknown to the database (a
    row deleted since the snapshot) are skipped.
    """
    regions = by_region(prices)
    if not regions:
        return 0
    region_ids = dict(Region.objects.filter(code__in={r.region for r in regions}).values_list("code", "pk"))
    model_ids = dict(GpuModel.objects.filter(code__in={r.gpu_model for r in regions}).values_list("code", "pk"))
    rows = [
        ClearingPrice(
            run=run,
            recorded_at=recorded_at,
            region_id=region_ids[r.region],
            gpu_model_id=model_ids[r.gpu_model],
            price_per_gpu_hour=r.price,
            rent_per_gpu_hour=r.rent,
            free_gpus=r.free_gpus,
            listings=r.listings,
            saturated_listings=r.saturated,
            unavailable_listings=r.unpriced,
        )
        for r in regions
        if r.region in region_ids and r.gpu_model in model_ids
    ]
    ClearingPrice.objects.bulk_create(rows)
    return len(rows)


@transaction.atomic
def clearing_prices_prune(*, now: datetime) -> int:
    """Delete clearing prices older than ``PRICE_HISTORY_DAYS``; the rows deleted."""
    cutoff = now - timedelta(days=settings.PRICE_HISTORY_DAYS)
    deleted, _ = ClearingPrice.objects.filter(recorded_at__lt=cutoff).delete()
    return deleted
