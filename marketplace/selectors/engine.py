"""The engine's input: a snapshot of open requests and free capacity, per node; quotes."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from marketplace.demand import demand_terms_check
from marketplace.models import BuyerRequest, Listing, Match, Organisation
from marketplace.selectors.market import listing_energy_cost, rtt_map, with_free_gpus
from matching.costs import default_latency_weight
from matching.problem import ListingSpec, Problem, RequestSpec
from matching.quote import Quote, quote


def node_free_of(listing: Listing, live_nodes: list[tuple[int, list[int]]]) -> tuple[int, ...]:
    """Free GPUs per node of ``listing`` given its live matches' ``(gpus_per_replica, nodes)``."""
    free = [listing.gpus_per_node] * listing.node_count
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


def engine_request_spec(request: BuyerRequest) -> RequestSpec:
    """The engine's view of a request: what is still to place; needs gpu_model and origin loaded."""
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
        .filter(free__gt=0)
        .order_by("id")
    )
    return tuple(engine_listing_specs(list(listings)))


def engine_problem(*, gpu_model_code: str, now: datetime) -> Problem:
    """One shard's input: open requests and free capacity of one GPU model, in four queries."""
    requests = (
        BuyerRequest.objects.select_related("gpu_model", "origin")
        .filter(gpu_model__code=gpu_model_code, status__in=BuyerRequest.OPEN_STATUSES, start_by__gte=now)
        .order_by("id")
    )
    return Problem(
        requests=tuple(engine_request_spec(request) for request in requests),
        listings=engine_free_listings(gpu_model_code=gpu_model_code, now=now),
        rtt_ms=rtt_map(),
        now=now,
    )


def request_quote(*, buyer: Organisation, now: datetime | None = None, **terms) -> Quote:
    """What the engine would place for these request terms now, and the price–latency frontier.

    ``terms`` are ``request_submit``'s; they pass the same rules (``marketplace.demand``). Nothing
    is written: the request is quoted alone against the current free capacity.
    """
    now = now or timezone.now()
    checked = {key: terms.get(key) for key in ("latency_class", "max_rtt_ms", "latency_weight")}
    terms["latency_class"] = demand_terms_check(
        gpus_per_replica=terms["gpus_per_replica"],
        replicas=terms["replicas"],
        price=terms["max_price_per_gpu_hour"],
        duration_hours=terms["duration_hours"],
        start_by=terms["start_by"],
        now=now,
        **checked,
    )
    spec = engine_request_spec(BuyerRequest(buyer=buyer, **terms))
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
