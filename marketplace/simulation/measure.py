"""Reading a run's figures back from the database: utilisation, service, prices, latency, vouchers.

An analysis tool, so it queries the models directly (aggregates only; nothing here writes). A run
is scoped by the ids it created: everything above the :class:`Floors` taken before it began, so a
run on a database that already has a market measures only its own listings and requests.

Figures are floats rounded for the report; the money they come from stays ``Decimal`` until the
final division.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Max, Sum

from marketplace.models import BuyerRequest, Listing, Match, MatchingRun, Settlement
from marketplace.simulation.scenario import CST, Catalogue
from matching.latency import rtt_bound_ms

ZERO = Decimal(0)


@dataclass(frozen=True)
class Floors:
    """The highest listing, request and matching-run ids before the run: its rows are above them."""

    listing: int
    request: int
    run: int

    @classmethod
    def now(cls) -> Floors:
        def top(model) -> int:
            return model.objects.aggregate(top=Max("pk"))["top"] or 0

        return cls(listing=top(Listing), request=top(BuyerRequest), run=top(MatchingRun))


@dataclass(frozen=True)
class Sample:
    """GPUs listed and held per region at one instant (``held``: live matches already started)."""

    at: datetime
    listed: dict[str, int]
    held: dict[str, int]


def capacity_sample(floors: Floors, now: datetime) -> Sample:
    """Listed and held GPUs per region of the run's listings at ``now``: two queries."""
    listed = (
        Listing.objects.filter(pk__gt=floors.listing, status=Listing.Status.ACTIVE)
        .filter(available_from__lte=now, available_until__gt=now)
        .values_list("region__code")
        .annotate(gpus=Sum("gpu_count"))
    )
    held = (
        Match.objects.filter(listing_id__gt=floors.listing, status__in=Match.LIVE_STATUSES)
        .filter(starts_at__lte=now, ends_at__gt=now)
        .values_list("listing__region__code")
        .annotate(gpus=Sum("gpus"))
    )
    return Sample(at=now, listed=dict(listed), held=dict(held))


def utilisation(samples: list[Sample], step_hours: float, catalogue: Catalogue) -> dict:
    """GPU-hours held / GPU-hours listed: western hubs, eastern ones, all, per region, per CST hour."""
    listed: dict[str, float] = {}
    held: dict[str, float] = {}
    by_hour: dict[str, list[list[float]]] = {}
    for sample in samples:
        hour = sample.at.astimezone(CST).hour
        for region, gpus in sample.listed.items():
            listed[region] = listed.get(region, 0) + gpus * step_hours
            held[region] = held.get(region, 0) + sample.held.get(region, 0) * step_hours
            cell = by_hour.setdefault(region, [[0.0, 0.0] for _ in range(24)])[hour]
            cell[0] += gpus
            cell[1] += sample.held.get(region, 0)

    def share(regions) -> float:
        total = sum(listed[r] for r in regions)
        return round(sum(held[r] for r in regions) / total, 4) if total else 0.0

    west = [r for r in listed if catalogue.is_west[r]]
    east = [r for r in listed if not catalogue.is_west[r]]
    return {
        "west": share(west),
        "east": share(east),
        "all": share(west + east),
        "gpu_hours_listed": {"west": round(sum(listed[r] for r in west)), "east": round(sum(listed[r] for r in east))},
        "by_region": {r: {"is_west": catalogue.is_west[r], "utilisation": share([r])} for r in sorted(listed)},
        "by_hour": {r: [round(h / n, 4) if n else None for n, h in cells] for r, cells in sorted(by_hour.items())},
    }


def demand_served(floors: Floors) -> dict:
    """Replicas and GPU-hours asked for and served, in total and per latency class.

    Served replicas are those placed on matches that did not fail (``matched_replicas``); served
    GPU-hours are what settlements metered, so a failed-over match counts the hours it ran.
    """
    asked: dict[str, dict] = {}
    requests = BuyerRequest.objects.filter(pk__gt=floors.request).values_list(
        "latency_class", "replicas", "gpus_per_replica", "duration_hours", "matched_replicas"
    )
    for latency_class, replicas, size, hours, matched in requests:
        row = asked.setdefault(latency_class, {"requests": 0, "replicas": 0, "served_replicas": 0, "gpu_hours": 0})
        row["requests"] += 1
        row["replicas"] += replicas
        row["served_replicas"] += matched
        row["gpu_hours"] += replicas * size * hours
    metered = (
        Settlement.objects.filter(match__request_id__gt=floors.request)
        .values_list("match__request__latency_class")
        .annotate(hours=Sum("gpu_hours"))
    )
    for latency_class, hours in metered:
        asked[latency_class]["served_gpu_hours"] = float(hours)
    for row in asked.values():
        row.setdefault("served_gpu_hours", 0.0)
    return {"by_class": dict(sorted(asked.items())), **_totals(asked)}


