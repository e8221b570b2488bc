"""The buyer's "Serve a model" page (issue 15): the inference form with a live quote from the same
selector as ``POST /api/v1/quotes/`` in the inference form, the frontier by GPU model as a table and
as the chart's points, errors beside the field they name, and the chosen alternative offered as a
pre-filled GPU-form request."""

from __future__ import annotations

import html
import json
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from marketplace.models import BuyerRequest
from tests.web.test_pages import text

SERVE = "/buyer/serve/"
QUOTE = "/buyer/serve/quote/"
FORM = {
    "llm_model": "deepseek-r1-distill-qwen-32b",
    "output_tokens_per_second": "2000",
    "prompt_tokens": "2000",
    "output_tokens": "500",
    "ttft_p95_ms": "1500",
    "origin": "shanghai",
    "max_price_per_million_tokens": "20",
    "duration_hours": "24",
    "precision": "FP8",
}


@pytest.fixture
def market(make_listing):
    """As the API's inference quote tests: a near dear H100 (Qingpu) and a far cheap H20 (Zhongwei)."""
    return {
        "h100": make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_model="h100", price_per_gpu_hour=Decimal("13")),
        "h20": make_listing(region="ningxia-zhongwei", gpu_model="h20", price_per_gpu_hour=Decimal("6")),
    }


def chart_points(page: str) -> list[dict]:
    found = re.search(r'<div id="frontier-points" hidden data-points="([^"]*)"', page)
    assert found, "the chart's points are missing"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize(
    ("role", "method", "url", "expected"),
    [
        ("anonymous", "get", SERVE, 302),
        ("provider", "get", SERVE, 403),
        ("staff", "get", SERVE, 403),
        ("provider", "post", QUOTE, 403),
        ("anonymous", "post", QUOTE, 302),
        ("buyer", "get", QUOTE, 405),
    ],
)
def test_the_page_and_its_quote_are_for_buyers_only(web, role, method, url, expected):
    assert getattr(web[role], method)(url).status_code == expected


def test_the_page_opens_in_english_and_chinese_and_says_what_submitting_does(web):
    en = text(web["buyer"].get(SERVE))
    assert "<h1>Serve a model</h1>" in en
    assert "Submit the request and the engine places it on any GPU models that serve it" in en
    assert "DeepSeek-R1-Distill-Qwen-32B" in en  # the model menu, from the reference catalogue
    assert 'name="gpu_models"' in en
    assert 'type="checkbox"' in en
    assert "<script>" not in en  # no inline code under the Content-Security-Policy
    zh = text(web["buyer"].get(SERVE, HTTP_ACCEPT_LANGUAGE="zh-CN"))
    assert "部署模型" in zh
    assert "Submit the request" not in zh
    assert "Output tokens/s" not in zh
    assert 'href="/buyer/serve/"' in text(web["buyer"].get("/buyer/"))  # linked from the dashboard


def test_a_quote_shows_the_chosen_placement_the_frontier_rows_and_the_chart_points(web, market):
    response = web["buyer"].post(QUOTE, FORM)
    assert response.status_code == 200
    page = text(response)
    api = Client()
    api.force_login(get_user_model().objects.get(username="buy"))
    body = {**FORM, "prompt_tokens": 2000, "output_tokens": 500, "duration_hours": 24}
    quote = api.post("/api/v1/quotes/", body, content_type="application/json").json()
    # The page and the API quote the same thing: the far H20 wins at ¥1.67 per million tokens.
    assert quote["chosen"]["gpu_model"] == "h20"
    assert re.search(r'data-paid="per-mtok">¥1\.67<', page)
    assert re.search(r'data-paid="serve-total">¥288\.00<', page)
    rows = re.findall(r'<tr(?: class="chosen")? data-gpu-model="([a-z0-9-]+)"', page)
    assert rows == [row["gpu_model"] for row in quote["frontier"]]
    assert '<tr class="chosen" data-gpu-model="h20">' in page
    assert "a100: none free" in page
    points = chart_points(page)
    placed = [row for row in quote["frontier"] if row["price_per_million_tokens"] is not None]
    assert len(points) == len(placed) == 2
    by_price = sorted(points, key=lambda p: p["price"])
    assert [p["price"] for p in by_price] == [1.6667, 1.8056]
    assert [p["chosen"] for p in by_price] == [True, False]
    assert by_price[0]["ttft_ms"] == next(r["ttft_ms"] for r in quote["frontier"] if r["gpu_model"] == "h20")
    assert not BuyerRequest.objects.exists()  # a quote writes nothing


