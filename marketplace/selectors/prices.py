"""Reads of clearing prices (``services.prices`` writes them; docs/economics.md explains them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Max, QuerySet

from marketplace.models import ClearingPrice, GpuModel, Region
from marketplace.selectors.market import rtts_from
from matching.latency import latency_class_of
from matching.lookahead import recent_rent


@dataclass(frozen=True)
class CurrentPrice:
    """One region's latest clearing price of a GPU model, seen from an origin.

    ``latency_rent_per_gpu_hour`` is this region's price minus the lowest of the regions' latest
    prices of the model: what being this near the origin costs at the margin. Null with the
    price.
    """

    region: str
    gpu_model: str
    rtt_ms: float | None
    latency_class: str | None
    price_per_gpu_hour: Decimal | None
    rent_per_gpu_hour: Decimal | None
    latency_rent_per_gpu_hour: Decimal | None
    free_gpus: int
    listings: int
    saturated_listings: int
    unavailable_listings: int
    run_id: int
    recorded_at: datetime


def latest_prices(*, gpu_model: GpuModel, origin: Region | None = None) -> list[CurrentPrice]:
    """Each region's clearing price of ``gpu_model`` from the latest round that priced it (a region
    whose capacity is all taken is left out of later rounds' snapshots, so its latest price may be
    older than another's: ``run_id`` and ``recorded_at`` say which); nearest to ``origin`` first (by
    region code without one). Two queries."""
    rows = _latest_rows(ClearingPrice.objects.filter(gpu_model=gpu_model))
    return _current(rows, gpu_model=gpu_model, origin=origin)


def latest_clearing_prices() -> list[ClearingPrice]:
    """Every (GPU model, region)'s latest clearing price (``region`` and ``gpu_model`` loaded), by
    model code then price (unpriced last), for the admin monitor. Two queries."""
    rows = _latest_rows(ClearingPrice.objects.all())
    far = Decimal("Infinity")
    return sorted(
        rows,
        key=lambda r: (
            r.gpu_model.code,
            r.price_per_gpu_hour if r.price_per_gpu_hour is not None else far,
            r.region.code,
        ),
    )


def _latest_rows(queryset: QuerySet[ClearingPrice]) -> list[ClearingPrice]:
    latest = {
        (model, region): run
        for model, region, run in queryset.values_list("gpu_model_id", "region_id").annotate(run=Max("run_id"))
    }
    rows = queryset.filter(run_id__in=set(latest.values())).select_related("region", "gpu_model")
    return [row for row in rows if latest[(row.gpu_model_id, row.region_id)] == row.run_id]


def _current(rows: list[ClearingPrice], *, gpu_model: GpuModel, origin: Region | None) -> list[CurrentPrice]:
    rtt_of = rtts_from(origin)
    cheapest = min((r.price_per_gpu_hour for r in rows if r.price_per_gpu_hour is not None), default=None)
    out = []
    for row in rows:
        rtt = rtt_of.get(row.region_id)
        price = row.price_per_gpu_hour
        out.append(
            CurrentPrice(
                region=row.region.code,
                gpu_model=gpu_model.code,
                rtt_ms=None if rtt is None else float(rtt),
                latency_class=None if rtt is None else latency_class_of(float(rtt)).value,
                price_per_gpu_hour=price,
                rent_per_gpu_hour=row.rent_per_gpu_hour,
                latency_rent_per_gpu_hour=None if price is None or cheapest is None else price - cheapest,
                free_gpus=row.free_gpus,
                listings=row.listings,
                saturated_listings=row.saturated_listings,
                unavailable_listings=row.unavailable_listings,
                run_id=row.run_id,
                recorded_at=row.recorded_at,
            )
        )
    far = float("inf")
    return sorted(out, key=lambda p: (p.rtt_ms if p.rtt_ms is not None else far, p.region))


def price_history(*, gpu_model: GpuModel, region: Region, hours: int, now: datetime) -> QuerySet[ClearingPrice]:
    """The clearing prices of ``gpu_model`` in ``region`` recorded in the ``hours`` before ``now``,
    oldest first."""
    since = now - timedelta(hours=hours)
    return ClearingPrice.objects.filter(gpu_model=gpu_model, region=region, recorded_at__gte=since).order_by(
        "recorded_at", "run_id"
    )


def recent_rents(*, gpu_model_code: str, hours: int, now: datetime) -> dict[tuple[str, str], Decimal]:
    """The mean scarcity rent per (region code, GPU model code) of ``gpu_model_code`` over the
    clearing prices recorded in the ``hours`` before ``now`` (:func:`matching.lookahead.recent_rent`):
    the look-ahead's reservations. One query."""
    rows = ClearingPrice.objects.filter(
        gpu_model__code=gpu_model_code, recorded_at__gte=now - timedelta(hours=hours), recorded_at__lte=now
    ).values_list("region__code", "gpu_model__code", "rent_per_gpu_hour")
    return recent_rent(rows)
