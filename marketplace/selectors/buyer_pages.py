"""Reads behind the buyer's pages: a page of its requests with their matches, what each match costs
the buyer, why an open request is not (fully) placed and what would help, and a cheap fingerprint
that says whether any of that changed (the page polls it). Constant queries per page.

Money is what the buyer pays: price − subsidy, charged as the settlement charges it
(``money.buyer_charge``); the engine's latency-weighted cost is a score and is named so.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Count, Max, Prefetch, Q

from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, Match, MatchingRun, Organisation, Region, Voucher
from marketplace.money import FEN, buyer_charge, buyer_rate, gpu_hours_held
from marketplace.selectors.dashboards import PAID_STATUSES, accrued
from marketplace.selectors.vouchers import vouchers_of
from matching.latency import LatencyClass, latency_class_of
from matching.problem import Blocked, blocked_other

#: A page of the buyer's requests.
PAGE_SIZE = 25
#: The orders the page offers, by their name in the query string.
SORTS = {
    "newest": ("-id",),
    "oldest": ("id",),
    "price": ("-max_price_per_gpu_hour", "-id"),
}
#: The status filter's values: a request status, or "open" for open and partially matched.
STATUS_FILTERS = ("open", "partially_matched", "matched", "cancelled", "expired")


@dataclass(frozen=True)
class Unserved:
    """Why the latest round left replicas of an open request unplaced, sorted into what would help.

    ``kind``: ``none_listed`` (no such GPU listed), ``node_size`` (no node that large), ``too_far``
    (none within the bound: ``nearest`` at ``nearest_rtt_ms``, ``relax_to`` the tightest class
    that reaches it), ``price`` (all within the bound cost more: ``cheapest`` is the cap that
    would do), ``reliability``, ``window`` (none free in time), ``node_free`` (no node with that
    many free GPUs), ``capacity`` (taken by other requests), ``other``. ``reason`` is the engine's
    own words."""

    replicas: int
    reason: str
    kind: str
    cheapest: Decimal | None = None
    nearest: Region | None = None
    nearest_rtt_ms: float | None = None
    relax_to: LatencyClass | None = None
    #: An inference request's output tokens/s left unplaced (the round records them); None else.
    tokens_per_second: float | None = None


def unserved_of(reason: str, blocked: Blocked | None, *, replicas: int, regions: dict[str, Region]) -> Unserved:
    """The engine's unserved ``reason`` and its ``blocked`` data (:class:`matching.problem.Blocked`;
    ``None`` in runs recorded before it existed: kind ``other``) sorted by what would help."""
    blocked = blocked or blocked_other()
    kind = blocked["kind"]
    if kind == "too_far":
        rtt = blocked["rtt_ms"]
        region = regions.get(blocked["region"])
        return Unserved(replicas, reason, kind, nearest=region, nearest_rtt_ms=rtt, relax_to=latency_class_of(rtt))
    if kind == "price":
        return Unserved(replicas, reason, kind, cheapest=Decimal(blocked["cheapest"]))
    return Unserved(replicas, reason, kind)


@dataclass(frozen=True)
class MatchMoney:
    """A match (its listing's region and provider loaded) and what it costs the buyer."""

    match: Match
    #: Price − subsidy per GPU-hour.
    pays_per_gpu_hour: Decimal
    #: What the whole match charges the buyer if it runs its duration (its settlement's buyer_pays
    #: then; a match that ends early is charged for the hours it held).
    pays_total: Decimal


@dataclass(frozen=True)
class RequestRow:
    request: BuyerRequest
    matches: list[MatchMoney]
    #: Replicas on reserved or running matches now.
    live_replicas: int
    unserved: Unserved | None = None
    #: Live matches a cancel would end (``request_to_cancel`` only): those being metered, settled
    #: for the hours they held, and those not yet (released at no charge). See :func:`metered_from`.
    started: int = 0
    not_started: int = 0
    #: When the look-ahead offers it to the rounds again, while it holds it (:func:`held_until_of`).
    held_until: datetime | None = None

    @property
    def is_open(self) -> bool:
        """Whether it can still be cancelled."""
        return self.request.status in (*BuyerRequest.OPEN_STATUSES, BuyerRequest.Status.MATCHED)


@dataclass(frozen=True)
class BuyerRequestsPage:
    page: Page
    rows: list[RequestRow]
    status: str
    sort: str
    fingerprint: str
    #: Every region by code: explanations name regions by code.
    regions: dict[str, Region] = field(default_factory=dict)


def match_money(match: Match) -> MatchMoney:
    """What ``match`` charges its buyer over its whole planned window, by the settlement's rules."""
    _, _, pays = buyer_charge(
        price_per_gpu_hour=match.price_per_gpu_hour,
        subsidy_per_gpu_hour=match.subsidy_per_gpu_hour,
        gpu_hours=gpu_hours_held(gpus=match.gpus, start=match.starts_at, end=match.ends_at),
    )
    rate = buyer_rate(price_per_gpu_hour=match.price_per_gpu_hour, subsidy_per_gpu_hour=match.subsidy_per_gpu_hour)
    return MatchMoney(match, rate, pays)


@dataclass(frozen=True)
class BuyerTotals:
    #: What reserved, running and completed matches have accrued up to now (price − subsidy).
    spent_so_far: Decimal
    #: What they charge over their whole windows.
    booked: Decimal


def buyer_totals(*, buyer: Organisation, now: datetime | None = None) -> BuyerTotals:
    """What ``buyer`` pays across all its requests' paid matches (``PAID_STATUSES``). One query."""
    now = now or market_now()
    spent, booked = Decimal(0), Decimal(0)
    for match in Match.objects.filter(request__buyer=buyer, status__in=PAID_STATUSES).only(
        "gpus", "price_per_gpu_hour", "subsidy_per_gpu_hour", "starts_at", "ends_at"
    ):
        rate = buyer_rate(price_per_gpu_hour=match.price_per_gpu_hour, subsidy_per_gpu_hour=match.subsidy_per_gpu_hour)
        spent += accrued(rate=rate, gpus=match.gpus, starts_at=match.starts_at, ends_at=match.ends_at, now=now)
        booked += match_money(match).pays_total
    return BuyerTotals(spent_so_far=spent.quantize(FEN), booked=booked)


def _filtered(buyer: Organisation, status: str):
    requests = BuyerRequest.objects.filter(buyer=buyer)
    if status == "open":
        return requests.filter(status__in=BuyerRequest.OPEN_STATUSES)
    if status in STATUS_FILTERS:
        return requests.filter(status=status)
    return requests


def _latest_unserved(request_ids: list[int]) -> dict[int, dict]:
    """Each request's entry in the latest succeeded round of its shard that left it unserved. Two queries."""
    latest = MatchingRun.objects.filter(status=MatchingRun.Status.SUCCEEDED).values("shard").annotate(last=Max("id"))
    runs = MatchingRun.objects.filter(pk__in=[row["last"] for row in latest]).only("unserved")
    wanted, found = set(request_ids), {}
    for run in runs:
        for entry in run.unserved:
            if entry["request"] in wanted:
                found[entry["request"]] = entry
    return found


def held_until_of(request: BuyerRequest, *, now: Callable[[], datetime]) -> datetime | None:
    """When the look-ahead offers ``request`` to the rounds again, while it holds it for its call:
    its ``held_until`` while it is open and that is after the market time ``now()`` gives (called
    only then, so a page or response without a held request reads no clock), else None; always
    None with the look-ahead off (a value a round wrote before it was turned off no longer holds)."""
    until = request.held_until
    if until is None or not settings.MATCHING_LOOKAHEAD or request.status not in BuyerRequest.OPEN_STATUSES:
        return None
    return until if until > now() else None


def buyer_requests_page(
    *, buyer: Organisation, status: str = "", sort: str = "newest", page: int | str = 1
) -> BuyerRequestsPage:
    """A page of ``buyer``'s requests (``PAGE_SIZE``), filtered by ``status`` (see
    :data:`STATUS_FILTERS`; anything else: all) and ordered by ``sort`` (:data:`SORTS`; anything
    else: newest), each with its matches and money, and for an open one why the latest round left
    replicas unplaced, or until when the look-ahead holds it. An out-of-range page is the last.
    Nine queries (ten when a request on the page was held: the market's time)."""
    sort = sort if sort in SORTS else "newest"
    status = status if status in STATUS_FILTERS else ""
    matches = Match.objects.select_related("listing__region", "listing__provider", "listing__gpu_model").order_by("id")
    requests = (
        _filtered(buyer, status)
        .select_related("gpu_model", "origin", "voucher__program", "inference__llm_model")
        .prefetch_related(Prefetch("matches", queryset=matches))
        .order_by(*SORTS[sort])
    )
    current = Paginator(requests, PAGE_SIZE).get_page(page)
    page_requests = list(current.object_list)
    open_ids = [r.pk for r in page_requests if r.status in BuyerRequest.OPEN_STATUSES]
    unserved = _latest_unserved(open_ids) if open_ids else {}
    regions = {region.code: region for region in Region.objects.all()}
    rows = []
    now = functools.cache(market_now)
    for request in page_requests:
        request_matches = list(request.matches.all())
        entry = unserved.get(request.pk)
        rows.append(
            RequestRow(
                request=request,
                matches=[match_money(m) for m in request_matches],
                live_replicas=sum(m.replicas for m in request_matches if m.status in Match.LIVE_STATUSES),
                unserved=None
                if entry is None
                else replace(
                    unserved_of(entry["reason"], entry.get("blocked"), replicas=entry["replicas"], regions=regions),
                    tokens_per_second=entry.get("tokens_per_second"),
                ),
                held_until=held_until_of(request, now=now),
            )
        )
    return BuyerRequestsPage(current, rows, status, sort, buyer_fingerprint(buyer=buyer), regions)


def buyer_fingerprint(*, buyer: Organisation) -> str:
    """A short digest that changes whenever anything on the buyer's requests page may have: a
    request added or changed, a match made, started, ready or ended, a round run. Three queries."""
    requests = BuyerRequest.objects.filter(buyer=buyer).aggregate(n=Count("id"), changed=Max("updated_at"))
    matches = Match.objects.filter(request__buyer=buyer).aggregate(
        n=Count("id"),
        running=Count("id", filter=Q(status=Match.Status.RUNNING)),
        ended=Max("ended_at"),
        ready=Max("ready_at"),
    )
    run = MatchingRun.objects.aggregate(last=Max("id"))
    text = repr((sorted(requests.items()), sorted(matches.items()), run["last"]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def metered_from(match: Match) -> datetime | None:
    """Where the match's metering starts (``listing`` loaded): at ready, but never before its
    planned start; on a clock-driven listing at its planned start; None for a match an agent never
    said ready (nothing ran, nothing is charged). The settlement meters from here."""
    if match.ready_at is not None:
        return max(match.ready_at, match.starts_at)
    if match.listing.agent_since is None:
        return match.starts_at
    return None


def request_to_cancel(*, buyer: Organisation, request_id: int, now: datetime | None = None) -> RequestRow | None:
    """One of ``buyer``'s requests with its matches, for the cancel confirmation: how many live
    matches a cancel now would settle for hours held, and how many it would release free. None if
    not ``buyer``'s. Two queries."""
    now = now or market_now()
    request = (
        BuyerRequest.objects.select_related("gpu_model", "origin")
        .prefetch_related(Prefetch("matches", queryset=Match.objects.select_related("listing__region")))
        .filter(buyer=buyer, pk=request_id)
        .first()
    )
    if request is None:
        return None
    request_matches = list(request.matches.all())
    live = [m for m in request_matches if m.status in Match.LIVE_STATUSES]
    started = sum(_started(m, now) for m in live)
    return RequestRow(
        request=request,
        matches=[match_money(m) for m in request_matches],
        live_replicas=sum(m.replicas for m in live),
        started=started,
        not_started=len(live) - started,
    )


def _started(match: Match, now: datetime) -> bool:
    start = metered_from(match)
    return start is not None and start < now


def usable_vouchers(*, buyer: Organisation, now: datetime | None = None) -> list:
    """``buyer``'s vouchers that can pay now: active, inside their programme's window, with value
    left (``remaining_value`` set, as ``vouchers_of``); the request form's picker. Four queries."""
    now = now or market_now()
    return [
        voucher
        for voucher in vouchers_of(buyer)
        if voucher.status == Voucher.Status.ACTIVE
        and voucher.program.valid_from <= now < voucher.program.valid_until
        and voucher.remaining_value > 0  # type: ignore[attr-defined]
    ]
