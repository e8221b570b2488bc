"""The engine's input: a snapshot of open requests and free capacity, per node; quotes.

The snapshot reads each row through the same rules it was accepted by (``demand``, ``supply``)
and leaves out a row that breaks one, or that cannot be read at all, with the reason: one bad row
costs its owner a round, never the shard.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.db.models import Q
from django.utils import translation

from marketplace.demand import demand_request_build, demand_terms_check
from marketplace.eligibility import voucher_covers, voucher_usable
from marketplace.errors import DomainError
from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, GpuModel, Listing, Match, MatchingRun, MeasuredProfile, Organisation
from marketplace.selectors.market import (
    gpu_spec,
    listing_energy_cost,
    llm_spec,
    measured_points,
    rtt_map,
    with_free_gpus,
)
from marketplace.selectors.prices import recent_rents
from marketplace.selectors.reliability import reliability_index
from marketplace.selectors.spend import requests_spend_used, spend_placeable_replicas
from marketplace.selectors.vouchers import buyer_year_net, free_hours_used, voucher_terms
from marketplace.supply import listing_terms_check
from matching.costs import default_latency_weight
from matching.inference import GpuSpec, LlmSpec
from matching.inference_quote import Alternative, InferenceTerms, alternatives_of, budget_per_hour
from matching.lookahead import HOLD_HORIZON, held_until, reservations_by_listing
from matching.problem import (
    InferenceDemand,
    ListingSpec,
    Problem,
    RequestSpec,
    RunningInterruptible,
)
from matching.quarantine import LeftOut, plan_quarantined
from matching.quote import quote
from matching.substitution import demand_budget, engine_alternatives

logger = logging.getLogger(__name__)

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
    #: The requests the look-ahead holds for their call (not in ``problem``), with when each re-enters.
    held: dict[int, datetime] = field(default_factory=dict)


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
                _row_check(request)
                specs.append(engine_request_spec(request, balances))
            except Exception as exc:  # any row that cannot be planned costs only itself
                left_out.append(LeftOut("request", request.pk, _why(exc)))
    return specs, left_out


def engine_free_listings(
    *, now: datetime, gpu_model_code: str | None = None, shard: str | None = None
) -> EngineSnapshot:
    """Active, unexpired listings with free GPUs, per node, of one GPU model (``gpu_model_code``)
    or of every GPU model of ``shard`` (:func:`shard_members`), in two queries; as a snapshot with
    no requests."""
    codes = _codes_of(gpu_model_code, shard)
    listings = (
        with_free_gpus(
            Listing.objects.select_related("region", "gpu_model").filter(
                gpu_model__code__in=codes, status=Listing.Status.ACTIVE, available_until__gt=now
            )
        )
        .filter(free_gpus__gt=0)
        .order_by("id")
    )
    specs, left_out = engine_listing_specs(list(listings), now=now)
    return EngineSnapshot(Problem(requests=(), listings=tuple(specs), rtt_ms=rtt_map(), now=now), tuple(left_out))


def _codes_of(gpu_model_code: str | None, shard: str | None) -> tuple[str, ...]:
    """The GPU model codes a snapshot covers: one code, or a shard's members (exactly one given)."""
    if (gpu_model_code is None) == (shard is None):
        raise TypeError("give exactly one of gpu_model_code and shard")
    return (gpu_model_code,) if gpu_model_code is not None else shard_members(shard or "")


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


def _not_held(specs: list, requests: list[BuyerRequest], now: datetime) -> tuple[list, dict[int, datetime]]:
    """``specs`` (``RequestSpec``s or ``InferenceDemand``s) without the far-off requests the
    look-ahead holds for their call; and those it holds, by id, with when each re-enters."""
    period = timedelta(minutes=settings.MATCHING_LOOKAHEAD_PERIOD_MINUTES)
    if period <= timedelta(0):
        return specs, {}
    submitted = {r.pk: r.submitted_at for r in requests}
    kept, held = [], {}
    for spec in specs:
        at = submitted[spec.id]
        until = None if at is None else held_until(spec, now, submitted_at=at, horizon=HOLD_HORIZON, period=period)
        if until is None:
            kept.append(spec)
        else:
            held[spec.id] = until
    return kept, held