def _totals(by_class: dict) -> dict:
    total = {key: sum(row[key] for row in by_class.values()) for key in ("requests", "replicas", "served_replicas")}
    hours = sum(row["gpu_hours"] for row in by_class.values())
    served_hours = sum(row["served_gpu_hours"] for row in by_class.values())
    return {
        **total,
        "gpu_hours": hours,
        "served_gpu_hours": round(served_hours, 2),
        "served_replica_share": round(total["served_replicas"] / total["replicas"], 4) if total["replicas"] else 0.0,
        "served_gpu_hour_share": round(served_hours / hours, 4) if hours else 0.0,
    }


MATCH_FIELDS = (
    "rtt_ms",
    "request__latency_class",
    "request__max_rtt_ms",
    "listing__region__code",
    "listing__gpu_model__code",
    "energy_cost_per_gpu_hour",
    "settlement__gpu_hours",
    "settlement__gross",
    "settlement__subsidy",
    "settlement__buyer_pays",
)


def matches_measured(floors: Floors, catalogue: Catalogue) -> dict:
    """Latency-bound violations, prices, energy, voucher spend and where the GPU-hours went.

    Every match of the run's requests is checked against its request's bound (the explicit
    ``max_rtt_ms``, else its class's); money comes from the settlements (every match is settled
    once the run has drained).
    """
    sums = {"hours": ZERO, "gross": ZERO, "subsidy": ZERO, "pays": ZERO, "energy": ZERO, "indicative": ZERO}
    west_hours, violations, points, count = ZERO, 0, [], 0
    for row in Match.objects.filter(request_id__gt=floors.request).values_list(*MATCH_FIELDS).order_by("pk"):
        rtt, latency_class, explicit, region, model, energy, hours, gross, subsidy, pays = row
        count += 1
        bound = rtt_bound_ms(explicit, latency_class)
        violations += bound is not None and rtt > bound
        if hours is None:  # not settled: the run did not drain
            continue
        indicative = catalogue.indicative_price[model]
        for key, value in zip(sums, (hours, gross, subsidy, pays, energy * hours, indicative * hours), strict=True):
            sums[key] += value
        west_hours += hours if catalogue.is_west[region] else ZERO
        if hours:
            points.append([float(rtt), round(float(pays / hours / indicative), 4), latency_class, model])
    return {"matches": count, "latency_violations": violations, "points": points, **_money(sums, west_hours)}


def _money(sums: dict, west_hours: Decimal) -> dict:
    hours = sums["hours"]

    def per_hour(value: Decimal) -> float:
        return round(float(value / hours), 4) if hours else 0.0

    return {
        "settled_gpu_hours": round(float(hours), 2),
        "avg_price_paid": per_hour(sums["pays"]),
        "avg_list_price": per_hour(sums["gross"]),
        "price_index": round(float(sums["pays"] / sums["indicative"]), 4) if sums["indicative"] else 0.0,
        "energy_cost_per_gpu_hour": per_hour(sums["energy"]),
        "voucher_spend": round(float(sums["subsidy"]), 2),
        "buyer_pays": round(float(sums["pays"]), 2),
        "west_share_of_gpu_hours": round(float(west_hours / hours), 4) if hours else 0.0,
    }


def rounds_measured(floors: Floors) -> dict:
    """How many rounds ran and how long their plan builders took (wall time: not deterministic)."""
    runs = MatchingRun.objects.filter(pk__gt=floors.run)
    solve_ms = sum((timings or {}).get("solve", 0) for timings in runs.values_list("timings_ms", flat=True))
    return {"rounds": runs.count(), "solve_seconds": round(solve_ms / 1000, 2)}
