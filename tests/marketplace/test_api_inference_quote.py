"""POST /api/v1/quotes/ in the inference form (issue 15): an LLM at a throughput under a TTFT
target, quoted on every GPU model that can serve it, with the frontier by GPU model."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from marketplace.models import BuyerRequest
from tests.inference_builders import INFERENCE_BODY, inference_body

API = "/api/v1/quotes/"
BODY = INFERENCE_BODY
body = inference_body


@pytest.fixture
def market(make_listing):
    """A near dear H100 (Qingpu, 2.8 ms from Shanghai) and a far cheap H20 (Zhongwei, 35.8 ms)."""
    return {
        "h100": make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_model="h100", price_per_gpu_hour=Decimal("13")),
        "h20": make_listing(region="ningxia-zhongwei", gpu_model="h20", price_per_gpu_hour=Decimal("6")),
    }


def test_the_far_cheap_h20_wins_within_the_ttft_and_the_frontier_prices_every_gpu_model(clients, market):
    response = clients["buyer"].post(API, body(), format="json")
    assert response.status_code == 200, response.data
    quote = response.json()
    assert quote["kind"] == "inference"
    chosen = quote["chosen"]
    assert (chosen["gpu_model"], chosen["gpus_per_replica"], chosen["source"]) == ("h20", 2, "modelled")
    assert chosen["price_per_million_tokens"] == "1.6667"  # 2 GPUs × 6 CNY an hour ÷ 7.2 Mtok
    assert [line["listing_id"] for line in quote["placement"]] == [market["h20"].pk]
    assert quote["placement"][0]["buyer_pays_per_gpu_hour"] == "6.0000"
    assert quote["buyer_pays_total"] == "288.00"  # 2 GPUs × 24 h × 6
    assert quote["tokens_per_second_placed"] >= 2000
    frontier = {row["gpu_model"]: row for row in quote["frontier"]}
    assert set(frontier) == {"h100", "h800", "h20", "a100", "a800", "l40s", "rtx4090", "ascend-910b"}
    assert frontier["h100"]["price_per_million_tokens"] == "1.8056"  # 1 GPU × 13 ÷ 7.2
    assert frontier["h100"]["regions"] == ["yrd-qingpu-wujiang-jiashan"]
    assert frontier["h100"]["ttft_ms"] < frontier["h20"]["ttft_ms"] <= 1500
    assert frontier["a100"]["blocked"] == "a100: none free"
    assert not BuyerRequest.objects.exists()


def test_a_tight_ttft_keeps_it_near(clients, market):
    # Within 700 ms the H20s still reach Shanghai, but only four at a time (faster prefill): dearer.
    quote = clients["buyer"].post(API, body(ttft_p95_ms="700"), format="json").json()
    assert (quote["chosen"]["gpu_model"], quote["placement"][0]["region"]) == ("h100", "yrd-qingpu-wujiang-jiashan")
    h20 = next(row for row in quote["frontier"] if row["gpu_model"] == "h20")
    assert (h20["gpus_per_replica"], h20["price_per_million_tokens"]) == (4, "3.3333")  # 4 × 6 ÷ 7.2
    # Within 320 ms no H20 setup reaches Zhongwei's 35.8 ms; two H100s in Qingpu do.
    quote = clients["buyer"].post(API, body(ttft_p95_ms="320"), format="json").json()
    assert (quote["chosen"]["gpu_model"], quote["chosen"]["gpus_per_replica"]) == ("h100", 2)
    assert quote["chosen"]["ttft_ms"] <= 320
    blocked = {row["gpu_model"]: row["blocked"] for row in quote["frontier"]}
    assert blocked["h20"].startswith("h20 within 320 ms TTFT: none free within ")


def test_a_model_too_big_for_a_gpu_is_never_offered_there(clients, make_listing):
    make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_model="rtx4090", price_per_gpu_hour=Decimal("1.3"))
    make_listing(region="ningxia-zhongwei", gpu_model="h20", price_per_gpu_hour=Decimal("6"))
    quote = clients["buyer"].post(
        API, body(llm_model="deepseek-r1", output_tokens_per_second="300", max_price_per_million_tokens="500"),
        format="json",
    ).json()  # fmt: skip
    assert quote["chosen"]["gpu_model"] == "h20"
    frontier = {row["gpu_model"]: row for row in quote["frontier"]}
    assert frontier["rtx4090"]["blocked"] == "rtx4090: 671B at FP8 does not fit 24 GB on one node of 8"
    assert frontier["rtx4090"]["replicas_placed"] == 0


def test_a_price_cap_says_what_blocked_the_dear_gpu_model(clients, market):
    quote = clients["buyer"].post(API, body(max_price_per_million_tokens="1.7"), format="json").json()
    frontier = {row["gpu_model"]: row for row in quote["frontier"]}
    assert frontier["h100"]["blocked"] == "h100 within 1,500 ms TTFT: none free under 1.70 CNY/Mtok"
    assert quote["chosen"]["gpu_model"] == "h20"


def test_the_allow_list_limits_the_gpu_models_quoted(clients, market):
    quote = clients["buyer"].post(API, body(gpu_models=["h100", "h100"]), format="json").json()
    assert [row["gpu_model"] for row in quote["frontier"]] == ["h100"]
    assert quote["chosen"]["gpu_model"] == "h100"
    assert len(quote["alternatives"]) == 4  # FP8 at 1, 2, 4 and 8 GPUs, once each


def test_a_measured_profile_is_used_and_named(clients, market):
    profile = {
        "llm_model": "deepseek-r1-distill-qwen-32b", "precision": "FP8", "gpus_per_replica": 1, "prompt_tokens": 2000,
        "concurrency": 64, "output_tokens_per_second": "2500.0", "ttft_ms": "600.0",
        "measured_at": (timezone.now() - timedelta(days=1)).isoformat(),
    }  # fmt: skip
    listing = market["h20"]
    published = clients["provider"].post(f"/api/v1/listings/{listing.pk}/profiles/", profile, format="json")
    assert published.status_code == 201
    chosen = clients["buyer"].post(API, body(), format="json").json()["chosen"]
    assert (chosen["source"], chosen["gpus_per_replica"], chosen["tokens_per_second_per_replica"]) == (
        "measured",
        1,
        2500.0,
    )
    assert chosen["price_per_million_tokens"] == "0.8333"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"gpu_model": "h20"}, "gpu_model"),  # both forms at once
        ({"replicas": 2, "max_price_per_gpu_hour": "10"}, "replicas"),
        ({"llm_model": "gpt-5"}, "llm_model"),  # unknown model
        ({"llm_model": "deepseek-r1", "gpu_models": ["rtx4090"]}, "llm_model"),  # fits no GPU
        ({"ttft_p95_ms": "50"}, "ttft_p95_ms"),  # below any placement
        ({"llm_model": "glm-4-9b-chat", "precision": "INT4-AWQ"}, "precision"),  # not served at it
        ({"precision": "FP4"}, "precision"),
        ({"prompt_tokens": 200_000}, "prompt_tokens"),  # over the model's context
        ({"output_tokens_per_second": "0"}, "output_tokens_per_second"),
        ({"output_tokens_per_second": 2000}, "output_tokens_per_second"),  # a number, not a decimal string
        ({"max_price_per_million_tokens": "-1"}, "max_price_per_million_tokens"),
        ({"output_tokens": 0}, "output_tokens"),
        ({"origin": "atlantis"}, "origin"),
        ({"gpu_models": ["h9000"]}, "gpu_models"),
        ({"gpu_models": []}, "gpu_models"),
        ({"duration_hours": 0}, "duration_hours"),
        ({"start_by": "2001-01-01T00:00:00Z"}, "start_by"),
        ({"voucher_code": "NOPE"}, "voucher_code"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_inference_terms_are_a_400_naming_the_field(clients, market, overrides, field):
    response = clients["buyer"].post(API, body(**overrides), format="json")
    assert response.status_code == 400, response.data
    assert field in response.data, response.data


def test_a_ttft_no_placement_reaches_names_the_best_reachable_from_the_origin(clients, market):
    response = clients["buyer"].post(API, body(ttft_p95_ms="50"), format="json")
    (message,) = response.data["ttft_p95_ms"]
    assert "the best TTFT from shanghai is " in message
    best = int(message.rsplit(" is ", 1)[1].removesuffix(" ms.").replace(",", ""))
    assert 100 < best < 200  # 1 ms + 100 ms queueing + the fastest prefill (eight H100s)
    assert clients["buyer"].post(API, body(ttft_p95_ms=str(best + 1)), format="json").status_code == 200


def test_a_model_that_fits_no_gpu_says_why_for_each(clients, market):
    response = clients["buyer"].post(API, body(llm_model="deepseek-r1", gpu_models=["rtx4090", "l40s"]), format="json")
    (message,) = response.data["llm_model"]
    assert "rtx4090: 671B at FP8 does not fit 24 GB on one node of 8" in message
    assert "l40s: 671B at FP8 does not fit 48 GB on one node of 8" in message


def test_only_buyers_quote_in_the_inference_form(clients, market):
    expected = {
        "buyer": 200, "other_buyer": 200, "provider": 403, "other_provider": 403, "anonymous": 401, "staff": 403,
    }  # fmt: skip
    assert {role: clients[role].post(API, body(), format="json").status_code for role in expected} == expected


def test_the_gpu_form_is_unchanged(clients, market):
    gpu_form = {
        "gpu_model": "h20", "gpus_per_replica": 1, "replicas": 2, "origin": "shanghai", "latency_class": "standard",
        "max_price_per_gpu_hour": "10", "duration_hours": 24,
    }  # fmt: skip
    quote = clients["buyer"].post(API, gpu_form, format="json").json()
    assert quote["replicas_placed"] == 2
    assert "kind" not in quote
    assert quote["frontier"][0]["latency_class"] == "realtime"


def test_a_voucher_is_deducted_from_the_price_per_million_tokens(clients, make_listing, buyer, now):
    from marketplace import services
    from marketplace.models import Region

    program = services.voucher_program_create(
        name="Qingyang compute voucher",
        sponsor="Qingyang government",
        percent=Decimal("30"),
        budget=Decimal("100000"),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=365),
        eligible_regions=[Region.objects.get(code="gansu-qingyang")],
    )
    code = services.vouchers_issue(program_id=program.pk, sponsor_provider=None, buyer=buyer)[0].code
    make_listing(region="gansu-qingyang", price_per_gpu_hour=Decimal("5.59"))
    quote = clients["buyer"].post(API, body(voucher_code=code, gpu_models=["h20"]), format="json").json()
    (line,) = quote["placement"]
    assert (line["region"], line["gpus"], line["subsidy_per_gpu_hour"]) == ("gansu-qingyang", 2, "1.6770")
    # 2 GPUs × (5.59 − 30 %) = 7.826 CNY an hour for 7.2 Mtok; over 48 GPU-hours the settlement's
    # rounding: 268.32 gross − 80.49 subsidy (rounded down).
    assert quote["chosen"]["price_per_million_tokens"] == "1.0869"
    assert quote["buyer_pays_total"] == line["buyer_pays_total"] == "187.83"


def test_the_quote_reads_a_constant_number_of_queries_whatever_the_listings(clients, make_listing):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_with(listings: int) -> int:
        for _ in range(listings):
            make_listing(region="ningxia-zhongwei", gpu_model="h20")
        with CaptureQueriesContext(connection) as captured:
            assert clients["buyer"].post(API, body(), format="json").status_code == 200
        return len(captured)

    assert queries_with(1) == queries_with(5)


def test_the_answer_has_exactly_the_fields_its_schema_documents(clients, market):
    from marketplace.api.quotes import InferenceAlternativeOut, InferenceQuoteOut, QuotePlacementOut

    quote = clients["buyer"].post(API, body(), format="json").json()
    assert set(quote) == set(InferenceQuoteOut().fields)
    for row in [quote["chosen"], *quote["frontier"], *quote["alternatives"]]:
        assert set(row) == set(InferenceAlternativeOut().fields)
    assert set(quote["placement"][0]) == set(QuotePlacementOut().fields)
