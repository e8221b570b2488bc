"""The engine's input: a snapshot of open requests and free capacity, per node; quotes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from marketplace.demand import demand_request_build
from marketplace.eligibility import voucher_covers, voucher_usable
from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, Listing, Match, MatchingRun, Organisation
from marketplace.selectors.market import listing_energy_cost, rtt_map, with_free_gpus
from marketplace.selectors.vouchers import buyer_year_net, free_hours_used, voucher_terms
from matching.costs import default_latency_weight
from matching.problem import ListingSpec, Problem, RequestSpec
from matching.quote import quote


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

    year_net: dict = field(default_factory=dict)
    hours_used: dict = field(default_factory=dict)
    #: The market time the engine plans at: a voucher that cannot pay then plans no subsidy.
    now: datetime | None = None

    @classmethod
    def of(cls, requests, now: datetime) -> VoucherBalances:
        """The balances ``requests``' vouchers need at ``now``, in two queries (none without vouchers)."""
        vouchers = [r.voucher for r in requests if r.voucher_id]
        if not vouchers:
            return cls(now=now)
        pairs = {(v.program_id, v.buyer_id) for v in vouchers if v.buyer_id}
        return cls(buyer_year_net(pairs, now.year), free_hours_used({v.pk for v in vouchers}), now)


#: For requests without vouchers.
EMPTY_BALANCES = VoucherBalances()


def live_matches_on_failed_nodes(*, listing_id: int | None = None) -> list[int]:
    """Ids of live matches with a replica on a failed node (of ``listing_id``, or of any listing);
    one query."""
    suspects = Match.objects.filter(status__in=Match.LIVE_STATUSES)
    if listing_id is not None:
        suspects = suspects.filter(listing_id=listing_id)
    rows = suspects.exclude(listing__failed_nodes=[]).values_list("pk", "nodes", "listing__failed_nodes")
    return [pk for pk, nodes, failed in rows if set(nodes) & set(failed)]


def engine_request_spec(request: BuyerRequest, vouchers: VoucherBalances = EMPTY_BALANCES) -> RequestSpec:
    """The engine's view of a request: what is still to place; needs gpu_model, origin and
    (with a voucher) its programme's eligibility loaded, and ``vouchers``' ledger balances."""
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
    )


#: What a request needs loaded for ``engine_request_spec``.
REQUEST_SPEC_RELATED = ("gpu_model", "origin", "voucher__program")
REQUEST_SPEC_PREFETCH = (
    "voucher__program__eligible_regions",
    "voucher__program__eligible_providers",
    "voucher__program__eligible_gpu_models",
)


def engine_listing_specs(listings: list[Listing]) -> list[ListingSpec]:
    """The engine's view of listings (region, gpu_model loaded), free GPUs per node included."""
    live = live_nodes_by_listing([listing.pk for listing in listings])
    return [
        ListingSpec(
            id=listing.pk,
            provider_id=listing.provider_id,
            region=listing.region.code,
            gpu_model=listing.gpu_model.code,
            gpus_per_node=listing.gpus_per_node,
            node_free=node_free_of(listing, live.get(listing.pk, [])),
            price_per_gpu_hour=listing.price_per_gpu_hour,
            energy_cost_per_gpu_hour=listing_energy_cost(listing),
            available_from=listing.available_from,
            available_until=listing.available_until,
        )
        for listing in listings
    ]


def engine_free_listings(*, gpu_model_code: str, now: datetime) -> tuple[ListingSpec, ...]:
    """Active, unexpired listings of one GPU model with free GPUs, per node, in two queries."""
    listings = (
        with_free_gpus(
            Listing.objects.select_related("region", "gpu_model").filter(
                gpu_model__code=gpu_model_code, status=Listing.Status.ACTIVE, available_until__gt=now
            )
        )
        .filter(free_gpus__gt=0)
        .order_by("id")
    )
    return tuple(engine_listing_specs(list(listings)))


def engine_problem(*, gpu_model_code: str, now: datetime) -> Problem:
    """One shard's input: open requests and free capacity of one GPU model, in a constant number
    of queries whatever the number of rows."""
    requests = list(
        BuyerRequest.objects.select_related(*REQUEST_SPEC_RELATED)
        .prefetch_related(*REQUEST_SPEC_PREFETCH)
        .filter(gpu_model__code=gpu_model_code, status__in=BuyerRequest.OPEN_STATUSES, start_by__gte=now)
        .order_by("id")
    )
    balances = VoucherBalances.of(requests, now)
    return Problem(
        requests=tuple(engine_request_spec(request, balances) for request in requests),
        listings=engine_free_listings(gpu_model_code=gpu_model_code, now=now),
        rtt_ms=rtt_map(),
        now=now,
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
    listings = engine_free_listings(gpu_model_code=spec.gpu_model, now=now)
    return quote(Problem(requests=(spec,), listings=listings, rtt_ms=rtt_map(), now=now), spec)


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
