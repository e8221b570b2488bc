"""Requests in the inference form (issue 15): ``services.request_submit_inference`` and
POST /api/v1/requests/ with ``llm_model``: checked as the inference quote checks them, filed
under their first-choice alternative, reserved at their budget, shown with their inference terms."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from marketplace import services
from marketplace.errors import InvalidInput, NotAllowed, SpendCapExceeded
from marketplace.models import BuyerRequest, GpuModel, RequestInference, Voucher

API = "/api/v1/requests/"
BODY = {
    "llm_model": "deepseek-r1-distill-qwen-32b",
    "output_tokens_per_second": "2000",
    "prompt_tokens": 2000,
    "output_tokens": 500,
    "ttft_p95_ms": "1500",
    "origin": "shanghai",
    "max_price_per_million_tokens": "20",
    "duration_hours": 24,
    "precision": "FP8",
}


def body(**overrides) -> dict:
    return {**BODY, **overrides}


def terms(**overrides) -> dict:
    """``BODY`` as the service's keywords."""
    return {**BODY, **overrides}


@pytest.fixture
def market(make_listing):
    """A near dear H100 (Qingpu, 2.8 ms from Shanghai) and a far cheap H20 (Zhongwei, 35.8 ms)."""
    return {
        "h100": make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_model="h100", price_per_gpu_hour=Decimal("13")),
        "h20": make_listing(region="ningxia-zhongwei", gpu_model="h20", price_per_gpu_hour=Decimal("6")),
    }


# --- the service ---------------------------------------------------------------------------------


def test_the_service_files_the_request_under_the_alternative_the_quote_places(buyer, market, now):
    request = services.request_submit_inference(buyer=buyer, now=now, **terms())
    request.refresh_from_db()
    assert request.kind == BuyerRequest.Kind.INFERENCE
    # The quote places two H20s in Zhongwei (1.6667 CNY/Mtok), cheaper than the near H100.
    assert (request.gpu_model_id, request.gpus_per_replica, request.replicas) == (
        GpuModel.objects.get(code="h20").pk,
        2,
        1,
    )
    # 20 CNY/Mtok × 2000 tokens/s × 0.0036 = 144 CNY an hour, over its 2 GPUs.
    assert request.max_price_per_gpu_hour == Decimal("72.0000")
    assert request.latency_weight == 0
    assert request.max_rtt_ms is not None and request.max_rtt_ms > Decimal("35.8")
    assert request.latency_class == "batch"  # its bound is over the standard class's 60 ms
    inference = RequestInference.objects.get(request=request)
    assert (inference.llm_model.code, inference.output_tokens_per_second, inference.precision) == (
        "deepseek-r1-distill-qwen-32b",
        Decimal("2000.0"),
        "FP8",
    )
    assert inference.tokens_per_second_placed == 0
    assert not inference.gpu_models.exists()
    # Reserved: its budget (144 CNY an hour) for its 24 hours, half a fen of slack for its one line.
    assert request.spend_committed == Decimal("3456.01")


def test_with_nothing_free_the_first_choice_is_the_most_tokens_per_gpu(buyer, reference, now):
    request = services.request_submit_inference(buyer=buyer, now=now, **terms(gpu_models=["h20", "h100"]))
    inference = RequestInference.objects.get(request=request)
    assert sorted(inference.gpu_models.values_list("code", flat=True)) == ["h100", "h20"]
    assert request.gpu_model.code in {"h20", "h100"}
    assert request.replicas * request.gpus_per_replica <= 8


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"llm_model": "no-such-model"}, "llm_model"),
        ({"origin": "atlantis"}, "origin"),
        ({"gpu_models": ["h20", "no-such-gpu"]}, "gpu_models"),
        ({"output_tokens_per_second": "0"}, "output_tokens_per_second"),
        ({"output_tokens_per_second": "10.25"}, "output_tokens_per_second"),
        ({"prompt_tokens": 0}, "prompt_tokens"),
        ({"prompt_tokens": 200_000}, "prompt_tokens"),  # over the model's context
        ({"output_tokens": 0}, "output_tokens"),
        ({"ttft_p95_ms": "-1"}, "ttft_p95_ms"),
        ({"ttft_p95_ms": "50"}, "ttft_p95_ms"),  # below what any placement reaches
        ({"max_price_per_million_tokens": "0"}, "max_price_per_million_tokens"),
        ({"duration_hours": 0}, "duration_hours"),
        ({"precision": "FP4"}, "precision"),
        ({"llm_model": "deepseek-r1", "gpu_models": ["rtx4090"]}, "llm_model"),  # fits no GPU
    ],
)
def test_the_service_refuses_bad_terms_naming_the_field_and_writes_nothing(buyer, market, now, overrides, field):
    with pytest.raises(InvalidInput) as refusal:
        services.request_submit_inference(buyer=buyer, now=now, **terms(**overrides))
    assert refusal.value.field == field
    assert not BuyerRequest.objects.exists()
    assert not RequestInference.objects.exists()


def test_a_provider_cannot_submit(provider, market, now):
    with pytest.raises(NotAllowed):
        services.request_submit_inference(buyer=provider, now=now, **terms())


def test_the_spend_cap_counts_the_budget_for_every_hour(buyer, market, now):
    buyer.monthly_spend_cap = Decimal("3456")
    buyer.save(update_fields=["monthly_spend_cap"])
    with pytest.raises(SpendCapExceeded) as refusal:
        services.request_submit_inference(buyer=buyer, now=now, **terms())
    assert refusal.value.field == "monthly_spend_cap"
    assert "3456.01" in refusal.value.message
    assert not RequestInference.objects.exists()
    buyer.monthly_spend_cap = Decimal("3456.01")
    buyer.save(update_fields=["monthly_spend_cap"])
    assert services.request_submit_inference(buyer=buyer, now=now, **terms()).spend_committed == Decimal("3456.01")


def test_a_round_is_asked_for_on_commit(buyer, market, now, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        services.request_submit_inference(buyer=buyer, now=now, start_by=now + timedelta(hours=2), **terms())
    assert len(callbacks) == 1


def test_an_unknown_voucher_code_is_refused_and_nothing_is_claimed(buyer, market, now):
    with pytest.raises(InvalidInput) as refusal:
        services.request_submit_inference(buyer=buyer, now=now, voucher_code="NOPE-NOPE", **terms())
    assert refusal.value.field == "voucher_code"
    assert not Voucher.objects.filter(buyer=buyer).exists()
