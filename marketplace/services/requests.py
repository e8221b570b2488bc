"""Writes to buyer requests: demand for GPUs near an origin city."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext

from marketplace import bounds
from marketplace.demand import demand_request_build, start_by_default
from marketplace.eligibility import voucher_covers
from marketplace.errors import InvalidInput, InvalidTransition, NotAllowed, NotFound, QuotaExceeded
from marketplace.market_time import market_now
from marketplace.models import (
    ApiKey,
    BuyerRequest,
    GpuModel,
    LlmModel,
    Match,
    Organisation,
    Region,
    RequestInference,
    Voucher,
)
from marketplace.selectors.inference import inference_quote_for
from marketplace.services.lifecycle import live_matches_locked, matches_end
from marketplace.services.spend import request_spend_reserve, requests_spend_close
from marketplace.services.triggers import matching_round_enqueue_on_commit
from marketplace.services.vouchers import voucher_claim
from matching.inference_quote import Alternative, InferenceQuote
from matching.latency import LatencyClass


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


@transaction.atomic
def request_submit_inference(
    *,
    buyer: Organisation,
    llm_model: str,
    origin: str,
    output_tokens_per_second,
    prompt_tokens,
    output_tokens,
    ttft_p95_ms,
    max_price_per_million_tokens,
    duration_hours,
    gpu_models: Sequence[str] | None = None,
    precision: str = "",
    start_by: datetime | None = None,
    voucher_code: str | None = None,
    workload: str = "",
    api_key: ApiKey | None = None,
    now: datetime | None = None,
) -> BuyerRequest:
    """Accept inference demand from ``buyer``: ``output_tokens_per_second`` of ``llm_model`` for
    users at ``origin`` under a p95 TTFT of ``ttft_p95_ms``, at most ``max_price_per_million_tokens``
    (docs/inference.md); a matching round follows on commit. Codes are strings (``gpu_models``: an
    allow-list, None or empty for every GPU model; ``precision`` "": any the model is served at).

    Checked as the inference quote checks them (``selectors.inference_quote_for``): an unknown
    model, a model that fits no GPU, a TTFT below the best any placement reaches from ``origin``
    are each an ``InvalidInput`` naming the field. The row is ``kind`` ``inference`` with the
    ``gpu_model``, ``gpus_per_replica``, ``replicas``, RTT bound and cap per GPU-hour of its first
    choice: the alternative the quote places now, else the fitting one with the most tokens/s per
    GPU. Quota, spend reservation (its budget per hour for every hour, ``services.spend``) and
    voucher are as for ``request_submit``; a voucher must cover at least one way to serve it. If
    anything fails, nothing is written.
    """
    if buyer.kind != Organisation.Kind.BUYER:
        raise NotAllowed(gettext("Only buyers submit requests."))
    now = now or market_now()
    llm = _row_of(LlmModel, llm_model, field="llm_model")
    region = _row_of(Region, origin, field="origin")
    allowed = [_row_of(GpuModel, code, field="gpu_models") for code in dict.fromkeys(gpu_models or ())]
    tokens_per_second = _decimal_in(
        output_tokens_per_second, bounds.TOKENS_PER_SECOND_ASKED, "output_tokens_per_second"
    )
    ttft = _decimal_in(ttft_p95_ms, bounds.TTFT_MS, "ttft_p95_ms")
    cap = _decimal_in(max_price_per_million_tokens, bounds.PRICE_PER_MILLION_TOKENS, "max_price_per_million_tokens")
    prompt_tokens = _whole_in(prompt_tokens, bounds.PROMPT_TOKENS, "prompt_tokens")
    output_tokens = _whole_in(output_tokens, bounds.OUTPUT_TOKENS, "output_tokens")
    duration_hours = _whole_in(duration_hours, bounds.DURATION_HOURS, "duration_hours")
    start_by = start_by_default(start_by, now=now)
    buyer = _buyer_locked(buyer)
    _open_requests_quota_check(buyer)
    # Claimed first, so the quote plans with it as with any voucher of the buyer's.
    voucher = voucher_claim(code=voucher_code, buyer=buyer, now=now, field="voucher_code") if voucher_code else None
    quote = inference_quote_for(
        buyer=buyer,
        llm_model=llm,
        origin=region,
        duration_hours=duration_hours,
        gpu_models=allowed or None,
        precision=precision or None,
        start_by=start_by,
        voucher_code=voucher_code,
        now=now,
        output_tokens_per_second=tokens_per_second,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        ttft_p95_ms=ttft,
        max_price_per_million_tokens=cap,
    )
    choice = inference_first_choice(quote)
    request = demand_request_build(
        buyer=buyer,
        now=now,
        **_row_terms(choice, duration_hours),
        origin=region,
        start_by=start_by,
        workload=workload,
    )
    request.kind, request.submitted_at = BuyerRequest.Kind.INFERENCE, now
    inference = RequestInference(
        llm_model=llm,
        output_tokens_per_second=tokens_per_second,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        ttft_p95_ms=ttft,
        max_price_per_million_tokens=cap,
        precision=precision or "",
    )
    request.inference = inference
    request_spend_reserve(request, organisation=buyer, api_key=api_key, now=now)
    if voucher is not None:
        request.voucher = voucher
        _voucher_covers_some(voucher, request, quote)
    request.save()
    inference.request = request
    inference.save()
    if allowed:
        inference.gpu_models.set(allowed)
    matching_round_enqueue_on_commit(gpu_model_code=request.gpu_model.code)
    return request


def inference_first_choice(quote: InferenceQuote) -> Alternative:
    """The alternative an inference request is filed under: the one its quote places (the cheapest
    per million tokens of those serving the most), else — nothing free now — the fitting one
    whose TTFT is reachable with the most tokens/s per GPU (fewer GPUs per replica on a tie).
    Precondition: the quote passed its reach check (some alternative fits)."""
    if quote.best is not None:
        return quote.best.alternative
    fitting = [q.alternative for q in quote.alternatives if q.alternative.fits]
    reachable = [a for a in fitting if not a.blocked] or fitting
    return max(
        reachable,
        key=lambda a: (a.tokens_per_second_per_replica / a.gpus_per_replica, -a.gpus_per_replica, a.gpu_model),
    )


def _row_terms(choice: Alternative, duration_hours: int) -> dict:
    """The GPU-form terms of the request's row, from its first choice. Its RTT bound is the
    choice's (TTFT less prefill and queueing margin, down to 0.1 ms); one past the longest bound a
    request may name is no bound (batch). A refusal names the inference form's field at fault."""
    gpus = choice.replicas_needed * choice.gpus_per_replica
    if gpus > bounds.GPUS_PER_REQUEST.maximum:
        raise InvalidInput(
            gettext("Serving this on %(gpus)s GPUs of %(model)s is over the %(max)s GPUs a request may take.")
            % {"gpus": gpus, "model": choice.gpu_model, "max": bounds.GPUS_PER_REQUEST.maximum},
            field="output_tokens_per_second",
        )
    price = min(choice.max_price_per_gpu_hour, bounds.PRICE.maximum)
    if price < bounds.PRICE.minimum:
        raise InvalidInput(
            gettext("Too low to pay for a GPU-hour of %(model)s.") % {"model": choice.gpu_model},
            field="max_price_per_million_tokens",
        )
    bound = max(
        Decimal(str(choice.rtt_bound_ms)).quantize(Decimal("0.1"), rounding=ROUND_DOWN), bounds.MAX_RTT_MS.minimum
    )
    rtt: dict[str, object] = (
        {"max_rtt_ms": bound} if bound <= bounds.MAX_RTT_MS.maximum else {"latency_class": LatencyClass.BATCH.value}
    )
    return {
        "gpu_model": GpuModel.objects.get(code=choice.gpu_model),
        "gpus_per_replica": choice.gpus_per_replica,
        "replicas": choice.replicas_needed,
        "max_price_per_gpu_hour": price,
        # The TTFT target is the buyer's whole latency value, as in the quote.
        "latency_weight": Decimal(0),
        "duration_hours": duration_hours,
        **rtt,
    }


