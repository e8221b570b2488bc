"""Reads behind the web pages: the capacity board, the provider's and the buyer's pages, the admin
match monitor. Each costs a constant number of queries whatever the number of rows.

Money sums are ``Decimal`` CNY rounded to fen. GPU-hours of a match are ``gpus × (ends_at −
starts_at)``; "so far" means accrued up to ``now``. These page figures count reserved, running
and completed matches only; what a cancelled or failed match billed for the hours it ran is in its
settlement line (``selectors.statement_for``), so the monthly statement is the authoritative sum.
Query counts below leave out the one query that reads the market clock when ``now`` is not given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Max, Prefetch, Sum

from marketplace.market_time import market_now
from marketplace.models import (
    BuyerRequest,
    GpuModel,
    Listing,
    Match,
    MatchingRun,
    Organisation,
    Region,
    Rtt,
    VoucherProgram,
)
from marketplace.money import FEN
from marketplace.selectors.market import capacity_by_region, with_free_gpus
from marketplace.selectors.vouchers import voucher_programs_for
from matching.latency import LatencyClass, latency_class_of

#: Matches that hold (or held) GPUs and are paid for.
PAID_STATUSES = (Match.Status.RESERVED, Match.Status.RUNNING, Match.Status.COMPLETED)


def _hours(delta: timedelta) -> Decimal:
    return Decimal(max(delta.total_seconds(), 0)) / Decimal(3600)


def _accrued(*, rate: Decimal, gpus: int, starts_at: datetime, ends_at: datetime, now: datetime) -> Decimal:
    """``rate`` CNY per GPU-hour × ``gpus`` over the part of [starts_at, ends_at) before ``now``."""
    return rate * gpus * _hours(min(now, ends_at) - starts_at)


# --- capacity board -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardRegion:
    """One region on the capacity board, seen from the board's origin city."""

    region: Region
    rtt_ms: float | None
    latency_class: LatencyClass | None
    free_gpus: int = 0
    listings: int = 0
    min_price_per_gpu_hour: Decimal | None = None


def capacity_board(
    *, origin: Region, gpu_model: GpuModel | None = None, now: datetime | None = None
) -> list[BoardRegion]:
    """Every region with its idle GPUs (of ``gpu_model``, else of every model) and its RTT and
    latency class from ``origin``; nearest first. Four queries."""
    free: dict[str, list] = {}
    for row in capacity_by_region(origin=origin, gpu_model=gpu_model, now=now):
        free.setdefault(row.region, []).append(row)
    rtts = {
        code: float(rtt)
        for code, rtt in Rtt.objects.filter(source_region=origin).values_list("target_region__code", "rtt_ms")
    }
    board = []
    for region in Region.objects.all():
        rows, rtt = free.get(region.code, []), rtts.get(region.code)
        board.append(
            BoardRegion(
                region=region,
                rtt_ms=rtt,
                latency_class=None if rtt is None else latency_class_of(rtt),
                free_gpus=sum(row.free_gpus for row in rows),
                listings=sum(row.listings for row in rows),
                min_price_per_gpu_hour=min((row.min_price_per_gpu_hour for row in rows), default=None),
            )
        )
    return sorted(board, key=lambda item: (item.rtt_ms is None, item.rtt_ms or 0, item.region.code))


# --- provider -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListingUsage:
    """A provider's listing (``region``, ``gpu_model`` loaded, ``free`` annotated) and its money."""

    listing: Listing
    live_matches: int
    earned_so_far: Decimal
    booked: Decimal

    @property
    def utilisation(self) -> float:
        """Share of the listing's GPUs held by matches, 0–1."""
        return self.listing.allocated_gpus / self.listing.gpu_count


@dataclass(frozen=True)
class ProviderDashboard:
    listings: list[ListingUsage]
    recent_matches: list[Match]
    earned_so_far: Decimal
    booked: Decimal

    @property
    def gpus_listed(self) -> int:
        return sum(u.listing.gpu_count for u in self.listings if u.listing.status == Listing.Status.ACTIVE)

    @property
    def gpus_allocated(self) -> int:
        return sum(u.listing.allocated_gpus for u in self.listings if u.listing.status == Listing.Status.ACTIVE)


def provider_dashboard(
    *, provider: Organisation, now: datetime | None = None, match_limit: int = 50
) -> ProviderDashboard:
    """``provider``'s listings (newest first) with utilisation and earnings, its latest matches,
    and its totals. Earnings are the listed price × GPU-hours (a subsidy is paid by its sponsor,
    not taken from the provider). Three queries."""
    now = now or market_now()
    listings = list(
        with_free_gpus(Listing.objects.select_related("region", "gpu_model").filter(provider=provider)).order_by("-id")
    )
    money: dict[int, list] = {}
    rows = Match.objects.filter(listing__provider=provider, status__in=PAID_STATUSES).values_list(
        "listing_id", "status", "gpus", "price_per_gpu_hour", "starts_at", "ends_at"
    )
    for listing_id, status, gpus, price, starts_at, ends_at in rows:
        entry = money.setdefault(listing_id, [0, Decimal(0), Decimal(0)])
        entry[0] += status in Match.LIVE_STATUSES
        entry[1] += _accrued(rate=price, gpus=gpus, starts_at=starts_at, ends_at=ends_at, now=now)
        entry[2] += price * gpus * _hours(ends_at - starts_at)
    usages = [
        ListingUsage(
            listing=listing,
            live_matches=money.get(listing.pk, [0])[0],
            earned_so_far=money.get(listing.pk, [0, Decimal(0)])[1].quantize(FEN),
            booked=money.get(listing.pk, [0, 0, Decimal(0)])[2].quantize(FEN),
        )
        for listing in listings
    ]
    recent = Match.objects.select_related(
        "listing__region", "listing__gpu_model", "request__origin", "request__buyer"
    ).filter(listing__provider=provider)[:match_limit]
    return ProviderDashboard(
        listings=usages,
        recent_matches=list(recent),
        earned_so_far=sum((u.earned_so_far for u in usages), Decimal(0)),
        booked=sum((u.booked for u in usages), Decimal(0)),
    )


