"""Reads of the market: reference data, listings and capacity, requests, matches and runs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from django.db.models import (
    Case,
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    IntegerField,
    Prefetch,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)

from marketplace.market_time import market_now
from marketplace.models import (
    BuyerRequest,
    GpuModel,
    Listing,
    LlmModel,
    Match,
    MatchingRun,
    MeasuredProfile,
    Organisation,
    Region,
    Rtt,
)
from matching.costs import energy_cost_per_gpu_hour
from matching.inference import GpuSpec, LlmSpec, MeasuredPoint
from matching.latency import LatencyClass, bound_of, latency_class_of

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

#: A reference table: regions or GPU models.
Reference = TypeVar("Reference", Region, GpuModel)


def organisation_of(user, *, kind: str | None = None) -> Organisation | None:
    """The organisation ``user`` acts for (of ``kind`` if given), or None."""
    if not user.is_authenticated:
        return None
    membership = getattr(user, "membership", None)  # a missing related row raises AttributeError
    if membership is None or (kind is not None and membership.organisation.kind != kind):
        return None
    return membership.organisation


def region_list() -> QuerySet[Region]:
    return Region.objects.all()


def region_with_rtts(*, code: str) -> Region | None:
    """The region with ``rtts`` (to every region, nearest first) prefetched; None if unknown."""
    rtts = Rtt.objects.select_related("target_region").order_by("rtt_ms", "target_region__code")
    return Region.objects.prefetch_related(Prefetch("rtts_out", queryset=rtts)).filter(code=code).first()


def gpu_model_list() -> QuerySet[GpuModel]:
    return GpuModel.objects.all()


def llm_model_list() -> QuerySet[LlmModel]:
    return LlmModel.objects.all()


def measured_profiles_of(*, listing_id: int, provider: Organisation | None) -> QuerySet[MeasuredProfile] | None:
    """The measured profiles of ``provider``'s listing, oldest first; None when the listing is not
    its own (another provider's listing does not exist for it)."""
    if provider is None or not Listing.objects.filter(pk=listing_id, provider=provider).exists():
        return None
    return MeasuredProfile.objects.filter(listing_id=listing_id).select_related("llm_model").order_by("id")


def llm_spec(row: LlmModel) -> LlmSpec:
    """The throughput model's view of a catalogue row."""
    return LlmSpec(
        code=row.code,
        params_b=float(row.params_b),
        active_params_b=float(row.active_params_b),
        layers=row.layers,
        kv_heads=row.kv_heads,
        head_dim=row.head_dim,
        max_context=row.max_context,
        precisions=tuple(row.precisions),
    )


def gpu_spec(row: GpuModel) -> GpuSpec | None:
    """The throughput model's view of a GPU model; None when its speed figures were never loaded."""
    if row.memory_bandwidth_gbps is None or row.bf16_tflops is None:
        return None
    return GpuSpec(
        code=row.code,
        vram_gb=float(row.vram_gb),
        memory_bandwidth_gbps=float(row.memory_bandwidth_gbps),
        bf16_tflops=float(row.bf16_tflops),
        fp8_tflops=None if row.fp8_tflops is None else float(row.fp8_tflops),
        interconnect=row.interconnect or "pcie",
    )


def measured_points(*, listing_ids: list[int]) -> dict[int, list[MeasuredPoint]]:
    """The measured profiles of ``listing_ids`` as the engine's ``MeasuredPoint``s, by listing (one
    query): what ``matching.inference.profile_for`` takes to prefer measured over modelled."""
    points: dict[int, list[MeasuredPoint]] = {}
    rows = MeasuredProfile.objects.filter(listing_id__in=listing_ids).select_related("llm_model", "listing__gpu_model")
    for row in rows.order_by("id"):
        points.setdefault(row.listing_id, []).append(
            MeasuredPoint(
                llm_model=row.llm_model.code,
                gpu_model=row.listing.gpu_model.code,
                precision=row.precision,
                gpus_per_replica=row.gpus_per_replica,
                prompt_tokens=row.prompt_tokens,
                concurrency=row.concurrency,
                output_tokens_per_second=float(row.output_tokens_per_second),
                ttft_ms=float(row.ttft_ms),
                measured_at=row.measured_at,
            )
        )
    return points


#: Seconds a process trusts its copy of the reference data (regions, GPU models, RTTs). It changes
#: only through ``load_reference``, which keeps each row's id and makes its own process forget its
#: copy on commit: a code or id it adds is found at once (a miss reads the database), a changed
#: attribute (a power price, an RTT) shows in other processes within this long.
REFERENCE_TTL_SECONDS = 60.0
_reference_copies: dict[object, tuple[float, object]] = {}


def _reference_copy(key, load, *, holds) -> Any:
    """This process's copy of one piece of reference data: ``load()`` again when the copy does not
    ``holds`` what is asked for, or is older than ``REFERENCE_TTL_SECONDS``. Copies are shared
    between requests: read them, never change them."""
    loaded_at, copy = _reference_copies.get(key, (0.0, None))
    if copy is None or not holds(copy) or time.monotonic() - loaded_at > REFERENCE_TTL_SECONDS:
        copy = load()
        _reference_copies[key] = (time.monotonic(), copy)
    return copy


def reference_by_code(model: type[Reference], code: str) -> Reference | None:
    """The region or GPU model with ``code``, from this process's copy of the reference table.

    For the search endpoints: one query per table per ``REFERENCE_TTL_SECONDS`` instead of one per
    parameter (or a join) per request.
    """
    by_code, _ = _reference_copy(model, lambda: _rows_by_code_and_id(model), holds=lambda c: code in c[0])
    return by_code.get(code)


def reference_by_id(model: type[Reference], pk: int) -> Reference | None:
    """:func:`reference_by_code`, by id."""
    _, by_id = _reference_copy(model, lambda: _rows_by_code_and_id(model), holds=lambda c: pk in c[1])
    return by_id.get(pk)


def _rows_by_code_and_id(model) -> tuple[dict, dict]:
    rows = list(model.objects.all())
    return {row.code: row for row in rows}, {row.pk: row for row in rows}


def rtts_from(origin: Region | None) -> dict[int, Decimal]:
    """RTT in ms from ``origin`` to each region, by region id (none without an origin), from this
    process's copy of the RTT table, so that a search costs no RTT lookup in its query."""
    if origin is None:
        return {}
    table = _reference_copy(Rtt, _rtt_table, holds=lambda t: origin.pk in t)
    return table.get(origin.pk, {})


def _rtt_table() -> dict[int, dict[int, Decimal]]:
    table: dict[int, dict[int, Decimal]] = {}
    for source, target, rtt in Rtt.objects.values_list("source_region_id", "target_region_id", "rtt_ms"):
        table.setdefault(source, {})[target] = rtt
    return table


def reference_forget() -> None:
    """Drop this process's copy of the reference data (after ``reference_load`` changed it)."""
    _reference_copies.clear()


def rtt_map() -> dict[tuple[str, str], float]:
    """RTT in ms between every pair of region codes, in both directions, in one query."""
    rows = Rtt.objects.values_list("source_region__code", "target_region__code", "rtt_ms")
    return {(a, b): float(rtt) for a, b, rtt in rows}


def listing_energy_cost(listing: Listing) -> Decimal:
    """TDP × PUE × tariff per GPU-hour; needs ``region`` and ``gpu_model`` loaded."""
    return energy_cost_per_gpu_hour(
        tdp_w=listing.gpu_model.tdp_w, pue=listing.region.pue, tariff_cny_kwh=listing.region.power_price_cny_kwh
    )


class FreeGpus(TypedDict):
    """What :func:`with_free_gpus` annotates a listing with."""

    free_gpus: int


def with_free_gpus(queryset: QuerySet[Listing]) -> QuerySet[WithAnnotations[Listing, FreeGpus]]:
    free_gpus = ExpressionWrapper(F("gpu_count") - F("allocated_gpus"), output_field=IntegerField())
    return queryset.annotate(free_gpus=free_gpus)


def _rtt_ms_of_region(rtts: dict[int, Decimal]) -> Case:
    """The RTT of a listing's region (from ``rtts_from``), as SQL: for ordering by it."""
    whens = [When(region_id=region, then=Value(rtt)) for region, rtt in rtts.items()]
    return Case(*whens, default=None, output_field=DecimalField(max_digits=7, decimal_places=1))


@dataclass(frozen=True)
class ListingFilters:
    """Listing search; ``latency_class`` (with ``origin``) keeps listings that meet that bound."""

    region: Region | None = None
    gpu_model: GpuModel | None = None
    origin: Region | None = None
    latency_class: str | None = None
    max_price: Decimal | None = None
    min_free_gpus: int | None = None
    status: str | None = None
    provider: Organisation | None = None
    ordering: str = "id"


def listings_visible_to(viewer: Organisation | None) -> QuerySet[WithAnnotations[Listing, FreeGpus]]:
    """The market's active listings, plus every listing of ``viewer`` itself, with ``free_gpus`` and
    ``provider_name`` annotated (``ListingOut`` takes region and GPU model from ``reference_by_id``)."""
    visible = Q(status=Listing.Status.ACTIVE)
    if viewer is not None:
        visible |= Q(provider=viewer)
    return with_free_gpus(Listing.objects.filter(visible).annotate(provider_name=F("provider__name")))


def listing_shown_energy_cost(listing) -> Decimal:
    """``listing_energy_cost`` of a listing or search row, its region and GPU model from this
    process's copy of the reference data."""
    region, gpu = reference_by_id(Region, listing.region_id), reference_by_id(GpuModel, listing.gpu_model_id)
    if region is None or gpu is None:
        # Never for a saved listing: its foreign keys keep both rows (PROTECT), and a copy of the
        # reference data that lacks one is read again (``_reference_copy``).
        raise LookupError(f"listing {listing.pk}: no region {listing.region_id} or GPU model {listing.gpu_model_id}")
    return energy_cost_per_gpu_hour(tdp_w=gpu.tdp_w, pue=region.pue, tariff_cny_kwh=region.power_price_cny_kwh)


#: The listing's own columns a search result shows (``ListingOut``): loading only these skips
#: converting the timestamps, JSON and figures no result shows.
LISTING_SEARCH_FIELDS = (
    "id",
    "left_out_reason",
    "gpu_count",
    "gpus_per_node",
    "price_per_gpu_hour",
    "interruptible_floor_price_per_gpu_hour",
    "available_from",
    "available_until",
    "status",
    "region_id",
    "gpu_model_id",
    "agent_since",
    "provider_id",
)


def listing_search(filters: ListingFilters, *, viewer: Organisation | None) -> QuerySet:
    """Listings ``viewer`` may see that match ``filters``, as named rows (not model instances: a
    page of them costs a fifth as much to read) of what ``ListingOut`` shows: ``LISTING_SEARCH_FIELDS``
    (the RTT of ``region_id`` from the origin is ``rtts_from(origin)``), ``provider_name``, ``free_gpus``
    and ``search_count``, the number of listings matched (``COUNT(*) OVER ()``: a page counts in
    its own query)."""
    shown = (*LISTING_SEARCH_FIELDS, "provider_name", "free_gpus")
    queryset = _listings_matching(filters, viewer=viewer).annotate(search_count=Window(Count("pk")))
    return queryset.values_list(*shown, "search_count", named=True)


def _listings_matching(
    filters: ListingFilters, *, viewer: Organisation | None
) -> QuerySet[WithAnnotations[Listing, FreeGpus]]:
    queryset = listings_visible_to(viewer)
    exact = {
        "region": filters.region,
        "gpu_model": filters.gpu_model,
        "status": filters.status,
        "provider": filters.provider,
    }
    queryset = queryset.filter(**{field: value for field, value in exact.items() if value is not None})
    if filters.max_price is not None:
        queryset = queryset.filter(price_per_gpu_hour__lte=filters.max_price)
    if filters.min_free_gpus is not None:
        queryset = queryset.filter(free_gpus__gte=filters.min_free_gpus)
    rtts = rtts_from(filters.origin)
    if filters.latency_class is not None and (bound := bound_of(filters.latency_class)) is not None:
        queryset = queryset.filter(region_id__in=[region for region, rtt in rtts.items() if rtt <= Decimal(str(bound))])
    if filters.ordering.lstrip("-") == "rtt_ms":
        queryset = queryset.annotate(rtt_ms=_rtt_ms_of_region(rtts))
    return queryset.order_by(filters.ordering, "id")


def listing_visible(*, listing_id: int, viewer: Organisation | None) -> Listing | None:
    return listings_visible_to(viewer).filter(pk=listing_id).first()


@dataclass(frozen=True)
class CapacityRow:
    region: str
    latency_class: LatencyClass
    rtt_ms: float
    gpu_model: str
    free_gpus: int
    min_price_per_gpu_hour: Decimal
    listings: int
    #: Of ``listings``, those run by a provider agent (``Listing.driven_by``); the rest are clock-driven.
    agent_listings: int = 0
    #: The listings counted, for what a page shows of them (their reliability on the board).
    listing_ids: tuple[int, ...] = ()


def capacity_by_region(
    *, origin: Region, gpu_model: GpuModel | None = None, now: datetime | None = None
) -> list[CapacityRow]:
    """Idle GPUs of active, unexpired listings grouped by region and GPU model, seen from ``origin``.

    Rows come nearest first; one query whatever the number of listings (two when ``now`` is read
    from the market clock), RTTs from this process's copy (``rtts_from``).
    """
    now = now or market_now()
    queryset = with_free_gpus(Listing.objects.filter(status=Listing.Status.ACTIVE, available_until__gt=now)).filter(
        free_gpus__gt=0
    )
    if gpu_model is not None:
        queryset = queryset.filter(gpu_model=gpu_model)
    rtt_of_region = rtts_from(origin)
    groups: dict[tuple[str, str], list] = {}
    rtts: dict[str, Decimal] = {}
    for pk, region_id, region, model, free, price, agent_since in queryset.values_list(
        "pk", "region_id", "region__code", "gpu_model__code", "free_gpus", "price_per_gpu_hour", "agent_since"
    ):
        groups.setdefault((region, model), []).append((free, price, agent_since, pk))
        rtts[region] = rtt_of_region[region_id]
    rows = [
        CapacityRow(
            region=region,
            latency_class=latency_class_of(float(rtts[region])),
            rtt_ms=float(rtts[region]),
            gpu_model=model,
            free_gpus=sum(item[0] for item in items),
            min_price_per_gpu_hour=min(item[1] for item in items),
            listings=len(items),
            agent_listings=sum(item[2] is not None for item in items),
            listing_ids=tuple(item[3] for item in items),
        )
        for (region, model), items in groups.items()
    ]
    return sorted(rows, key=lambda row: (row.rtt_ms, row.region, row.gpu_model))


def request_list_for(user, *, status: str | None = None) -> QuerySet[BuyerRequest]:
    """Requests ``user`` may see: staff all, a buyer its organisation's, anyone else none; only
    those in ``status`` when it is given."""
    queryset = BuyerRequest.objects.select_related(
        "gpu_model", "origin", "buyer", "voucher__program", "inference__llm_model"
    ).prefetch_related("inference__gpu_models")
    if status is not None:
        queryset = queryset.filter(status=status)
    if user.is_staff:
        return queryset
    buyer = organisation_of(user, kind=Organisation.Kind.BUYER)
    return queryset.filter(buyer=buyer) if buyer else queryset.none()


def match_list_for(user) -> QuerySet[Match]:
    """Matches ``user`` may see: staff all, a buyer its requests', a provider its listings'."""
    queryset = Match.objects.select_related(
        "listing__region", "listing__provider", "listing__gpu_model", "request__buyer", "voucher__program"
    )
    if user.is_staff:
        return queryset
    organisation = organisation_of(user)
    if organisation is None:
        return queryset.none()
    if organisation.kind == Organisation.Kind.BUYER:
        return queryset.filter(request__buyer=organisation)
    return queryset.filter(listing__provider=organisation)


def match_list_filtered(
    user,
    *,
    request_id: int | None = None,
    listing_id: int | None = None,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Match]:
    """:func:`match_list_for` narrowed by the given filters (``created_after`` included,
    ``created_before`` not). Filters only narrow what ``user`` may see: another party's request or
    listing id gives an empty list, exactly like an id nobody has."""
    lookups = {
        "request_id": request_id,
        "listing_id": listing_id,
        "status": status,
        "created_at__gte": created_after,
        "created_at__lt": created_before,
    }
    return match_list_for(user).filter(**{name: value for name, value in lookups.items() if value is not None})


def matching_run_list() -> QuerySet[MatchingRun]:
    return MatchingRun.objects.all()
