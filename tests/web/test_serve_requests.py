"""Requests in the inference form on the pages (issue 15): "Serve a model" submits one through
``services.request_submit_inference`` (errors beside their fields, nothing written on a refusal), and
the buyer's requests page shows it with its LLM, tokens/s placed against asked, TTFT target, cap per
million tokens, and per match the GPU model × replicas, tokens/s, TTFT and CNY per million tokens."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client

from marketplace import services
from marketplace.models import BuyerRequest, Listing, Match, MatchingRun, RequestInference
from tests.conftest import member
from tests.web.test_pages import text
from tests.web.test_serve_page import FORM, SERVE


@pytest.fixture
def market(make_listing):
    """As the API's inference tests: a near dear H100 (Qingpu) and a far cheap H20 (Zhongwei)."""
    return {
        "h100": make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_model="h100", price_per_gpu_hour=Decimal("13")),
        "h20": make_listing(region="ningxia-zhongwei", gpu_model="h20", price_per_gpu_hour=Decimal("6")),
    }


def inference_match(request: BuyerRequest, listing: Listing, *, replicas: int, gpus_per_replica: int, **figures):
    """A match of an inference request with its inference figures, written directly (the round's
    path writes them for real: ``services.plans``); the request's tokens/s placed grow with it."""
    price = listing.price_per_gpu_hour
    match = Match.objects.create(
        request=request,
        listing=listing,
        replicas=replicas,
        gpus_per_replica=gpus_per_replica,
        gpus=replicas * gpus_per_replica,
        price_per_gpu_hour=price,
        energy_cost_per_gpu_hour=Decimal("1"),
        cost_per_gpu_hour=price,
        rtt_ms=Decimal("35.8"),
        latency_class="batch",
        starts_at=request.start_by - timedelta(hours=1),
        ends_at=request.start_by - timedelta(hours=1) + timedelta(hours=request.duration_hours),
        **figures,
    )
    inference = request.inference
    inference.tokens_per_second_placed += figures["tokens_per_second"]
    inference.save(update_fields=["tokens_per_second_placed"])
    return match


# --- submitting ----------------------------------------------------------------------------------


def test_the_page_offers_a_submit_button_in_its_form(web):
    page = text(web["buyer"].get(SERVE))
    form = re.search(r'<form method="post" action="/buyer/serve/".*?</form>', page, re.S)
    assert form
    assert 'name="csrfmiddlewaretoken"' in form.group(0)
    assert '<button type="submit" id="serve-submit">Submit request</button>' in form.group(0)


def test_submitting_creates_the_inference_request_and_goes_to_it(web, buyer, market):
    response = web["buyer"].post(SERVE, FORM)
    assert response.status_code == 302
    request = BuyerRequest.objects.get(buyer=buyer)
    assert response["Location"] == f"/buyer/#request-{request.pk}"
    assert request.kind == "inference"
    assert (request.gpu_model.code, request.gpus_per_replica, request.replicas) == ("h20", 2, 1)
    inference = RequestInference.objects.get(request=request)
    assert (inference.output_tokens_per_second, inference.ttft_p95_ms, inference.precision) == (
        Decimal("2000.0"),
        Decimal("1500.0"),
        "FP8",
    )
    page = text(web["buyer"].get(response["Location"]))
    assert f"Request #{request.pk} submitted; the engine is placing it." in page
    card = re.search(rf'<article class="card request" id="request-{request.pk}">.*?</article>', page, re.S)
    assert card
    shown = card.group(0)
    assert f"Request #{request.pk}: serve DeepSeek-R1-Distill-Qwen-32B near " in shown
    assert '<span class="placed-vs-asked">0 of 2,000 output tokens/s placed</span>' in shown
    assert "TTFT p95 ≤ 1,500 ms" in shown
    assert "cap ¥20.00 per million output tokens" in shown
    assert "replicas placed" not in shown  # the GPU form's words are not an inference request's