def engine_problem(*, now: datetime, gpu_model_code: str | None = None, shard: str | None = None) -> EngineSnapshot:
    """One shard's input: open requests and free capacity of one GPU model (``gpu_model_code``) or
    of the GPU models of ``shard`` (:func:`shard_members`), in a constant number of queries whatever
    the number of rows; with the rows it left out and why.

    GPU-form requests of the shard's GPU models are in it, and the open inference requests whose
    coupled GPU models (:func:`inference_couplings`) all belong to the shard, as
    :class:`~matching.problem.InferenceDemand` (:func:`engine_inference_demands`). An inference
    request coupling a GPU model outside the shard is not in it (it belongs to a larger component:
    ``services.rounds`` runs the shard the component of its GPU models, :func:`shard_component`).

    With ``settings.MATCHING_LOOKAHEAD`` the problem carries each listing's reservation:
    ``MATCHING_LOOKAHEAD_SCALE`` × the mean rent of its region and GPU model over the last
    ``MATCHING_LOOKAHEAD_HOURS`` (one more query per GPU model); and far-off requests wait for the
    end of their call period of ``MATCHING_LOOKAHEAD_PERIOD_MINUTES`` (:mod:`matching.lookahead`):
    they are not in the problem, stay open, and are in the snapshot's ``held``."""
    codes = _codes_of(gpu_model_code, shard)
    requests = list(
        BuyerRequest.objects.select_related(*REQUEST_SPEC_RELATED)
        .prefetch_related(*REQUEST_SPEC_PREFETCH)
        .filter(
            kind=BuyerRequest.Kind.GPUS,
            gpu_model__code__in=codes,
            status__in=BuyerRequest.OPEN_STATUSES,
            start_by__gte=now,
        )
        .order_by("id")
    )
    request_specs, requests_left_out = engine_request_specs(requests, now)
    request_specs = _inside_spend_reservations(request_specs, requests)
    listings = engine_free_listings(shard=shard_name(codes), now=now)
    inference_requests = [
        request for request, coupled in _couplings(_open_inference_requests(now, full=True)) if coupled <= set(codes)
    ]
    demands, inference_left_out = engine_inference_demands(inference_requests, listings.problem.listings, now=now)
    held: dict[int, datetime] = {}
    if settings.MATCHING_LOOKAHEAD:
        request_specs, held = _not_held(request_specs, requests, now)
        demands, held_demands = _not_held(demands, inference_requests, now)
        held |= held_demands
    running = running_interruptible(shard=shard_name(codes), now=now)
    problem = replace(
        listings.problem, requests=tuple(request_specs), running_interruptible=running, inference=tuple(demands)
    )
    if settings.MATCHING_LOOKAHEAD:
        rents: dict[tuple[str, str], Decimal] = {}
        for code in codes:
            rents |= recent_rents(gpu_model_code=code, hours=settings.MATCHING_LOOKAHEAD_HOURS, now=now)
        reservations = reservations_by_listing(problem.listings, rents, scale=settings.MATCHING_LOOKAHEAD_SCALE)
        problem = replace(problem, reservations=reservations)
    return EngineSnapshot(problem, (*requests_left_out, *inference_left_out, *listings.left_out), held)