def test_the_chosen_alternative_prefills_the_gpu_form_within_the_ttft(web, market):
    page = text(web["buyer"].post(QUOTE, FORM))
    href = re.search(r'id="place-as-gpu-request" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    url = urlsplit(href)
    assert url.path == "/buyer/requests/new/"
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert {key: query[key] for key in ("gpu_model", "gpus_per_replica", "origin", "latency_class")} == {
        "gpu_model": "h20",
        "gpus_per_replica": "2",
        "origin": "shanghai",
        "latency_class": "custom",
    }
    assert query["duration_hours"] == "24"
    # The RTT bound leaves room for prefill and queueing within the 1,500 ms TTFT, and reaches Zhongwei.
    assert 35.8 <= float(query["max_rtt_ms"]) < 1500
    assert Decimal(query["max_price_per_gpu_hour"]) >= Decimal("6")
    form = web["buyer"].get(href).context["form"]
    assert not form.is_bound
    assert form["gpu_model"].value() == "h20"
    assert form["max_rtt_ms"].value() == query["max_rtt_ms"]
    # Submitting the pre-filled form places the request the GPU form way, within its terms.
    submitted = web["buyer"].post("/buyer/requests/new/", query)
    assert submitted.status_code == 302, submitted.context["form"].errors
    placed = BuyerRequest.objects.get()
    assert (placed.gpu_model.code, placed.gpus_per_replica, placed.max_rtt_ms) == (
        "h20",
        2,
        Decimal(query["max_rtt_ms"]),
    )


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"ttft_p95_ms": "5"}, "ttft_p95_ms", "the best TTFT from shanghai is"),
        ({"precision": "INT8"}, "precision", "is served at"),
        ({"prompt_tokens": "200000"}, "prompt_tokens", "exceed"),
        ({"voucher_code": "NOPE-NOPE"}, "voucher_code", ""),
        ({"max_price_per_million_tokens": "-1"}, "max_price_per_million_tokens", ""),
        ({"output_tokens_per_second": "1e5"}, "output_tokens_per_second", "digits 0-9"),
        ({"llm_model": "gpt-5"}, "llm_model", ""),
    ],
)
def test_a_bad_field_is_named_beside_it(web, market, overrides, field, words):
    response = web["buyer"].post(QUOTE, {**FORM, **overrides})
    assert response.status_code == 200
    page = text(response)
    assert "frontier-points" not in page  # no quote for terms that break a rule
    message = response.context["shown_errors"][field]
    assert message
    assert words in " ".join(message)
    slot = re.search(rf'<span class="error" id="err-{field}" role="alert" hx-swap-oob="true">([^<]*)</span>', page)
    assert slot
    assert slot.group(1).strip()


def test_an_empty_field_asks_to_be_filled_in_not_an_error(web, market):
    page = text(web["buyer"].post(QUOTE, {k: v for k, v in FORM.items() if k != "max_price_per_million_tokens"}))
    assert "Fill in Price cap per million output tokens (CNY) to see a quote." in page
    assert "This field is required." not in page


GARBAGE = [
    {},
    {"llm_model": ["a", "b"], "gpu_models": ["nope", "h100"], "origin": "\x00"},
    {**FORM, "ttft_p95_ms": "NaN", "duration_hours": "9" * 40, "start_by": "yesterday"},
    {**FORM, "output_tokens_per_second": "99999999999", "prompt_tokens": "-3", "precision": "FP4"},
    {**FORM, "gpu_models": ["rtx4090"], "llm_model": "deepseek-r1"},
    {**FORM, "start_by": "2999-01-01T00:00"},
]


@pytest.mark.parametrize("form", GARBAGE)
def test_garbage_is_never_a_500(web, market, form):
    # 400: a NUL in a field is refused before any view (the site's middleware); else the panel.
    nul = any("\x00" in value for value in form.values() if isinstance(value, str))
    assert web["buyer"].post(QUOTE, form).status_code == (400 if nul else 200)


def test_a_model_too_big_for_the_allowed_gpus_names_the_model(web, market):
    response = web["buyer"].post(QUOTE, {**FORM, "llm_model": "deepseek-r1", "gpu_models": ["rtx4090"]})
    assert "fits no GPU model" in " ".join(response.context["shown_errors"]["llm_model"])


def test_the_quote_panel_speaks_chinese(web, market):
    page = text(web["buyer"].post(QUOTE, FORM, HTTP_ACCEPT_LANGUAGE="zh-CN"))
    assert "按 GPU 型号" in page
    assert "You pay per million output tokens" not in page
