"""The engine's input: a snapshot of open requests and free capacity, per node; quotes.

The snapshot reads each row through the same rules it was accepted by (``demand``, ``supply``)
and leaves out a row that breaks one, or that cannot be read at all, with the reason: one bad row
costs its owner a round, never the shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q
from django.utils import translation

from marketplace.demand import demand_request_build, demand_terms_check
from marketplace.eligibility import voucher_covers, voucher_usable
from marketplace.errors import DomainError
from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, Listing, Match, MatchingRun, Organisation
from marketplace.selectors.market import listing_energy_cost, rtt_map, with_free_gpus
from marketplace.selectors.prices import recent_rents
from marketplace.selectors.reliability import reliability_index
from marketplace.selectors.spend import requests_spend_used, spend_placeable_replicas
from marketplace.selectors.vouchers import buyer_year_net, free_hours_used, voucher_terms
from marketplace.supply import listing_terms_check
from matching.costs import default_latency_weight
from matching.lookahead import HOLD_HORIZON, held, reservations_by_listing
from matching.problem import ListingSpec, Problem, RequestSpec, RunningInterruptible
from matching.quarantine import LeftOut, plan_quarantined
from matching.quote import quote

#: The language of texts a round stores: the rules' messages become data there, written once.
STORED_LANGUAGE = "en"


def node_free_of(listing: Listing, live_nodes: list[tuple[int, list[int]]]) -> tuple[int, ...]:
    """Free GPUs per node of ``listing`` given its live matches' ``(gpus_per_replica, nodes)``."""
    free = [listing.gpus_per_node] * listing.node_count
    for node in listing.failed_nodes:
        free[node] = 0  # a failed node is offered to nobody
    for gpus_per_replica, nodes in live_nodes:
        for node in nodes:
            free[node] -= gpus_per_replica
    return tuple(free)


def live_nodes_by_listing(listing_ids) -> dict[int, list[tuple[int, list[int]]]]:
    """``{listing_id: [(gpus_per_replica, nodes), …]}`` of live matches, in one query."""
    rows = Match.objects.filter(listing_id__in=listing_ids, status__in=Match.LIVE_STATUSES).values_list(
        "listing_id", "gpus_per_replica", "nodes"
    )
    by_listing: dict[int, list[tuple[int, list[int]]]] = {}
    for listing_id, gpus_per_replica, nodes in rows:
        by_listing.setdefault(listing_id, []).append((gpus_per_replica, nodes))
    return by_listing


@dataclass(frozen=True)
class VoucherBalances:
    """Ledger balances of the vouchers some requests carry, as of ``now``: each buyer's net subsidy
    this year per programme, and each voucher's free GPU-hours used."""

    #: The market time the engine plans at: a voucher that cannot pay then plans no subsidy.
    now: datetime
    year_net: dict[tuple[int, int], Decimal] = field(default_factory=dict)
    hours_used: dict[int, Decimal] = field(default_factory=dict)

    @classmethod
    def of(cls, requests, now: datetime) -> VoucherBalances:
        """The balances ``requests``' vouchers need at ``now``, in two queries (none without vouchers)."""
        vouchers = [r.voucher for r in requests if r.voucher_id]
        if not vouchers:
            return cls(now=now)
        pairs = {(v.program_id, v.buyer_id) for v in vouchers if v.buyer_id}
        return cls(
            now=now, year_net=buyer_year_net(pairs, now.year), hours_used=free_hours_used({v.pk for v in vouchers})
        )


def live_matches_on_failed_nodes(*, listing_id: int | None = None) -> list[int]:
    """Ids of live matches with a replica on a failed node (of ``listing_id``, or of any listing);
    one query."""
    suspects = Match.objects.filter(status__in=Match.LIVE_STATUSES)
    if listing_id is not None:
        suspects = suspects.filter(listing_id=listing_id)
    rows = suspects.exclude(listing__failed_nodes=[]).values_list("pk", "nodes", "listing__failed_nodes")
    return [pk for pk, nodes, failed in rows if set(nodes) & set(failed)]