def test_the_allow_list_ticked_is_kept(web, buyer, market):
    assert web["buyer"].post(SERVE, {**FORM, "gpu_models": ["h100", "h20"]}).status_code == 302
    inference = RequestInference.objects.get(request__buyer=buyer)
    assert sorted(inference.gpu_models.values_list("code", flat=True)) == ["h100", "h20"]


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"ttft_p95_ms": "5"}, "ttft_p95_ms", "the best TTFT from shanghai is"),
        ({"llm_model": "deepseek-r1", "gpu_models": ["rtx4090"]}, "llm_model", "fits no GPU model"),
        ({"precision": "INT8"}, "precision", "is served at"),
        ({"max_price_per_million_tokens": ""}, "max_price_per_million_tokens", "required"),
        ({"voucher_code": "NOPE-NOPE"}, "voucher_code", ""),
    ],
)
def test_a_refusal_is_shown_beside_its_field_and_writes_nothing(web, market, overrides, field, words):
    response = web["buyer"].post(SERVE, {**FORM, **overrides})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert words in " ".join(errors[field])
    assert not BuyerRequest.objects.exists()
    assert not RequestInference.objects.exists()
    assert 'value="2000"' in text(response)  # what was typed stays in the form


def test_the_spend_cap_is_shown_above_the_form(web, buyer, market):
    buyer.monthly_spend_cap = Decimal("100")
    buyer.save(update_fields=["monthly_spend_cap"])
    response = web["buyer"].post(SERVE, FORM)
    assert response.status_code == 400
    assert "monthly spend cap is 100" in " ".join(response.context["form"].non_field_errors())
    assert not BuyerRequest.objects.exists()


@pytest.mark.parametrize(("role", "expected"), [("provider", 403), ("staff", 403), ("anonymous", 302)])
def test_only_a_buyer_submits(web, market, role, expected):
    assert web[role].post(SERVE, FORM).status_code == expected
    assert not BuyerRequest.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(buyer, reference, market):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member("buy-csrf", buyer))
    assert client.post(SERVE, FORM).status_code == 403
    assert not BuyerRequest.objects.exists()


# --- the requests page ---------------------------------------------------------------------------


def test_the_requests_page_shows_tokens_per_second_placed_against_asked_and_each_match(web, buyer, market, now):
    request = services.request_submit_inference(
        buyer=buyer,
        now=now,
        **{**FORM, "prompt_tokens": 2000, "output_tokens": 500, "duration_hours": 24, "gpu_models": ["h20", "h100"]},
    )
    inference_match(
        request,
        market["h20"],
        replicas=1,
        gpus_per_replica=2,
        precision="FP8",
        tokens_per_second=Decimal("1200.0"),
        ttft_ms=Decimal("812.4"),
        price_per_million_tokens=Decimal("2.7778"),
    )
    inference_match(
        request,
        market["h100"],
        replicas=2,
        gpus_per_replica=1,
        precision="FP8",
        tokens_per_second=Decimal("1100.0"),
        ttft_ms=Decimal("402.0"),
        price_per_million_tokens=Decimal("6.5657"),
    )
    page = text(web["buyer"].get("/buyer/"))
    card = re.search(rf'<article class="card request" id="request-{request.pk}">.*?</article>', page, re.S)
    assert card
    shown = card.group(0)
    assert '<span class="placed-vs-asked">2,300 of 2,000 output tokens/s placed</span>' in shown
    summaries = re.findall(r"<summary>(.*?)</summary>", shown, re.S)
    assert len(summaries) == 2
    h20, h100 = (re.sub(r"<[^>]+>", "", summary) for summary in summaries)
    assert "1 × 2 NVIDIA H20 96GB in Zhongwei" in h20
    assert "1,200 output tokens/s, TTFT 812 ms" in h20
    assert "¥2.78 per million tokens" in h20
    assert "2 × 1 NVIDIA H100 SXM 80GB in " in h100
    assert "1,100 output tokens/s, TTFT 402 ms" in h100
    assert "¥6.57 per million tokens" in h100


