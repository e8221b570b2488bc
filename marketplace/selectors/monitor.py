"""Reads behind the admin match monitor: the newest matches and runs, the market's totals, charts of
listed and matched GPUs by region over time, unserved requests, and voucher spend. Each costs a
constant number of queries whatever the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Max, Sum

from marketplace.market_time import market_now
from marketplace.models import (
    BuyerRequest,
    Listing,
    Match,
    MatchingRun,
    Organisation,
    VoucherProgram,
)
from marketplace.money import FEN, buyer_rate
from marketplace.selectors.dashboards import PAID_STATUSES, hours_of
from marketplace.selectors.vouchers import voucher_programs_for


@dataclass(frozen=True)
class MonitorLive:
    matches: list[Match]
    runs: list[MatchingRun]
    gpus_listed: int
    gpus_allocated: int
    open_requests: int

    @property
    def gpus_idle(self) -> int:
        return self.gpus_listed - self.gpus_allocated


def monitor_live(*, now: datetime | None = None, matches: int = 15, runs: int = 10) -> MonitorLive:
    """The newest matches and matching runs, and the market's totals right now. Four queries."""
    now = now or market_now()
    active = Listing.objects.filter(status=Listing.Status.ACTIVE, available_until__gt=now)
    totals = active.aggregate(listed=Sum("gpu_count"), allocated=Sum("allocated_gpus"))
    latest = Match.objects.select_related(
        "listing__region", "listing__provider", "listing__gpu_model", "request__origin", "request__buyer"
    )[:matches]
    return MonitorLive(
        matches=list(latest),
        runs=list(MatchingRun.objects.all()[:runs]),
        gpus_listed=totals["listed"] or 0,
        gpus_allocated=totals["allocated"] or 0,
        open_requests=BuyerRequest.objects.filter(status__in=BuyerRequest.OPEN_STATUSES).count(),
    )


@dataclass
class _RegionSeries:
    listed: list[int]
    matched: list[int]


@dataclass(frozen=True)
class MonitorCharts:
    """Chart data, JSON-ready (``as_dict``)."""

    labels: list[str]
    #: The steps' moments, ISO 8601 in UTC (``labels`` are their UTC "HH:MM"; pages show CST).
    times: list[str]
    regions: list[str]
    series: dict[str, dict[str, list[int]]]
    west_gpu_hours: Decimal
    other_gpu_hours: Decimal
    avg_matched_price: dict[str, str | None]
    avg_listed_price: dict[str, str | None]

    @property
    def west_share(self) -> float | None:
        total = self.west_gpu_hours + self.other_gpu_hours
        return None if not total else float(self.west_gpu_hours / total)

    def as_dict(self) -> dict:
        return {
            "labels": self.labels,
            "times": self.times,
            "regions": self.regions,
            "series": self.series,
            "west_share": {
                "west_gpu_hours": str(self.west_gpu_hours.quantize(FEN)),
                "other_gpu_hours": str(self.other_gpu_hours.quantize(FEN)),
                "share": self.west_share,
            },
            "avg_price": {"matched": self.avg_matched_price, "listed": self.avg_listed_price},
        }


