"""Writes to buyer requests: demand for GPUs near an origin city."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from marketplace.demand import demand_request_build
from marketplace.eligibility import voucher_covers
from marketplace.errors import InvalidTransition, NotAllowed, NotFound
from marketplace.models import BuyerRequest, GpuModel, Listing, Match, Organisation
from marketplace.services.subsidies import subsidy_release
from marketplace.services.triggers import matching_round_enqueue_on_commit
from marketplace.services.vouchers import voucher_claim


@transaction.atomic
def request_submit(*, buyer: Organisation, voucher_code: str | None = None, now: datetime | None = None, **terms):
    """Accept demand from ``buyer``; a matching round follows on commit.

    ``terms`` are the request's fields (gpu_model, gpus_per_replica, replicas, origin,
    max_price_per_gpu_hour, duration_hours, start_by, and latency_class or max_rtt_ms, latency_weight),
    checked by ``marketplace.demand``. A ``voucher_code`` is claimed for the buyer (idempotent) and
    must cover the request; if anything fails, nothing is written.
    """
    if buyer.kind != Organisation.Kind.BUYER:
        raise NotAllowed("Only buyers submit requests.")
    now = now or timezone.now()
    request = demand_request_build(buyer=buyer, now=now, **terms)
    if voucher_code:
        request.voucher = voucher_claim(code=voucher_code, buyer=buyer, now=now, field="voucher_code")
        voucher_covers(request.voucher, request)
    request.save()
    matching_round_enqueue_on_commit(gpu_model_code=request.gpu_model.code)
    return request


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
    subsidy_release(matches)
    for match in matches:
        Listing.objects.filter(pk=match.listing_id).update(allocated_gpus=F("allocated_gpus") - match.gpus)
        match.status = Match.Status.CANCELLED
        match.save(update_fields=["status"])
    if matches:
        gpu_model_code = GpuModel.objects.only("code").get(pk=request.gpu_model_id).code
        matching_round_enqueue_on_commit(gpu_model_code=gpu_model_code)