def engine_request_spec(request: BuyerRequest, vouchers: VoucherBalances) -> RequestSpec:
    """The engine's view of a request: what is still to place; needs gpu_model, origin and
    (with a voucher) its programme's eligibility loaded, and ``vouchers``' ledger balances
    (``VoucherBalances.of``: they also give the time its voucher's terms are read at)."""
    bound = request.rtt_bound_ms
    weight = request.latency_weight
    return RequestSpec(
        id=request.pk or 0,  # an unsaved request (a quote) is request 0
        gpu_model=request.gpu_model.code,
        gpus_per_replica=request.gpus_per_replica,
        replicas=request.replicas - request.matched_replicas,
        origin=request.origin.code,
        max_rtt_ms=None if bound is None else float(bound),
        max_price_per_gpu_hour=request.max_price_per_gpu_hour,
        duration_hours=request.duration_hours,
        start_by=request.start_by,
        latency_weight=default_latency_weight(request.latency_class) if weight is None else weight,
        priority=request.priority,
        voucher=voucher_terms(request, vouchers.year_net, vouchers.hours_used, now=vouchers.now),
        min_reliability=None if request.min_reliability is None else float(request.min_reliability),
        interruptible=request.interruptible,
    )


#: What a request needs loaded for ``engine_request_spec``.
REQUEST_SPEC_RELATED = ("gpu_model", "origin", "voucher__program")
REQUEST_SPEC_PREFETCH = (
    "voucher__program__eligible_regions",
    "voucher__program__eligible_providers",
    "voucher__program__eligible_gpu_models",
)


@dataclass(frozen=True)
class EngineSnapshot:
    """One shard's input, and the rows it left out (``matching.quarantine.LeftOut``) with why."""

    problem: Problem
    left_out: tuple[LeftOut, ...] = ()


def engine_listing_specs(listings: list[Listing], *, now: datetime) -> tuple[list[ListingSpec], list[LeftOut]]:
    """The engine's view of listings (region, gpu_model loaded), free GPUs per node and reliability
    at ``now`` included, and the listings it leaves out because they break the rules of ``supply``
    or cannot be read. Two queries."""
    live = live_nodes_by_listing([listing.pk for listing in listings])
    scores = reliability_index(listing_ids=[listing.pk for listing in listings], now=now).by_listing
    specs, left_out = [], []
    # A left-out row's reason is stored (``left_out_reason``, the run's log): English data,
    # whatever language the request that triggered the round speaks.
    with translation.override(STORED_LANGUAGE):
        for listing in listings:
            try:
                listing_terms_check(
                    gpu_count=listing.gpu_count,
                    gpus_per_node=listing.gpus_per_node,
                    price=listing.price_per_gpu_hour,
                    start=listing.available_from,
                    end=listing.available_until,
                    now=None,
                    floor=listing.interruptible_floor_price_per_gpu_hour,
                )
                specs.append(_listing_spec(listing, live.get(listing.pk, []), scores[listing.pk].score))
            except Exception as exc:  # any row that cannot be planned costs only itself
                left_out.append(LeftOut("listing", listing.pk, _why(exc)))
    return specs, left_out


def _listing_spec(listing: Listing, live_nodes: list[tuple[int, list[int]]], score: Decimal | None) -> ListingSpec:
    return ListingSpec(
        id=listing.pk,
        provider_id=listing.provider_id,
        region=listing.region.code,
        gpu_model=listing.gpu_model.code,
        gpus_per_node=listing.gpus_per_node,
        node_free=node_free_of(listing, live_nodes),
        price_per_gpu_hour=listing.price_per_gpu_hour,
        energy_cost_per_gpu_hour=listing_energy_cost(listing),
        available_from=listing.available_from,
        available_until=listing.available_until,
        reliability=None if score is None else float(score),
        interruptible_floor_price_per_gpu_hour=listing.interruptible_floor_price_per_gpu_hour,
    )


def _why(exc: Exception) -> str:
    """A left-out row's reason: the rule it breaks in words, or the error reading it met."""
    if isinstance(exc, DomainError):
        return f"{exc.field}: {exc.message}"[:300]
    return f"could not be read for the engine: {exc!r}"[:300]


