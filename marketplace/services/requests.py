"""Writes to buyer requests: demand for GPUs near an origin city."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext

from marketplace.demand import demand_request_build
from marketplace.eligibility import voucher_covers
from marketplace.errors import InvalidTransition, NotAllowed, NotFound, QuotaExceeded
from marketplace.market_time import market_now
from marketplace.models import ApiKey, BuyerRequest, Match, Organisation
from marketplace.services.lifecycle import live_matches_locked, matches_end
from marketplace.services.spend import request_spend_reserve, requests_spend_close
from marketplace.services.triggers import matching_round_enqueue_on_commit
from marketplace.services.vouchers import voucher_claim


@transaction.atomic
def request_submit(
    *,
    buyer: Organisation,
    voucher_code: str | None = None,
    api_key: ApiKey | None = None,
    now: datetime | None = None,
    **terms,
):
    """Accept demand from ``buyer`` (through ``api_key``, if a key sent it); a matching round
    follows on commit.

    ``terms`` are the request's fields (gpu_model, gpus_per_replica, replicas, origin,
    max_price_per_gpu_hour, duration_hours, start_by, and latency_class or max_rtt_ms, latency_weight),
    checked by ``marketplace.demand``. A ``voucher_code`` is claimed for the buyer (idempotent) and
    must cover the request. Its worst case is reserved against the organisation's and the key's
    monthly spend caps (``services.spend``: 402 past either). If anything fails, nothing is written.
    """
    if buyer.kind != Organisation.Kind.BUYER:
        raise NotAllowed(gettext("Only buyers submit requests."))
    now = now or market_now()
    buyer = _buyer_locked(buyer)
    _open_requests_quota_check(buyer)
    request = demand_request_build(buyer=buyer, now=now, **terms)
    request.submitted_at = now
    request_spend_reserve(request, organisation=buyer, api_key=api_key, now=now)
    if voucher_code:
        request.voucher = voucher_claim(code=voucher_code, buyer=buyer, now=now, field="voucher_code")
        voucher_covers(request.voucher, request)
    request.save()
    matching_round_enqueue_on_commit(gpu_model_code=request.gpu_model.code)
    return request


def _buyer_locked(buyer: Organisation) -> Organisation:
    """``buyer`` re-read under its row lock: concurrent submissions of one buyer then count its
    open requests and its month's spend one after another, so the quota and the caps hold under a
    burst."""
    return Organisation.objects.select_for_update(no_key=True).get(pk=buyer.pk)


def _open_requests_quota_check(buyer: Organisation) -> None:
    """Refuse a buyer at ``MAX_OPEN_REQUESTS_PER_BUYER`` open requests. Precondition: the buyer's
    row is locked (``_buyer_locked``)."""
    open_requests = BuyerRequest.objects.filter(buyer=buyer, status__in=BuyerRequest.OPEN_STATUSES).count()
    if open_requests >= settings.MAX_OPEN_REQUESTS_PER_BUYER:
        raise QuotaExceeded(
            gettext("%(n)s open requests is the most a buyer may have; cancel one or wait for matches.")
            % {"n": open_requests}
        )


@transaction.atomic
def request_cancel(*, request_id: int, buyer: Organisation, now: datetime | None = None) -> BuyerRequest:
    """Cancel a request of ``buyer`` that is not already cancelled or expired.

    Its live matches end now: one not yet started costs nothing and its voucher reservation is
    released; a running one pays for the GPU-hours it held. Their GPUs return to the listings, and
    its spend reservation shrinks to what it was charged.
    """
    try:
        request = BuyerRequest.objects.select_for_update(no_key=True).get(pk=request_id, buyer=buyer)
    except BuyerRequest.DoesNotExist:
        raise NotFound(gettext("No such request."), field="id") from None
    if request.status in (BuyerRequest.Status.CANCELLED, BuyerRequest.Status.EXPIRED):
        raise InvalidTransition(
            gettext("The request is already %(status)s.") % {"status": request.status}, field="status"
        )
    matches_end(
        live_matches_locked(Q(request=request)),
        status=Match.Status.CANCELLED,
        at=now or market_now(),
        reason="request cancelled by the buyer",
    )
    request.status = BuyerRequest.Status.CANCELLED
    request.save(update_fields=["status", "updated_at"])
    requests_spend_close([request.pk])
    request.refresh_from_db(fields=["spend_committed"])
    return request