def provider_listing(*, provider: Organisation, listing_id: int) -> Listing | None:
    """One of ``provider``'s own listings (any status), or None: another's does not exist for it."""
    return (
        with_free_gpus(Listing.objects.select_related("region", "gpu_model"))
        .filter(provider=provider, pk=listing_id)
        .first()
    )


# --- buyer --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuyerDashboard:
    requests: list[BuyerRequest]
    spent_so_far: Decimal
    booked: Decimal


def buyer_dashboard(*, buyer: Organisation, now: datetime | None = None, limit: int = 100) -> BuyerDashboard:
    """``buyer``'s latest requests (newest first) with their matches (``explanation`` included)
    prefetched, and what it pays: (price − subsidy) × GPU-hours. Two queries."""
    now = now or market_now()
    matches = Match.objects.select_related("listing__region", "listing__provider", "listing__gpu_model").order_by("id")
    requests = list(
        BuyerRequest.objects.select_related("gpu_model", "origin", "voucher__program")
        .filter(buyer=buyer)
        .prefetch_related(Prefetch("matches", queryset=matches))
        .order_by("-id")[:limit]
    )
    spent, booked = Decimal(0), Decimal(0)
    for request in requests:
        for match in request.matches.all():
            if match.status in PAID_STATUSES:
                rate = match.price_per_gpu_hour - match.subsidy_per_gpu_hour
                spent += _accrued(rate=rate, gpus=match.gpus, starts_at=match.starts_at, ends_at=match.ends_at, now=now)
                booked += rate * match.gpus * _hours(match.ends_at - match.starts_at)
    return BuyerDashboard(requests=requests, spent_so_far=spent.quantize(FEN), booked=booked.quantize(FEN))


@dataclass(frozen=True)
class QuoteSummary:
    """A quote's money for the buyer: rent (price − subsidy) and subsidy over the whole duration."""

    gpus_placed: int
    rent: Decimal
    subsidy: Decimal


def quote_summary(quote, *, duration_hours: int) -> QuoteSummary:
    """What ``quote`` (a ``matching.quote.Quote``) would cost the buyer over ``duration_hours``."""
    gpu_hours = [(a, a.gpus * duration_hours) for a in quote.assignments]
    return QuoteSummary(
        gpus_placed=sum(a.gpus for a in quote.assignments),
        rent=sum(((a.price_per_gpu_hour - a.subsidy_per_gpu_hour) * h for a, h in gpu_hours), Decimal(0)).quantize(FEN),
        subsidy=sum((a.subsidy_per_gpu_hour * h for a, h in gpu_hours), Decimal(0)).quantize(FEN),
    )


# --- admin match monitor ------------------------------------------------------------------------


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
    GPU-hour by region (matched: weighted by GPU-hours; listed: by GPUs of active listings).
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
        "listing__region__code", "gpus", "price_per_gpu_hour", "created_at", "starts_at", "ends_at"
    )
    gpu_hours = {True: Decimal(0), False: Decimal(0)}
    matched_price: dict[str, list[Decimal]] = {}
    for code, gpus, price, created, starts, ends in matches:
        line = series.setdefault(code, _RegionSeries([0] * len(steps), [0] * len(steps)))
        for k, t in enumerate(steps):
            line.matched[k] += gpus if created <= t < ends else 0
        hours_booked = gpus * _hours(ends - starts)
        gpu_hours[bool(regions.get(code))] += hours_booked
        acc = matched_price.setdefault(code, [Decimal(0), Decimal(0)])
        acc[0], acc[1] = acc[0] + price * hours_booked, acc[1] + hours_booked
    codes = sorted(series, key=lambda c: (-max(series[c].listed, default=0), c))
    return MonitorCharts(
        labels=[t.strftime("%H:%M") for t in steps],
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


def unserved_requests(*, limit: int = 100) -> list[UnservedRow]:
    """Per shard, the latest succeeded round's unserved entries whose request is still open.
    Three queries."""
    latest = MatchingRun.objects.filter(status=MatchingRun.Status.SUCCEEDED).values("shard").annotate(last=Max("id"))
    runs = list(MatchingRun.objects.filter(pk__in=[row["last"] for row in latest]).order_by("-id"))
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