def engine_request_specs(requests: list[BuyerRequest], now: datetime) -> tuple[list[RequestSpec], list[LeftOut]]:
    """The engine's view of open requests, and those it leaves out because they break the rules of
    ``demand`` or cannot be read."""
    balances = VoucherBalances.of(requests, now)
    specs, left_out = [], []
    # A left-out row's reason is stored (``left_out_reason``, the run's log): English data,
    # whatever language the request that triggered the round speaks.
    with translation.override(STORED_LANGUAGE):
        for request in requests:
            try:
                demand_terms_check(
                    gpus_per_replica=request.gpus_per_replica,
                    replicas=request.replicas,
                    latency_class=None if request.max_rtt_ms is not None else request.latency_class,
                    max_rtt_ms=request.max_rtt_ms,
                    latency_weight=request.latency_weight,
                    price=request.max_price_per_gpu_hour,
                    duration_hours=request.duration_hours,
                    start_by=request.start_by,
                    now=None,
                )
                specs.append(engine_request_spec(request, balances))
            except Exception as exc:  # any row that cannot be planned costs only itself
                left_out.append(LeftOut("request", request.pk, _why(exc)))
    return specs, left_out


def engine_free_listings(*, gpu_model_code: str, now: datetime) -> EngineSnapshot:
    """Active, unexpired listings of one GPU model with free GPUs, per node, in two queries; as a
    snapshot with no requests."""
    listings = (
        with_free_gpus(
            Listing.objects.select_related("region", "gpu_model").filter(
                gpu_model__code=gpu_model_code, status=Listing.Status.ACTIVE, available_until__gt=now
            )
        )
        .filter(free_gpus__gt=0)
        .order_by("id")
    )
    specs, left_out = engine_listing_specs(list(listings), now=now)
    return EngineSnapshot(Problem(requests=(), listings=tuple(specs), rtt_ms=rtt_map(), now=now), tuple(left_out))


def _inside_spend_reservations(specs: list[RequestSpec], requests: list[BuyerRequest]) -> list[RequestSpec]:
    """``specs`` with each request's open replicas cut to what its spend reservation still covers
    (``spend_placeable_replicas``: only after a fail-over); a request with none left is not offered."""
    used = requests_spend_used([request.pk for request in requests if request.spend_month is not None])
    if not used:
        return specs
    by_id = {request.pk: request for request in requests}
    bounded = []
    for spec in specs:
        spend = used.get(spec.id)
        placeable = spec.replicas if spend is None else spend_placeable_replicas(by_id[spec.id], spend, spec.replicas)
        if placeable > 0:
            bounded.append(spec if placeable == spec.replicas else replace(spec, replicas=placeable))
    return bounded


def _not_held(specs: list[RequestSpec], requests: list[BuyerRequest], now: datetime) -> list[RequestSpec]:
    """``specs`` without the far-off requests the look-ahead holds for the end of their call period."""
    period = timedelta(minutes=settings.MATCHING_LOOKAHEAD_PERIOD_MINUTES)
    if period <= timedelta(0):
        return specs
    submitted = {r.pk: r.submitted_at for r in requests}
    return [
        spec
        for spec in specs
        if (at := submitted[spec.id]) is None
        or not held(spec, now, submitted_at=at, horizon=HOLD_HORIZON, period=period)
    ]


def engine_problem(*, gpu_model_code: str, now: datetime) -> EngineSnapshot:
    """One shard's input: open requests and free capacity of one GPU model, in a constant number
    of queries whatever the number of rows; with the rows it left out and why.

    With ``settings.MATCHING_LOOKAHEAD`` the problem carries each listing's reservation:
    ``MATCHING_LOOKAHEAD_SCALE`` × the mean rent of its region and GPU model over the last
    ``MATCHING_LOOKAHEAD_HOURS`` (one more query); and far-off requests wait for the end of their
    call period of ``MATCHING_LOOKAHEAD_PERIOD_MINUTES`` (:mod:`matching.lookahead`): they are
    simply not in the problem, and stay open."""
    requests = list(
        BuyerRequest.objects.select_related(*REQUEST_SPEC_RELATED)
        .prefetch_related(*REQUEST_SPEC_PREFETCH)
        .filter(gpu_model__code=gpu_model_code, status__in=BuyerRequest.OPEN_STATUSES, start_by__gte=now)
        .order_by("id")
    )
    request_specs, requests_left_out = engine_request_specs(requests, now)
    request_specs = _inside_spend_reservations(request_specs, requests)
    if settings.MATCHING_LOOKAHEAD:
        request_specs = _not_held(request_specs, requests, now)
    listings = engine_free_listings(gpu_model_code=gpu_model_code, now=now)
    running = running_interruptible(gpu_model_code=gpu_model_code, now=now)
    problem = replace(listings.problem, requests=tuple(request_specs), running_interruptible=running)
    if settings.MATCHING_LOOKAHEAD:
        rents = recent_rents(gpu_model_code=gpu_model_code, hours=settings.MATCHING_LOOKAHEAD_HOURS, now=now)
        reservations = reservations_by_listing(problem.listings, rents, scale=settings.MATCHING_LOOKAHEAD_SCALE)
        problem = replace(problem, reservations=reservations)
    return EngineSnapshot(problem, (*requests_left_out, *listings.left_out))