def test_a_gpu_form_request_keeps_its_words(web, make_request):
    request = make_request()
    shown = text(web["buyer"].get("/buyer/"))
    assert f"Request #{request.pk}: 2 × 1 NVIDIA H20 96GB near " in shown
    assert "0 of 2 replicas placed" in shown
    assert "output tokens/s" not in shown


def test_the_requests_page_speaks_chinese_for_an_inference_request(web, buyer, market, now):
    request = services.request_submit_inference(
        buyer=buyer, now=now, **{**FORM, "prompt_tokens": 2000, "output_tokens": 500, "duration_hours": 24}
    )
    page = text(web["buyer"].get("/buyer/", HTTP_ACCEPT_LANGUAGE="zh-CN"))
    card = re.search(rf'<article class="card request" id="request-{request.pk}">.*?</article>', page, re.S)
    assert card
    shown = card.group(0)
    for english in ("output tokens/s placed", "serve DeepSeek", "per million output tokens", "TTFT p95 ≤"):
        assert english not in shown
    assert "DeepSeek-R1-Distill-Qwen-32B" in shown


def test_the_cancel_page_names_the_inference_request(web, buyer, market, now):
    request = services.request_submit_inference(
        buyer=buyer, now=now, **{**FORM, "prompt_tokens": 2000, "output_tokens": 500, "duration_hours": 24}
    )
    page = text(web["buyer"].get(f"/buyer/requests/{request.pk}/cancel/"))
    assert "serve DeepSeek-R1-Distill-Qwen-32B near " in page
    assert "2,000 output tokens/s" in page


GARBAGE = [
    {},
    {"llm_model": ["a", "b"], "gpu_models": ["nope", "h100"], "origin": "shanghai"},
    {**FORM, "ttft_p95_ms": "NaN", "duration_hours": "9" * 40, "start_by": "yesterday"},
    {**FORM, "output_tokens_per_second": "99999999", "max_price_per_million_tokens": "0.0001"},
    {**FORM, "output_tokens_per_second": "0.1", "max_price_per_million_tokens": "0.0001"},
    {**FORM, "gpu_models": ["rtx4090"], "llm_model": "deepseek-r1"},
    {**FORM, "start_by": "2999-01-01T00:00"},
    {**FORM, "voucher": "999999"},
]


@pytest.mark.parametrize("form", GARBAGE)
def test_garbage_submitted_is_never_a_500_and_writes_nothing(web, market, form):
    assert web["buyer"].post(SERVE, form).status_code == 400
    assert not BuyerRequest.objects.exists()


def test_an_inference_request_left_short_says_so_in_tokens_per_second(web, buyer, market, now):
    """The round records the tokens/s it could not place (and the first choice's replicas); the page
    says the tokens/s and the round's words, not the GPU form's replicas and cap per GPU-hour."""
    request = services.request_submit_inference(
        buyer=buyer, now=now, **{**FORM, "prompt_tokens": 2000, "output_tokens": 500, "duration_hours": 24}
    )
    reason = "1,200 of 2,000 tokens/s placed; capacity taken by higher-priority or cheaper-placed demand"
    MatchingRun.objects.create(
        trigger="manual",
        shard="h100+h20",
        status=MatchingRun.Status.SUCCEEDED,
        started_at=now,
        finished_at=now,
        unserved=[
            {
                "request": request.pk,
                "replicas": 1,
                "reason": reason,
                "blocked": {"kind": "capacity"},
                "tokens_per_second": 800.0,
            }
        ],
    )
    card = re.search(
        rf'<article class="card request" id="request-{request.pk}">.*?</article>',
        text(web["buyer"].get("/buyer/")),
        re.S,
    )
    assert card
    notice = re.search(r'<div class="notice warn unserved">.*?</div>', card.group(0), re.S)
    assert notice
    shown = notice.group(0)
    assert "800 of 2,000 output tokens/s are not placed yet." in shown
    assert reason in shown
    assert "replicas" not in shown
    assert "GPU·h" not in shown
    zh = text(web["buyer"].get("/buyer/", HTTP_ACCEPT_LANGUAGE="zh-CN"))
    assert "output tokens/s are not placed yet" not in zh