def _voucher_covers_some(voucher: Voucher, request: BuyerRequest, quote: InferenceQuote) -> None:
    """Raise (as ``voucher_covers`` does for the request's first choice) unless the voucher covers
    the first choice or another fitting alternative of the quote."""
    try:
        voucher_covers(voucher, request)
        return
    except InvalidInput as refusal:
        first_refusal = refusal
    models = {row.code: row for row in GpuModel.objects.all()}
    for q in quote.alternatives:
        a = q.alternative
        if not a.fits:
            continue
        other = BuyerRequest(
            buyer=request.buyer,
            gpu_model=models[a.gpu_model],
            gpus_per_replica=a.gpus_per_replica,
            replicas=a.replicas_needed,
            max_price_per_gpu_hour=a.max_price_per_gpu_hour,
            duration_hours=request.duration_hours,
        )
        try:
            voucher_covers(voucher, other)
            return
        except InvalidInput:
            continue
    raise first_refusal


def _row_of(model, code, *, field: str):
    """The reference row of ``model`` whose code is ``code``, or ``InvalidInput`` naming ``field``."""
    row = model.objects.filter(code=code).first() if isinstance(code, str) else None
    if row is None:
        raise InvalidInput(gettext('"%(value)s" is not a known code.') % {"value": code}, field=field)
    return row


def _decimal_in(value, bound: bounds.DecimalNumber, field: str) -> Decimal:
    """``value`` as a Decimal within ``bound`` and its places, or ``InvalidInput`` naming ``field``."""
    try:
        number = Decimal(str(value))
        exact = number.is_finite() and number == number.quantize(Decimal(1).scaleb(-bound.decimal_places))
    except InvalidOperation:
        exact = False
    if not exact:
        raise InvalidInput(
            gettext("Give a number with at most %(places)s decimal places.") % {"places": bound.decimal_places},
            field=field,
        )
    if not bound.minimum <= number <= bound.maximum:
        raise InvalidInput(
            gettext("Must be between %(min)s and %(max)s.") % {"min": bound.minimum, "max": bound.maximum},
            field=field,
        )
    return number


def _whole_in(value, bound: bounds.WholeNumber, field: str) -> int:
    """``value`` as a whole number within ``bound``, or ``InvalidInput`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or not bound.minimum <= value <= bound.maximum:
        raise InvalidInput(
            gettext("Must be between %(min)s and %(max)s.") % {"min": bound.minimum, "max": bound.maximum},
            field=field,
        )
    return value


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