def running_interruptible(*, gpu_model_code: str, now: datetime) -> tuple[RunningInterruptible, ...]:
    """The running interruptible matches on active listings of one GPU model, as the engine may
    pre-empt them (``matching.interruptible``), in a constant number of queries.

    Pre-empted now, a match's GPUs are free when its notice ends (``PREEMPT_NOTICE_SECONDS`` of
    market time from ``now``), or when it ends by itself if sooner; one already pre-empted keeps
    its notice's end. Reserved matches are not offered: they hold their GPUs until they start.
    A listing that breaks the market's rules is left out of the round already, and so are its matches.
    """
    # A pre-empted match past its notice still holds its GPUs until the tick ends it: it stays
    # offered (as promised already), so a round in between does not pre-empt another for the same need.
    matches = list(
        Match.objects.filter(
            Q(ends_at__gt=now) | Q(preempt_at__isnull=False),
            status=Match.Status.RUNNING,
            request__interruptible=True,
            listing__gpu_model__code=gpu_model_code,
            listing__status=Listing.Status.ACTIVE,
        ).order_by("id")
    )
    if not matches:
        return ()
    listings = Listing.objects.select_related("region", "gpu_model").filter(pk__in={m.listing_id for m in matches})
    specs, _ = engine_listing_specs(list(listings), now=now)
    by_id = {spec.id: spec for spec in specs}
    notice = timedelta(seconds=settings.PREEMPT_NOTICE_SECONDS)
    return tuple(
        RunningInterruptible(
            match_id=match.pk,
            listing=by_id[match.listing_id],
            gpus_per_replica=match.gpus_per_replica,
            nodes=tuple(match.nodes),
            price_per_gpu_hour=match.price_per_gpu_hour,
            free_at=match.preempt_at or min(match.ends_at, now + notice),
            notice_given=match.preempt_at is not None,
        )
        for match in matches
        if match.listing_id in by_id
    )


def request_quote(*, buyer: Organisation, voucher_code: str | None = None, now: datetime | None = None, **terms):
    """What the engine would place for these request terms now, and the price–latency frontier.

    ``terms`` are ``request_submit``'s and pass the same rules (``marketplace.demand``,
    ``marketplace.eligibility``); nothing is written (a claimable voucher is not claimed). The
    request is quoted alone against the current free capacity.
    """
    now = now or market_now()
    request = demand_request_build(buyer=buyer, now=now, **terms)
    if voucher_code:
        request.voucher = voucher_usable(code=voucher_code, buyer=buyer, now=now, field="voucher_code")
        voucher_covers(request.voucher, request)
    spec = engine_request_spec(request, VoucherBalances.of([request], now))
    free = engine_free_listings(gpu_model_code=spec.gpu_model, now=now).problem
    # A listing the engine cannot quote against is left out, as a round would leave it out.
    result, _ = plan_quarantined(lambda problem: quote(problem, spec), replace(free, requests=(spec,)))
    return result


def shards_with_open_work(*, now: datetime) -> list[str]:
    """GPU model codes that have open requests: the shards the sweep re-runs."""
    return sorted(
        set(
            BuyerRequest.objects.filter(status__in=BuyerRequest.OPEN_STATUSES, start_by__gte=now).values_list(
                "gpu_model__code", flat=True
            )
        )
    )


def shards_with_lost_runs(*, started_before: datetime) -> list[str]:
    """Shards with a run still marked running that started before ``started_before`` (a round
    that old outlived its time limit: its worker died). The shard's next round marks it lost."""
    runs = MatchingRun.objects.filter(status=MatchingRun.Status.RUNNING, started_at__lt=started_before)
    return sorted(set(runs.values_list("shard", flat=True)))
