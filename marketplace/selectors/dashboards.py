"""Reads behind the web pages: the capacity board, the provider's and the buyer's pages (the admin
match monitor's are in ``selectors.monitor``). Each costs a constant number of queries whatever the number of rows.

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

from marketplace.market_time import market_now
from marketplace.models import (
    GpuModel,
    Listing,
    Match,
    Organisation,
    Region,
    Rtt,
)
from marketplace.money import FEN, FOUR_PLACES, buyer_charge, buyer_rate
from marketplace.reliability import Reliability
from marketplace.selectors.market import capacity_by_region, with_free_gpus
from marketplace.selectors.prices import latest_prices
from marketplace.selectors.reliability import reliability_index
from matching.latency import LatencyClass, latency_class_of

#: Matches that hold (or held) GPUs and are paid for.
PAID_STATUSES = (Match.Status.RESERVED, Match.Status.RUNNING, Match.Status.COMPLETED)


def hours_of(delta: timedelta) -> Decimal:
    """A span in hours (0 for a negative one), exact as a ``Decimal``."""
    return Decimal(max(delta.total_seconds(), 0)) / Decimal(3600)


def accrued(*, rate: Decimal, gpus: int, starts_at: datetime, ends_at: datetime, now: datetime) -> Decimal:
    """``rate`` CNY per GPU-hour × ``gpus`` over the part of [starts_at, ends_at) before ``now``."""
    return rate * gpus * hours_of(min(now, ends_at) - starts_at)


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
    #: Of ``listings``, those a provider agent runs (the rest are clock-driven).
    agent_listings: int = 0
    #: The highest 30-day reliability among ``listings`` (``marketplace.reliability``); None when
    #: none of them has a score (too little history), or there are none.
    best_reliability: Decimal | None = None
    #: Of ``listings``, those with a score.
    scored_listings: int = 0
    #: The region's latest clearing price of the board's GPU model (``selectors.prices``); None
    #: without a model, or before any round priced it there.
    clearing_price_per_gpu_hour: Decimal | None = None


def capacity_board(
    *, origin: Region, gpu_model: GpuModel | None = None, now: datetime | None = None
) -> list[BoardRegion]:
    """Every region with its idle GPUs (of ``gpu_model``, else of every model) and its RTT and
    latency class from ``origin``, the best reliability of its idle listings and, of ``gpu_model``,
    its latest clearing price; nearest first. Seven queries."""
    now = now or market_now()
    free: dict[str, list] = {}
    for row in capacity_by_region(origin=origin, gpu_model=gpu_model, now=now):
        free.setdefault(row.region, []).append(row)
    ids = [pk for rows in free.values() for row in rows for pk in row.listing_ids]
    scores = reliability_index(listing_ids=ids, now=now).by_listing
    rtts = {
        code: float(rtt)
        for code, rtt in Rtt.objects.filter(source_region=origin).values_list("target_region__code", "rtt_ms")
    }
    clearing = (
        {} if gpu_model is None else {row.region: row.price_per_gpu_hour for row in latest_prices(gpu_model=gpu_model)}
    )
    board = []
    for region in Region.objects.all():
        rows, rtt = free.get(region.code, []), rtts.get(region.code)
        scored = [score for row in rows for pk in row.listing_ids if (score := scores[pk].score) is not None]
        board.append(
            BoardRegion(
                region=region,
                rtt_ms=rtt,
                latency_class=None if rtt is None else latency_class_of(rtt),
                free_gpus=sum(row.free_gpus for row in rows),
                listings=sum(row.listings for row in rows),
                agent_listings=sum(row.agent_listings for row in rows),
                min_price_per_gpu_hour=min((row.min_price_per_gpu_hour for row in rows), default=None),
                best_reliability=max(scored, default=None),
                scored_listings=len(scored),
                clearing_price_per_gpu_hour=clearing.get(region.code),
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
    #: Its 30-day reliability (``marketplace.reliability``).
    reliability: Reliability | None = None
    #: Active, but its window has passed (the lifecycle sweep has not closed it yet): over.
    ended: bool = False

    @property
    def state(self) -> str:
        """What the page calls it: "ended" for an active listing whose window has passed, else its
        status. Only a "live" (active, not ended) listing can be edited, withdrawn or reported."""
        return "ended" if self.ended else self.listing.status

    @property
    def live(self) -> bool:
        return self.state == Listing.Status.ACTIVE

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
    #: The provider's 30-day reliability, over all its listings.
    reliability: Reliability | None = None

    @property
    def gpus_listed(self) -> int:
        return sum(u.listing.gpu_count for u in self.listings if u.live)

    @property
    def gpus_allocated(self) -> int:
        return sum(u.listing.allocated_gpus for u in self.listings if u.live)


def provider_dashboard(
    *, provider: Organisation, now: datetime | None = None, match_limit: int = 50
) -> ProviderDashboard:
    """``provider``'s listings (newest first) with utilisation and earnings (each ``ended`` once its
    window has passed at ``now``, the market's time, and then not in the totals), its latest
    matches, and its totals. Earnings are the listed price × GPU-hours (a subsidy is paid by its sponsor,
    not taken from the provider); its and each listing's reliability. Four queries."""
    now = now or market_now()
    listings = list(
        with_free_gpus(Listing.objects.select_related("region", "gpu_model").filter(provider=provider)).order_by("-id")
    )
    scores = reliability_index(listing_ids=[x.pk for x in listings], provider_ids=[provider.pk], now=now)
    money: dict[int, list] = {}
    rows = Match.objects.filter(listing__provider=provider, status__in=PAID_STATUSES).values_list(
        "listing_id", "status", "gpus", "price_per_gpu_hour", "starts_at", "ends_at"
    )
    for listing_id, status, gpus, price, starts_at, ends_at in rows:
        entry = money.setdefault(listing_id, [0, Decimal(0), Decimal(0)])
        entry[0] += status in Match.LIVE_STATUSES
        entry[1] += accrued(rate=price, gpus=gpus, starts_at=starts_at, ends_at=ends_at, now=now)
        entry[2] += price * gpus * hours_of(ends_at - starts_at)
    usages = [
        ListingUsage(
            listing=listing,
            live_matches=money.get(listing.pk, [0])[0],
            earned_so_far=money.get(listing.pk, [0, Decimal(0)])[1].quantize(FEN),
            booked=money.get(listing.pk, [0, 0, Decimal(0)])[2].quantize(FEN),
            reliability=scores.by_listing[listing.pk],
            ended=listing.status == Listing.Status.ACTIVE and listing.available_until <= now,
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
        reliability=scores.by_provider[provider.pk],
    )


def provider_listing(*, provider: Organisation, listing_id: int) -> Listing | None:
    """One of ``provider``'s own listings (any status), or None: another's does not exist for it."""
    return (
        with_free_gpus(Listing.objects.select_related("region", "gpu_model"))
        .filter(provider=provider, pk=listing_id)
        .first()
    )


# --- quotes: what the buyer would pay (the buyer's requests page is in selectors.buyer_pages) -----


@dataclass(frozen=True)
class BuyerPays:
    """What the buyer would pay for some placement lines over a duration: ``total`` in fen, by the
    settlement's rule per line (``money.buyer_charge``), and ``per_gpu_hour`` (price − subsidy, to
    four places; for several lines, their total over their GPU-hours)."""

    total: Decimal
    per_gpu_hour: Decimal
    subsidy: Decimal
    gross: Decimal


def buyer_pays_of(assignments, *, duration_hours: int) -> BuyerPays:
    """What the buyer pays for ``assignments`` (``matching.problem.Assignment``) held
    ``duration_hours``: each line is charged as its settlement would be, then summed."""
    gross = subsidy = pays = Decimal(0)
    gpu_hours = 0
    for a in assignments:
        hours = Decimal(a.gpus * duration_hours)
        line = buyer_charge(
            price_per_gpu_hour=a.price_per_gpu_hour, subsidy_per_gpu_hour=a.subsidy_per_gpu_hour, gpu_hours=hours
        )
        gross, subsidy, pays = gross + line[0], subsidy + line[1], pays + line[2]
        gpu_hours += a.gpus * duration_hours
    if len(assignments) == 1:
        only = assignments[0]
        rate = buyer_rate(price_per_gpu_hour=only.price_per_gpu_hour, subsidy_per_gpu_hour=only.subsidy_per_gpu_hour)
    else:
        rate = pays / gpu_hours if gpu_hours else Decimal(0)
    return BuyerPays(
        total=pays.quantize(FEN),
        per_gpu_hour=rate.quantize(FOUR_PLACES),
        subsidy=subsidy.quantize(FEN),
        gross=gross.quantize(FEN),
    )


@dataclass(frozen=True)
class QuoteSummary:
    """A quote's money for the buyer over the whole duration: what it pays (``rent``, price −
    subsidy by the settlement's rule) and the subsidy, for the placement, each of its lines (in
    ``quote.assignments``' order) and each frontier point (in ``quote.frontier``'s order)."""

    gpus_placed: int
    rent: Decimal
    subsidy: Decimal
    placement: BuyerPays
    lines: list[BuyerPays]
    frontier: list[BuyerPays]


def quote_summary(quote, *, duration_hours: int) -> QuoteSummary:
    """What ``quote`` (a ``matching.quote.Quote``) would cost the buyer over ``duration_hours``.
    No queries."""
    placement = buyer_pays_of(quote.assignments, duration_hours=duration_hours)
    return QuoteSummary(
        gpus_placed=sum(a.gpus for a in quote.assignments),
        rent=placement.total,
        subsidy=placement.subsidy,
        placement=placement,
        lines=[buyer_pays_of((a,), duration_hours=duration_hours) for a in quote.assignments],
        frontier=[buyer_pays_of(p.assignments, duration_hours=duration_hours) for p in quote.frontier],
    )
