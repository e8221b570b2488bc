"""Writes to buyer requests: demand for GPUs near an origin city."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from marketplace.errors import InvalidInput, InvalidTransition, NotAllowed, NotFound
from marketplace.models import NODE_SIZES, BuyerRequest, GpuModel, Listing, Match, Organisation, Region
from marketplace.services.triggers import matching_round_enqueue_on_commit
from matching.latency import LatencyClass, latency_class_of

#: The most GPUs one request may ask for; a larger job is several requests.
MAX_GPUS_PER_REQUEST = 4096
MAX_DURATION_HOURS = 24 * 366


@transaction.atomic
def request_submit(
    *,
    buyer: Organisation,
    gpu_model: GpuModel,
    gpus_per_replica: int,
    replicas: int,
    origin: Region,
    max_price_per_gpu_hour: Decimal,
    duration_hours: int,
    start_by: datetime,
    latency_class: str | None = None,
    max_rtt_ms: Decimal | None = None,
    latency_weight: Decimal | None = None,
    now: datetime | None = None,
) -> BuyerRequest:
    """Accept demand from ``buyer``; a matching round follows on commit.

    The RTT bound is given as a ``latency_class`` or as ``max_rtt_ms`` (then the class is the one
    that bound falls in); with neither, the request is ``standard`` (≤ 60 ms).
    """
    if buyer.kind != Organisation.Kind.BUYER:
        raise NotAllowed("Only buyers submit requests.")
    latency_class = _latency_class_for(latency_class=latency_class, max_rtt_ms=max_rtt_ms)
    _check_demand(
        gpus_per_replica=gpus_per_replica,
        replicas=replicas,
        price=max_price_per_gpu_hour,
        duration_hours=duration_hours,
        start_by=start_by,
        now=now or timezone.now(),
    )
    if latency_weight is not None and latency_weight < 0:
        raise InvalidInput("Must be 0 or more.", field="latency_weight")
    request = BuyerRequest.objects.create(
        buyer=buyer,
        gpu_model=gpu_model,
        gpus_per_replica=gpus_per_replica,
        replicas=replicas,
        origin=origin,
        latency_class=latency_class,
        max_rtt_ms=max_rtt_ms,
        latency_weight=latency_weight,
        max_price_per_gpu_hour=max_price_per_gpu_hour,
        duration_hours=duration_hours,
        start_by=start_by,
    )
    matching_round_enqueue_on_commit(gpu_model_code=gpu_model.code)
    return request


def _latency_class_for(*, latency_class: str | None, max_rtt_ms: Decimal | None) -> str:
    if latency_class is not None and max_rtt_ms is not None:
        raise InvalidInput("Give latency_class or max_rtt_ms, not both.", field="max_rtt_ms")
    if max_rtt_ms is not None:
        if max_rtt_ms <= 0:
            raise InvalidInput("Must be greater than 0.", field="max_rtt_ms")
        return latency_class_of(float(max_rtt_ms)).value
    if latency_class is None:
        return LatencyClass.STANDARD.value
    if latency_class not in LatencyClass.__members__.values():
        raise InvalidInput(f'"{latency_class}" is not a latency class.', field="latency_class")
    return latency_class


def _check_demand(
    *,
    gpus_per_replica: int,
    replicas: int,
    price: Decimal,
    duration_hours: int,
    start_by: datetime,
    now: datetime,
) -> None:
    if gpus_per_replica not in NODE_SIZES:
        raise InvalidInput("Must be 1, 2, 4 or 8.", field="gpus_per_replica")
    if replicas <= 0:
        raise InvalidInput("Must be at least 1.", field="replicas")
    if replicas * gpus_per_replica > MAX_GPUS_PER_REQUEST:
        raise InvalidInput(f"At most {MAX_GPUS_PER_REQUEST} GPUs per request.", field="replicas")
    if price <= 0:
        raise InvalidInput("Must be greater than 0.", field="max_price_per_gpu_hour")
    if not 0 < duration_hours <= MAX_DURATION_HOURS:
        raise InvalidInput(f"Must be between 1 and {MAX_DURATION_HOURS}.", field="duration_hours")
    if start_by <= now:
        raise InvalidInput("Must be in the future.", field="start_by")


@transaction.atomic
def request_cancel(*, request_id: int, buyer: Organisation) -> BuyerRequest:
    """Cancel an open or (partially) matched request of ``buyer``.

    Its reserved matches are cancelled and their GPUs return to the listings (under the listings'
    row locks, so a racing round sees either the GPUs held or freed, never both).
    """
    try:
        request = BuyerRequest.objects.select_for_update().get(pk=request_id, buyer=buyer)
    except BuyerRequest.DoesNotExist:
        raise NotFound("No such request.", field="id") from None
    if request.status in (BuyerRequest.Status.CANCELLED, BuyerRequest.Status.EXPIRED):
        raise InvalidTransition(f"The request is already {request.status}.", field="status")
    _release_reserved_matches(request)
    request.status = BuyerRequest.Status.CANCELLED
    request.save(update_fields=["status", "updated_at"])
    return request


def _release_reserved_matches(request: BuyerRequest) -> None:
    """Cancel ``request``'s reserved matches and give their GPUs back. Caller holds a transaction."""
    matches = list(Match.objects.select_for_update().filter(request=request, status=Match.Status.RESERVED))
    # Lock listings in id order, as every other writer does, so that two writers never deadlock.
    for listing_id in sorted({m.listing_id for m in matches}):
        Listing.objects.select_for_update().filter(pk=listing_id).first()
    for match in matches:
        Listing.objects.filter(pk=match.listing_id).update(allocated_gpus=F("allocated_gpus") - match.gpus)
        match.status = Match.Status.CANCELLED
        match.save(update_fields=["status"])
    if matches:
        gpu_model_code = GpuModel.objects.only("code").get(pk=request.gpu_model_id).code
        matching_round_enqueue_on_commit(gpu_model_code=gpu_model_code)