def monitor_charts(*, now: datetime | None = None, hours: int = 6, step_minutes: int = 15) -> MonitorCharts:
    """Idle vs matched GPUs by region at each step of the last ``hours`` (rebuilt from listing
    windows and match lifetimes: a withdrawn listing counts until its last update, a cancelled
    match not at all), matched GPU-hours in western hubs vs elsewhere, and the average price per
    GPU-hour by region (matched: what buyers pay, price − subsidy, weighted by GPU-hours; listed:
    the listed price, weighted by GPUs of active listings).
    Two queries; the work in Python grows with rows × steps."""
    now = now or market_now()
    steps = [now - timedelta(minutes=step_minutes * k) for k in range(hours * 60 // step_minutes, -1, -1)]
    regions = {}
    listings = Listing.objects.values_list(
        "region__code",
        "region__is_west",
        "gpu_count",
        "price_per_gpu_hour",
        "created_at",
        "available_from",
        "available_until",
        "status",
        "updated_at",
    )
    series: dict[str, _RegionSeries] = {}
    listed_price: dict[str, list[Decimal]] = {}
    for code, is_west, gpus, price, created, start, until, status, updated in listings:
        regions[code] = is_west
        line = series.setdefault(code, _RegionSeries([0] * len(steps), [0] * len(steps)))
        gone = updated if status == Listing.Status.WITHDRAWN else until
        for k, t in enumerate(steps):
            line.listed[k] += gpus if max(created, start) <= t < gone else 0
        if status == Listing.Status.ACTIVE and until > now:
            acc = listed_price.setdefault(code, [Decimal(0), Decimal(0)])
            acc[0], acc[1] = acc[0] + price * gpus, acc[1] + gpus
    matches = Match.objects.filter(status__in=PAID_STATUSES).values_list(
        "listing__region__code",
        "gpus",
        "price_per_gpu_hour",
        "subsidy_per_gpu_hour",
        "created_at",
        "starts_at",
        "ends_at",
    )
    gpu_hours = {True: Decimal(0), False: Decimal(0)}
    matched_price: dict[str, list[Decimal]] = {}
    for code, gpus, gross_price, subsidy, created, starts, ends in matches:
        price = buyer_rate(price_per_gpu_hour=gross_price, subsidy_per_gpu_hour=subsidy)
        line = series.setdefault(code, _RegionSeries([0] * len(steps), [0] * len(steps)))
        for k, t in enumerate(steps):
            line.matched[k] += gpus if created <= t < ends else 0
        hours_booked = gpus * hours_of(ends - starts)
        gpu_hours[bool(regions.get(code))] += hours_booked
        acc = matched_price.setdefault(code, [Decimal(0), Decimal(0)])
        acc[0], acc[1] = acc[0] + price * hours_booked, acc[1] + hours_booked
    codes = sorted(series, key=lambda c: (-max(series[c].listed, default=0), c))
    return MonitorCharts(
        labels=[t.strftime("%H:%M") for t in steps],
        times=[t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") for t in steps],
        regions=codes,
        series={c: {"idle": _idle(series[c]), "matched": series[c].matched} for c in codes},
        west_gpu_hours=gpu_hours[True],
        other_gpu_hours=gpu_hours[False],
        avg_matched_price={c: _average(matched_price.get(c)) for c in codes},
        avg_listed_price={c: _average(listed_price.get(c)) for c in codes},
    )


def _idle(line: _RegionSeries) -> list[int]:
    return [max(listed - matched, 0) for listed, matched in zip(line.listed, line.matched, strict=True)]


def _average(acc: list[Decimal] | None) -> str | None:
    return None if not acc or not acc[1] else str((acc[0] / acc[1]).quantize(FEN))


@dataclass(frozen=True)
class UnservedRow:
    """Replicas of a still-open request that the latest round of its shard could not place."""

    request: BuyerRequest
    replicas: int
    reason: str
    run: MatchingRun


def _latest_runs() -> list[MatchingRun]:
    """Each shard's latest succeeded round, newest first. Two queries."""
    latest = MatchingRun.objects.filter(status=MatchingRun.Status.SUCCEEDED).values("shard").annotate(last=Max("id"))
    return list(MatchingRun.objects.filter(pk__in=[row["last"] for row in latest]).order_by("-id"))


def unserved_requests(*, limit: int = 100) -> list[UnservedRow]:
    """Per shard, the latest succeeded round's unserved entries whose request is still open.
    Three queries."""
    runs = _latest_runs()
    wanted = [(run, entry) for run in runs for entry in run.unserved][:limit]
    open_requests = BuyerRequest.objects.select_related("gpu_model", "origin", "buyer").filter(
        pk__in=[entry["request"] for _, entry in wanted], status__in=BuyerRequest.OPEN_STATUSES
    )
    by_id = {request.pk: request for request in open_requests}
    return [
        UnservedRow(request=by_id[entry["request"]], replicas=entry["replicas"], reason=entry["reason"], run=run)
        for run, entry in wanted
        if entry["request"] in by_id
    ]


@dataclass(frozen=True)
class LeftOutRow:
    """A row a shard's latest round left out: ``kind`` "request" or "listing", its id, why."""

    kind: str
    id: int
    reason: str
    run: MatchingRun


def rows_left_out(*, limit: int = 100) -> list[LeftOutRow]:
    """Per shard, the rows its latest succeeded round left out, and why. Two queries."""
    rows = [LeftOutRow(row["kind"], row["id"], row["reason"], run) for run in _latest_runs() for row in run.left_out]
    return rows[:limit]


# --- vouchers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramSpend:
    """A voucher programme with what it has paid out (reserved, less released) against its budget."""

    program: VoucherProgram
    spent: Decimal

    @property
    def share_spent(self) -> float:
        return float(self.spent / self.program.budget)


def voucher_spend(*, user, provider: Organisation | None) -> list[ProgramSpend]:
    """The programmes ``user`` manages (``voucher_programs_for``) with their spend; the balance is
    kept by the voucher services under the programme's row lock, so spend = budget − balance.
    Four queries."""
    programs = voucher_programs_for(user, provider)
    return [ProgramSpend(program=p, spent=p.budget - p.remaining_budget) for p in programs]
