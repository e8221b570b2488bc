"""Requests in the inference form (issue 15): ``services.request_submit_inference`` and
POST /api/v1/requests/ with ``llm_model``: checked as the inference quote checks them, filed
under their first-choice alternative, reserved at their budget, shown with their inference terms."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplace import services
from marketplace.errors import InvalidInput, NotAllowed, QuotaExceeded, SpendCapExceeded
from marketplace.models import BuyerRequest, GpuModel, Organisation, RequestInference, Voucher
from marketplace.services.spend import month_committed, spend_month_of
from tests.inference_builders import INFERENCE_BODY, inference_body
from tests.services_helpers import race

API = "/api/v1/requests/"
BODY = INFERENCE_BODY
body = inference_body


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
    assert request.max_rtt_ms is not None
    assert request.max_rtt_ms > Decimal("35.8")  # Zhongwei's RTT: its bound admits the H20s
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
        # More GPUs than a request may take, a cap that pays for no GPU-hour: named in the form's terms.
        ({"output_tokens_per_second": "9999999", "gpu_models": ["h20"]}, "output_tokens_per_second"),
        ({"output_tokens_per_second": "0.1", "max_price_per_million_tokens": "0.0001"}, "max_price_per_million_tokens"),
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


def voucher_code_for(*gpu_models: str) -> str:
    """An unclaimed code of a 30 % programme covering ``gpu_models`` only."""
    program = services.voucher_program_create(
        name="Zhongwei inference voucher",
        sponsor="Zhongwei government",
        percent=Decimal("30"),
        budget=Decimal("100000"),
        valid_from=timezone.now() - timedelta(days=1),
        valid_until=timezone.now() + timedelta(days=365),
        eligible_gpu_models=list(GpuModel.objects.filter(code__in=gpu_models)),
    )
    return services.vouchers_issue(program_id=program.pk, sponsor_provider=None, buyer=None)[0].code


def test_a_voucher_covering_another_way_to_serve_it_is_claimed_and_kept(buyer, market, now):
    code = voucher_code_for("h100")  # the first choice is the H20s; the voucher covers the H100s
    request = services.request_submit_inference(buyer=buyer, now=now, voucher_code=code, **terms())
    assert request.voucher is not None
    assert request.voucher.code == code
    assert Voucher.objects.get(code=code).buyer_id == buyer.pk


def test_a_voucher_covering_no_way_to_serve_it_is_refused_and_not_claimed(buyer, market, now):
    code = voucher_code_for("rtx4090")
    with pytest.raises(InvalidInput) as refusal:
        services.request_submit_inference(buyer=buyer, now=now, voucher_code=code, **terms(gpu_models=["h20", "h100"]))
    assert (refusal.value.field, refusal.value.message) == ("voucher_code", "This programme covers only rtx4090.")
    assert not BuyerRequest.objects.exists()
    assert Voucher.objects.get(code=code).buyer_id is None


def test_the_open_requests_quota_counts_inference_requests(buyer, market, now, settings):
    settings.MAX_OPEN_REQUESTS_PER_BUYER = 2
    for _ in range(2):
        services.request_submit_inference(buyer=buyer, now=now, **terms())
    with pytest.raises(QuotaExceeded):
        services.request_submit_inference(buyer=buyer, now=now, **terms())
    assert RequestInference.objects.count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_concurrent_submissions_never_pass_the_spend_cap(postgres, reference, buyer, make_listing):
    """Twenty threads, each its own PostgreSQL connection, submit at once against a cap that fits
    three: three go through, the rest are 402s, and no half-written inference row is left."""
    make_listing(region="ningxia-zhongwei", gpu_model="h20", price_per_gpu_hour=Decimal("6"))
    one = Decimal("3456.01")
    Organisation.objects.filter(pk=buyer.pk).update(monthly_spend_cap=one * 3 + Decimal("1"))
    outcomes = race(*[lambda: services.request_submit_inference(buyer=buyer, **terms()) for _ in range(20)])
    accepted = [outcome for outcome in outcomes if isinstance(outcome, BuyerRequest)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, SpendCapExceeded)]
    assert (len(accepted), len(refused)) == (3, 17), outcomes
    assert BuyerRequest.objects.filter(buyer=buyer).count() == RequestInference.objects.count() == 3
    assert month_committed(organisation_id=buyer.pk, month=spend_month_of(timezone.now())) == one * 3


# --- POST /api/v1/requests/ ----------------------------------------------------------------------


def test_a_buyer_submits_the_inference_form_and_reads_it_back(clients, market):
    response = clients["buyer"].post(API, body(workload="vllm serve"), format="json")
    assert response.status_code == 201, response.data
    created = response.json()
    assert created["kind"] == "inference"
    assert (created["gpu_model"], created["gpus_per_replica"], created["replicas"]) == ("h20", 2, 1)
    assert created["workload"] == "vllm serve"
    assert created["inference"] == {
        "llm_model": "deepseek-r1-distill-qwen-32b",
        "output_tokens_per_second": "2000.0",
        "prompt_tokens": 2000,
        "output_tokens": 500,
        "ttft_p95_ms": "1500.0",
        "max_price_per_million_tokens": "20.0000",
        "precision": "FP8",
        "gpu_models": [],
        "tokens_per_second_placed": "0.0",
    }
    assert created["spend_committed"] == "3456.01"
    read = clients["buyer"].get(f"{API}{created['id']}/")
    assert read.status_code == 200
    assert read.json() == created


def test_a_gpu_form_request_shows_its_kind_and_no_inference(clients, make_request):
    request = make_request()
    shown = clients["buyer"].get(f"{API}{request.pk}/").json()
    assert (shown["kind"], shown["inference"]) == ("gpus", None)


def test_the_allow_list_is_kept_and_shown(clients, market):
    created = clients["buyer"].post(API, body(gpu_models=["h100", "h20", "h100"]), format="json").json()
    assert sorted(created["inference"]["gpu_models"]) == ["h100", "h20"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"llm_model": "no-such-model"}, "llm_model"),
        ({"origin": "atlantis"}, "origin"),
        ({"gpu_models": ["no-such-gpu"]}, "gpu_models"),
        ({"gpu_models": []}, "gpu_models"),
        ({"output_tokens_per_second": "0"}, "output_tokens_per_second"),
        ({"output_tokens_per_second": "1e3"}, "output_tokens_per_second"),
        ({"prompt_tokens": 0}, "prompt_tokens"),
        ({"prompt_tokens": 200_000}, "prompt_tokens"),
        ({"output_tokens": "many"}, "output_tokens"),
        ({"ttft_p95_ms": "0"}, "ttft_p95_ms"),
        ({"max_price_per_million_tokens": "-1"}, "max_price_per_million_tokens"),
        ({"max_price_per_million_tokens": "5000"}, "max_price_per_million_tokens"),
        ({"duration_hours": 0}, "duration_hours"),
        ({"precision": "FP4"}, "precision"),
        ({"precision": "INT4-AWQ", "llm_model": "deepseek-r1"}, "precision"),  # not served at it
        ({"start_by": "2026-12-04T09:00"}, "start_by"),
        ({"voucher_code": "NOPE-NOPE"}, "voucher_code"),
        ({"interruptible": True}, "interruptible"),  # a GPU-form field
        ({"max_tokens": 5}, "max_tokens"),  # no field of either form
    ],
)
def test_a_bad_field_is_a_400_naming_it_and_nothing_is_written(clients, market, overrides, field):
    response = clients["buyer"].post(API, body(**overrides), format="json")
    assert response.status_code == 400, response.data
    assert field in response.json(), response.json()
    assert not BuyerRequest.objects.exists()
    assert not RequestInference.objects.exists()


def test_a_missing_field_is_a_400_naming_it(clients, market):
    for name in ("output_tokens_per_second", "prompt_tokens", "ttft_p95_ms", "origin", "duration_hours"):
        response = clients["buyer"].post(API, {k: v for k, v in BODY.items() if k != name}, format="json")
        assert response.status_code == 400
        assert name in response.json()
    assert not BuyerRequest.objects.exists()


def test_both_forms_at_once_is_a_400_naming_the_gpu_forms_fields(clients, market):
    response = clients["buyer"].post(
        API, body(gpu_model="h20", gpus_per_replica=1, replicas=2, max_price_per_gpu_hour="10"), format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"gpu_model", "gpus_per_replica", "replicas", "max_price_per_gpu_hour"}
    assert "inference form" in response.json()["gpu_model"][0]
    assert not BuyerRequest.objects.exists()


def test_a_model_that_fits_no_gpu_is_a_400_on_llm_model_saying_why(clients, market):
    response = clients["buyer"].post(API, body(llm_model="deepseek-r1", gpu_models=["rtx4090"]), format="json")
    assert response.status_code == 400
    message = response.json()["llm_model"][0]
    assert message.startswith("deepseek-r1 fits no GPU model on one node: ")
    assert "rtx4090" in message
    assert not BuyerRequest.objects.exists()


def test_an_unreachable_ttft_is_a_400_with_the_best_ttft_from_the_origin(clients, market):
    response = clients["buyer"].post(API, body(ttft_p95_ms="50"), format="json")
    assert response.status_code == 400
    message = response.json()["ttft_p95_ms"][0]
    assert message.startswith("Below what any placement reaches: the best TTFT from shanghai is ")
    best = Decimal(message.rsplit(" is ", 1)[1].removesuffix(" ms.").replace(",", ""))
    assert best > 50
    # The best it names is reachable: a TTFT at it is accepted.
    assert clients["buyer"].post(API, body(ttft_p95_ms=str(best + 1)), format="json").status_code == 201


def test_only_a_buyer_submits(clients, market):
    assert clients["provider"].post(API, body(), format="json").status_code == 403
    assert clients["anonymous"].post(API, body(), format="json").status_code in (401, 403)
    assert not BuyerRequest.objects.exists()


def test_another_buyer_cannot_see_it(clients, market):
    created = clients["buyer"].post(API, body(), format="json").json()
    assert clients["other_buyer"].get(f"{API}{created['id']}/").status_code == 404
    assert clients["other_buyer"].get(API).json()["results"] == []
    assert clients["provider"].get(f"{API}{created['id']}/").status_code == 404
    assert clients["staff"].get(f"{API}{created['id']}/").json()["kind"] == "inference"


def test_an_idempotency_key_replays_the_answer_and_creates_one_request(clients, market):
    headers = {"HTTP_IDEMPOTENCY_KEY": "serve-32b-once"}
    first = clients["buyer"].post(API, body(), format="json", **headers)
    again = clients["buyer"].post(API, body(), format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert BuyerRequest.objects.count() == RequestInference.objects.count() == 1
    other = clients["buyer"].post(API, body(output_tokens_per_second="1000"), format="json", **headers)
    assert other.status_code == 422
    assert BuyerRequest.objects.count() == 1


def test_the_spend_cap_is_a_402_and_writes_nothing(clients, buyer, market):
    buyer.monthly_spend_cap = Decimal("1000")
    buyer.save(update_fields=["monthly_spend_cap"])
    response = clients["buyer"].post(API, body(), format="json")
    assert response.status_code == 402
    assert "3456.01" in response.json()["monthly_spend_cap"][0]
    assert not BuyerRequest.objects.exists()
    assert not RequestInference.objects.exists()


def test_the_list_reads_inference_requests_in_constant_queries(clients, market):
    def listed() -> tuple[int, list[dict]]:
        with CaptureQueriesContext(connection) as queries:
            rows = clients["buyer"].get(API).json()["results"]
        return len(queries), rows

    for gpu_models in (None, ["h20"], ["h100", "h20"]):
        extra = {} if gpu_models is None else {"gpu_models": gpu_models}
        assert clients["buyer"].post(API, body(**extra), format="json").status_code == 201
    listed()  # warm whatever the first read caches
    few, rows = listed()
    assert [row["kind"] for row in rows] == ["inference"] * 3
    assert [len(row["inference"]["gpu_models"]) for row in rows] == [0, 1, 2]
    for _ in range(3):
        assert clients["buyer"].post(API, body(gpu_models=["h20"]), format="json").status_code == 201
    many, rows = listed()
    assert len(rows) == 6
    assert many == few