def running_interruptible(
    *, now: datetime, gpu_model_code: str | None = None, shard: str | None = None
) -> tuple[RunningInterruptible, ...]:
    """The running interruptible matches on active listings of one GPU model (or of ``shard``'s), as
    the engine may pre-empt them (``matching.interruptible``), in a constant number of queries.

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
            listing__gpu_model__code__in=_codes_of(gpu_model_code, shard),
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


# --- inference demand -----------------------------------------------------------------------------


def _open_inference_requests(now: datetime, *, full: bool = False) -> list[BuyerRequest]:
    """Open inference requests with their terms loaded (two queries; ``full``: with what
    ``engine_inference_demands`` needs too, two more)."""
    related = ["gpu_model", "origin", "inference__llm_model"]
    prefetch = ["inference__gpu_models"]
    if full:
        related += list(REQUEST_SPEC_RELATED)
        prefetch += list(REQUEST_SPEC_PREFETCH)
    return list(
        BuyerRequest.objects.select_related(*related)
        .prefetch_related(*prefetch)
        .filter(kind=BuyerRequest.Kind.INFERENCE, status__in=BuyerRequest.OPEN_STATUSES, start_by__gte=now)
        .order_by("id")
    )


def _gpu_specs(codes: Collection[str] | None = None) -> dict[str, GpuSpec]:
    """The throughput model's GPU specs by code (of ``codes``; None: of every GPU model), leaving
    out GPU models whose speed figures were never loaded. One query."""
    rows = GpuModel.objects.all() if codes is None else GpuModel.objects.filter(code__in=list(codes))
    return {row.code: spec for row in rows if (spec := gpu_spec(row)) is not None}


def inference_terms(request: BuyerRequest, target: Decimal) -> InferenceTerms:
    """An inference request's terms as the quote reads them, for ``target`` output tokens/s
    (needs ``origin`` and ``inference__llm_model`` loaded)."""
    inference = request.inference
    return InferenceTerms(
        llm=llm_spec(inference.llm_model),
        origin=request.origin.code,
        tokens_per_second=target,
        prompt_tokens=inference.prompt_tokens,
        output_tokens=inference.output_tokens,
        ttft_ms=inference.ttft_p95_ms,
        max_price_per_million_tokens=inference.max_price_per_million_tokens,
        duration_hours=request.duration_hours,
        start_by=request.start_by,
        precision=inference.precision or None,
    )


def _couplings(requests: list[BuyerRequest]) -> list[tuple[BuyerRequest, frozenset[str]]]:
    """Each open inference request with the GPU models it couples, in two queries:

    - the GPU model it is filed under (its first choice at submission), always, so that every open
      request belongs to the shard its submission's trigger asks for;
    - every GPU model of its allow-list (empty: every GPU model with speed figures) that could serve
      it: the throughput model fits the LLM on some setup (GPUs per replica, precision) within its
      TTFT target before any network (``matching.inference_quote.alternatives_of``), or a provider
      measured the LLM on a listing of that GPU model.

    Nothing here depends on free capacity, so a round's component changes only when open
    inference demand does. Setups are worked out once per distinct (LLM, precision, prompt, output,
    TTFT, GPU model) in a process (:func:`modelled_setups`), not per request and round. A row whose
    terms cannot be read couples only its filed GPU model (where the snapshot leaves it out with why).
    """
    if not requests:
        return []
    specs = _gpu_specs()
    measured = set(
        MeasuredProfile.objects.filter(listing__status=Listing.Status.ACTIVE)
        .values_list("llm_model__code", "listing__gpu_model__code", "precision")
        .distinct()
    )
    coupled = []
    for request in requests:
        codes = {request.gpu_model.code}
        try:
            inference = request.inference
            llm = inference.llm_model
            precisions = (inference.precision,) if inference.precision else tuple(llm.precisions)
            allowed = sorted(row.code for row in inference.gpu_models.all()) or sorted(specs)
            terms = inference_terms(request, inference.output_tokens_per_second)
            for code in (code for code in allowed if code in specs):
                was_measured = any((llm.code, code, precision) in measured for precision in precisions)
                if was_measured or modelled_setups(terms, specs[code]):
                    codes.add(code)
        except Exception:  # an unreadable row couples nothing more; the snapshot says why it is left out
            logger.warning("inference request %s: terms unreadable, coupled to its own GPU model only", request.pk)
        coupled.append((request, frozenset(codes)))
    return coupled


def modelled_setups(terms: InferenceTerms, gpu: GpuSpec) -> tuple[Alternative, ...]:
    """The modelled setups (GPUs per replica, precision) of ``gpu`` that can serve ``terms``
    (``alternatives_of``: the LLM fits, and its prefill leaves time within the TTFT), whatever the
    listings. Their figures (tokens/s and prefill per replica, RTT bound) depend on the LLM, the GPU
    model, the precision asked, the prompt and output lengths and the TTFT only, so they are worked
    out once per process (:func:`_setups`); their target-dependent fields (replicas needed, price
    cap) are not to be read."""
    return _setups(terms.llm, gpu, terms.precision, terms.prompt_tokens, terms.output_tokens, terms.ttft_ms)


@lru_cache(maxsize=8192)
def _setups(
    llm: LlmSpec, gpu: GpuSpec, precision: str | None, prompt_tokens: int, output_tokens: int, ttft_ms: Decimal
) -> tuple[Alternative, ...]:
    terms = InferenceTerms(
        llm=llm,
        origin="",
        tokens_per_second=Decimal(1),
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        ttft_ms=ttft_ms,
        max_price_per_million_tokens=Decimal(1),
        duration_hours=1,
        start_by=datetime.min.replace(tzinfo=UTC),
        precision=precision,
    )
    return tuple(a for a in alternatives_of(terms, [gpu], [], {}) if a.fits and not a.blocked)


def inference_couplings(*, now: datetime) -> list[frozenset[str]]:
    """The GPU models each open inference request couples (:func:`_couplings`), in four queries."""
    return [codes for _, codes in _couplings(_open_inference_requests(now))]


def engine_inference_demands(
    requests: list[BuyerRequest], listings: Iterable[ListingSpec], *, now: datetime
) -> tuple[list[InferenceDemand], list[LeftOut]]:
    """The engine's view of open inference requests against ``listings`` (the round's free
    capacity), and those it leaves out because they break the rules of ``demand`` or cannot be
    read. Needs what ``_open_inference_requests(full=True)`` loads; a constant number of queries.

    Each request's target is what it asked less what its matches placed; its alternatives are the
    quote's (``alternatives_of``: every setup of its allowed GPU models present among ``listings``,
    measured figures where a listing has them), without the setups that cannot serve it (too big,
    prefill over the TTFT), each with the per-replica price cap of its own tokens/s; its budget per
    hour is the cap per million tokens × the target's million tokens per hour. A modelled setup
    covers the listings of its GPU model that did not measure that setup (``listing_ids``).
    After a fail-over the target is cut to what the spend reservation still covers.
    """
    listings = list(listings)
    if not requests:
        return [], []
    specs = _gpu_specs({listing.gpu_model for listing in listings})
    measured = measured_points(listing_ids=[listing.id for listing in listings])
    balances = VoucherBalances.of(requests, now)
    used = requests_spend_used([request.pk for request in requests if request.spend_month is not None])
    demands, left_out = [], []
    with translation.override(STORED_LANGUAGE):
        for request in requests:
            try:
                demand = _inference_demand(request, listings, specs, measured, balances, used.get(request.pk))
            except Exception as exc:  # any row that cannot be planned costs only itself
                left_out.append(LeftOut("request", request.pk, _why(exc)))
                continue
            if demand is not None:
                demands.append(demand)
    return demands, left_out


def _row_check(request: BuyerRequest) -> None:
    """A request row inside the domains of ``marketplace.demand`` (its GPU-form fields: an inference
    request's are its first choice's), or the ``InvalidInput`` that leaves it out of the round."""
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


def _inference_demand(request, listings, specs, measured, balances, spend) -> InferenceDemand | None:
    """One request's :class:`InferenceDemand` (None: nothing left to place); raises for a bad row."""
    _row_check(request)
    inference = request.inference
    target = inference.output_tokens_per_second - inference.tokens_per_second_placed
    if target <= 0:
        return None
    cap = inference.max_price_per_million_tokens
    budget = budget_per_hour(cap, target)
    if spend is not None and spend.failed_over and request.spend_month is not None:
        # After a fail-over only what the rest of the reservation covers is offered (as for GPU form).
        headroom = request.spend_committed - spend.amount
        worst = budget * request.duration_hours
        if headroom <= 0:
            return None
        if worst > headroom:
            target = target * headroom / worst
    allowed = {row.code for row in inference.gpu_models.all()}
    gpus = [spec for code, spec in sorted(specs.items()) if not allowed or code in allowed]
    terms = inference_terms(request, target)
    # Modelled setups depend on the terms and reference data only (cached); measured ones on listings.
    found = [a for gpu in gpus for a in modelled_setups(terms, gpu)]
    measuring = {x.gpu_model for x in listings if x.id in measured}
    found += [
        a
        for a in alternatives_of(terms, [g for g in gpus if g.code in measuring], listings, measured)
        if a.listing_ids is not None
    ]
    measured_setups: dict[tuple[str, int, str], set[int]] = {}
    for a in found:
        if a.listing_ids is not None:
            measured_setups.setdefault((a.gpu_model, a.gpus_per_replica, a.precision), set()).update(a.listing_ids)
    covered = []
    for a in found:
        taken = measured_setups.get((a.gpu_model, a.gpus_per_replica, a.precision))
        if a.listing_ids is None and taken:  # measured beats modelled: the modelled setup covers the rest
            rest = tuple(x.id for x in listings if x.gpu_model == a.gpu_model and x.id not in taken)
            if not rest:
                continue
            a = replace(a, listing_ids=rest)
        covered.append(a)
    alternatives = list(engine_alternatives(covered, cap))
    # The request row's own setup (its first choice at submission) goes first: ``alternatives[0]`` is
    # what the ``nearest`` policy fills, as a buyer choosing by hand would (``matching.substitution``).
    alternatives.sort(
        key=lambda a: (a.gpu_model, a.gpus_per_replica) != (request.gpu_model.code, request.gpus_per_replica)
    )
    return InferenceDemand(
        id=request.pk,
        origin=request.origin.code,
        tokens_per_second=float(target),
        budget_per_hour=demand_budget(cap, target),
        duration_hours=request.duration_hours,
        start_by=request.start_by,
        alternatives=tuple(alternatives),
        priority=request.priority,
        voucher=voucher_terms(request, balances.year_net, balances.hours_used, now=balances.now),
        min_reliability=None if request.min_reliability is None else float(request.min_reliability),
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


# --- shards: the GPU models one round covers -----------------------------------------------------

#: Joins the GPU model codes of a shard's name ("h100+h20"); a code is a slug, which never holds it.
SHARD_SEPARATOR = "+"


def shard_members(shard: str) -> tuple[str, ...]:
    """The GPU model codes of a shard's name, sorted: ``"h20"`` → ``("h20",)``, ``"h100+h20"`` → both."""
    return tuple(sorted({code for code in shard.split(SHARD_SEPARATOR) if code}))


def shard_name(codes: Iterable[str]) -> str:
    """The shard of ``codes``: their sorted codes joined; one GPU model's shard is its code."""
    return SHARD_SEPARATOR.join(sorted(set(codes)))


def shard_components(seeds: Iterable[str], couplings: Iterable[frozenset[str]]) -> list[tuple[str, ...]]:
    """The connected components of GPU models that ``couplings`` (sets of GPU models one request
    couples) join, those holding a GPU model of ``seeds``; each sorted, the list sorted. A seed no
    coupling touches is a component of its own."""
    parent: dict[str, str] = {}

    def root(code: str) -> str:
        parent.setdefault(code, code)
        while parent[code] != code:
            parent[code] = parent[parent[code]]
            code = parent[code]
        return code

    for coupled in couplings:
        first, *rest = sorted(coupled)
        for code in rest:
            parent[root(code)] = root(first)
    wanted = {root(code) for code in seeds}
    members: dict[str, list[str]] = {}
    for code in list(parent):
        if root(code) in wanted:
            members.setdefault(root(code), []).append(code)
    return sorted(tuple(sorted(codes)) for codes in members.values())


def shard_component(shard: str, *, now: datetime) -> str:
    """The shard a round asked for ``shard`` must cover now: its GPU models and every GPU model open
    inference requests couple to them, transitively (:func:`inference_couplings`). The one
    definition of a round's extent: without inference demand it is ``shard`` itself. Four queries."""
    components = shard_components(shard_members(shard), inference_couplings(now=now))
    return shard_name(code for component in components for code in component)


def shards_with_open_work(*, now: datetime) -> list[str]:
    """The shards the sweep re-runs: the components (:func:`shard_component`) of the GPU models
    with open requests, GPU-form or inference, one name each. Without inference demand, the GPU
    model codes with open requests."""
    gpu_form = BuyerRequest.objects.filter(
        kind=BuyerRequest.Kind.GPUS, status__in=BuyerRequest.OPEN_STATUSES, start_by__gte=now
    ).values_list("gpu_model__code", flat=True)
    couplings = inference_couplings(now=now)
    seeds = set(gpu_form).union(*couplings)
    return [shard_name(component) for component in shard_components(seeds, couplings)]


def shards_with_lost_runs(*, started_before: datetime) -> list[str]:
    """Shards with a run still marked running that started before ``started_before`` (a round
    that old outlived its time limit: its worker died). The shard's next round marks it lost."""
    runs = MatchingRun.objects.filter(status=MatchingRun.Status.RUNNING, started_at__lt=started_before)
    return sorted(set(runs.values_list("shard", flat=True)))
