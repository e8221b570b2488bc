"""Inference quotes: what the engine would place for an LLM at a throughput under a TTFT target now,
and the frontier by GPU model (``matching.inference_quote``). Nothing is written."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.utils.translation import gettext

from marketplace.demand import start_by_check, start_by_default
from marketplace.eligibility import voucher_covers, voucher_usable
from marketplace.errors import InvalidInput
from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, GpuModel, LlmModel, Organisation, Region, Voucher
from marketplace.selectors.engine import VoucherBalances, engine_free_listings
from marketplace.selectors.market import gpu_spec, llm_spec, measured_points, rtt_map
from marketplace.selectors.vouchers import voucher_terms
from matching.inference import BYTES_PER_PARAM
from matching.inference_quote import (
    Alternative,
    InferenceQuote,
    InferenceTerms,
    alternatives_of,
    best_ttft_ms,
    inference_quote,
)
from matching.problem import Problem, VoucherTerms
from matching.quarantine import plan_quarantined


def _terms_check(llm: LlmModel, *, precision: str | None, prompt_tokens: int, output_tokens: int) -> None:
    if precision and precision not in llm.precisions:
        raise InvalidInput(
            gettext("%(model)s is served at %(precisions)s.")
            % {"model": llm.code, "precisions": ", ".join(llm.precisions)},
            field="precision",
        )
    if prompt_tokens + output_tokens > llm.max_context:
        raise InvalidInput(
            gettext("Prompt and output tokens together exceed %(model)s's context of %(context)s.")
            % {"model": llm.code, "context": llm.max_context},
            field="prompt_tokens",
        )


def _reach_check(alternatives: list[Alternative], terms: InferenceTerms, rtts: dict[tuple[str, str], float]) -> None:
    """Refuse terms no placement could ever meet: a model that fits no GPU (``llm_model``), a TTFT
    below the best any fitting setup reaches from the nearest region to the origin (``ttft_p95_ms``)."""
    if not any(a.fits for a in alternatives):
        hopeful: dict[str, Alternative] = {}  # per GPU model, its setup with the most memory per weight
        for a in alternatives:
            key = (-BYTES_PER_PARAM[a.precision], a.gpus_per_replica)
            held = hopeful.get(a.gpu_model)
            if held is None or key > (-BYTES_PER_PARAM[held.precision], held.gpus_per_replica):
                hopeful[a.gpu_model] = a
        reasons = [hopeful[model].blocked for model in sorted(hopeful)]
        raise InvalidInput(
            gettext("%(model)s fits no GPU model on one node: %(reasons)s")
            % {"model": terms.llm.code, "reasons": "; ".join(reasons)},
            field="llm_model",
        )
    # An origin with no RTT known yet (a region just added) is held to no network time at all.
    nearest = min((rtt for (source, _), rtt in rtts.items() if source == terms.origin), default=0.0)
    best = best_ttft_ms(alternatives, nearest)
    if best is not None and float(terms.ttft_ms) < best:
        raise InvalidInput(
            gettext("Below what any placement reaches: the best TTFT from %(origin)s is %(best)s ms.")
            % {"origin": terms.origin, "best": f"{best:,.0f}"},
            field="ttft_p95_ms",
        )


def _voucher_of(voucher: Voucher | None, *, buyer: Organisation, terms: InferenceTerms, now: datetime):
    """The voucher terms each alternative plans with: none where the programme does not cover it."""
    if voucher is None:
        return lambda alternative: None
    models = {row.code: row for row in GpuModel.objects.all()}
    balances = VoucherBalances.of([BuyerRequest(buyer=buyer, voucher=voucher)], now)

    def of(alternative: Alternative) -> VoucherTerms | None:
        request = BuyerRequest(
            buyer=buyer,
            voucher=voucher,
            gpu_model=models[alternative.gpu_model],
            gpus_per_replica=alternative.gpus_per_replica,
            replicas=alternative.replicas_needed,
            max_price_per_gpu_hour=alternative.max_price_per_gpu_hour,
            duration_hours=terms.duration_hours,
        )
        try:
            voucher_covers(voucher, request)
        except InvalidInput:
            return None
        return voucher_terms(request, balances.year_net, balances.hours_used, now=balances.now)

    return of


def inference_quote_for(
    *,
    buyer: Organisation,
    llm_model: LlmModel,
    origin: Region,
    output_tokens_per_second: Decimal,
    prompt_tokens: int,
    output_tokens: int,
    ttft_p95_ms: Decimal,
    max_price_per_million_tokens: Decimal,
    duration_hours: int,
    gpu_models: list[GpuModel] | None = None,
    precision: str | None = None,
    start_by: datetime | None = None,
    voucher_code: str | None = None,
    now: datetime | None = None,
) -> InferenceQuote:
    """Quote the inference form: every (GPU model, GPUs per replica, precision) of ``gpu_models``
    (all GPU models when None) against the current free capacity, alone (other open requests
    ignored). Raises ``InvalidInput`` naming the field for terms no placement could meet. A
    constant number of queries per GPU model."""
    now = now or market_now()
    start_by = start_by_default(start_by, now=now)
    start_by_check(start_by, now=now)
    _terms_check(llm_model, precision=precision, prompt_tokens=prompt_tokens, output_tokens=output_tokens)
    voucher = voucher_usable(code=voucher_code, buyer=buyer, now=now, field="voucher_code") if voucher_code else None
    terms = InferenceTerms(
        llm=llm_spec(llm_model),
        origin=origin.code,
        tokens_per_second=output_tokens_per_second,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        ttft_ms=ttft_p95_ms,
        max_price_per_million_tokens=max_price_per_million_tokens,
        duration_hours=duration_hours,
        start_by=start_by,
        precision=precision,
    )
    rows = {row.code: row for row in (gpu_models or GpuModel.objects.all())}  # an allow-list may repeat a code
    gpus = [spec for spec in (gpu_spec(rows[code]) for code in sorted(rows)) if spec is not None]
    listings = [
        listing for gpu in gpus for listing in engine_free_listings(gpu_model_code=gpu.code, now=now).problem.listings
    ]
    rtts = rtt_map()
    alternatives = alternatives_of(terms, gpus, listings, measured_points(listing_ids=[item.id for item in listings]))
    _reach_check(alternatives, terms, rtts)
    voucher_of = _voucher_of(voucher, buyer=buyer, terms=terms, now=now)
    problem = Problem(requests=(), listings=tuple(listings), rtt_ms=rtts, now=now)
    # A listing the engine cannot quote against is left out, as a round would leave it out.
    result, _ = plan_quarantined(lambda p: inference_quote(p, terms, alternatives, voucher_of), problem)
    return result
