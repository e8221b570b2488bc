"""The API's error messages follow Accept-Language: 简体中文 for a Chinese client, English otherwise.

Each case sends the same request three times: with ``Accept-Language: zh-CN``, with ``en`` and with
no header. All three answer the same status and the same field keys; English (asked for, or by
default) is exactly the text the API has always given (clients and tests compare it); Chinese is
the catalogue's. Texts stored in the database (a match's ``status_reason``, a round's left-out
reasons) are data written once, in English, whoever reads or triggers them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import translation
from rest_framework.test import APIClient

from marketplace import services
from marketplace.models import Match
from marketplace.selectors.engine import engine_request_specs
from tests.conftest import member
from tests.marketplace.test_api import LISTING_BODY, REQUEST_BODY
from tests.services_helpers import reserve

LANGUAGES = {"zh": "zh-CN,zh;q=0.9", "en": "en-US,en;q=0.8", "none": None}


def ask(client: APIClient, method: str, path: str, language: str | None, **kwargs):
    headers = {} if language is None else {"HTTP_ACCEPT_LANGUAGE": language}
    return getattr(client, method)(path, format="json", **kwargs, **headers)


@dataclass
class Case:
    """One request, and what each language must answer: its status, and per field key the English
    message and the Chinese one (a string for an exact match, or a compiled pattern)."""

    status: int
    send: Callable[[str | None], object]
    english: dict[str, str | re.Pattern]
    chinese: dict[str, str | re.Pattern]


def messages(response) -> dict[str, str]:
    """The answer's message per key: ``{"detail": …}`` or ``{field: [message]}``."""
    body = response.json()
    return {key: value[0] if isinstance(value, list) else value for key, value in body.items()}


def matches(text: str, expected: str | re.Pattern) -> bool:
    return bool(expected.fullmatch(text)) if isinstance(expected, re.Pattern) else text == expected


@pytest.fixture
def cases(clients, make_request, make_listing, now):
    """The representative errors, by name."""
    buyer, provider, anonymous = clients["buyer"], clients["provider"], clients["anonymous"]
    cancelled = make_request()
    services.request_cancel(request_id=cancelled.pk, buyer=cancelled.buyer)
    far = (now + timedelta(days=1000)).isoformat()
    buyer.post("/api/v1/requests/", REQUEST_BODY, format="json", HTTP_IDEMPOTENCY_KEY="i18n-order")
    return {
        # A field of the wrong JSON type: the serializer's own message.
        "field validation": Case(
            400,
            lambda lang: ask(
                APIClient(),
                "post",
                "/api/v1/auth/register/",
                lang,
                data={
                    "username": 7,
                    "password": "a-long-pass-phrase",
                    "email": "c@example.com",
                    "role": "buyer",
                    "organisation": "Carol AI",
                },
            ),
            {"username": "Not a valid string."},
            {"username": "不是有效的字符串。"},
        ),
        "unknown parameter": Case(
            400,
            lambda lang: ask(anonymous, "get", "/api/v1/listings/?max_rtt=5", lang),
            {"max_rtt": "Unknown parameter."},
            {"max_rtt": "未知参数。"},
        ),
        # A rule of supply, raised by the service, with its numbers in the sentence.
        "domain rule": Case(
            400,
            lambda lang: ask(provider, "post", "/api/v1/listings/", lang, data={**LISTING_BODY, "gpu_count": 12}),
            {"gpu_count": "12 GPUs do not fill whole nodes of 8."},
            {"gpu_count": "12 张 GPU 无法组成每节点 8 张的完整节点。"},
        ),
        # A sentence built from a window that moves with now.
        "time window": Case(
            400,
            lambda lang: ask(buyer, "post", "/api/v1/requests/", lang, data={**REQUEST_BODY, "start_by": far}),
            {"start_by": re.compile(r"Must be between \d{4}-\d\d-\d\d \d\d:\d\d and \d{4}-\d\d-\d\d \d\d:\d\d UTC\.")},
            {"start_by": re.compile(r"须在 UTC 时间 \d{4}-\d\d-\d\d \d\d:\d\d 至 \d{4}-\d\d-\d\d \d\d:\d\d 之间。")},
        ),
        # A DomainError of another status: a transition the request's status forbids.
        "invalid transition": Case(
            409,
            lambda lang: ask(buyer, "post", f"/api/v1/requests/{cancelled.pk}/cancel/", lang),
            {"status": "The request is already cancelled."},
            {"status": "该需求已处于 cancelled 状态。"},
        ),
        "not found (view)": Case(
            404,
            lambda lang: ask(buyer, "get", "/api/v1/requests/999999/", lang),
            {"detail": "Not found."},
            {"detail": "未找到。"},
        ),
        "not found (no route)": Case(
            404,
            lambda lang: ask(anonymous, "get", "/api/v1/listings/abc/", lang),
            {"detail": "Not found."},
            {"detail": "未找到。"},
        ),
        "permission": Case(
            403,
            lambda lang: ask(buyer, "post", "/api/v1/listings/", lang, data=LISTING_BODY),
            {"detail": "Only provider accounts may do this."},
            {"detail": "只有算力提供方账户才能执行此操作。"},
        ),
        # DRF's own message, from DRF's zh_Hans catalogue.
        "not authenticated": Case(
            401,
            lambda lang: ask(anonymous, "get", "/api/v1/requests/", lang),
            {"detail": "Authentication credentials were not provided."},
            {"detail": "身份认证信息未提供。"},
        ),
        "idempotency conflict": Case(
            422,
            lambda lang: ask(
                buyer,
                "post",
                "/api/v1/requests/",
                lang,
                data={**REQUEST_BODY, "replicas": 9},
                HTTP_IDEMPOTENCY_KEY="i18n-order",
            ),
            {"Idempotency-Key": "This key was used with a different request; use a new key."},
            {"Idempotency-Key": "此键已用于另一个不同的请求，请使用新的键。"},
        ),
        # Refused by middleware that runs before LocaleMiddleware: it picks the language itself.
        "unstorable text": Case(
            400,
            lambda lang: ask(anonymous, "get", "/api/v1/listings/?origin=%00", lang),
            {"origin": "This query parameter contains a NUL character (U+0000); no field accepts it."},
            {"origin": "该查询参数中含有NUL 字符（U+0000），任何字段都不接受。"},
        ),
    }


CASES = [
    "field validation",
    "unknown parameter",
    "domain rule",
    "time window",
    "invalid transition",
    "not found (view)",
    "not found (no route)",
    "permission",
    "not authenticated",
    "idempotency conflict",
    "unstorable text",
]


@pytest.mark.parametrize("name", CASES)
def test_an_error_speaks_the_clients_language_and_english_is_unchanged(cases, name):
    case = cases[name]
    answers = {lang: case.send(header) for lang, header in LANGUAGES.items()}
    for lang, response in answers.items():
        assert response.status_code == case.status, (lang, response.content)
        assert set(response.json()) == set(case.english), (lang, response.json())
    for lang, expected in (("en", case.english), ("none", case.english), ("zh", case.chinese)):
        got = messages(answers[lang])
        for key, text in expected.items():
            assert matches(got[key], text), (lang, key, got[key])
    assert "\\u" not in answers["zh"].content.decode()  # written as characters, not escapes
    assert answers["zh"]["Content-Language"] == "zh-hans"
    assert answers["none"]["Content-Language"] == "en"


def test_the_scope_a_key_lacks_is_named_in_either_language(clients, buyer):
    secret = services.api_key_create(
        organisation=buyer, user=member("reader", buyer), name="read only", scopes=["read"]
    ).secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    english = ask(client, "post", "/api/v1/requests/", None, data=REQUEST_BODY)
    chinese = ask(client, "post", "/api/v1/requests/", "zh-CN", data=REQUEST_BODY)
    assert english.status_code == chinese.status_code == 403
    assert english.json() == {"detail": 'This API key lacks the "trade" scope (it has: read).'}
    assert chinese.json() == {"detail": '该 API 密钥缺少 "trade" 权限范围（现有：read）。'}


def test_a_throttled_client_is_told_so_in_its_language(reference, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "1/min", "user": "1/min", "login": "1/min"})
    answers = {}
    for lang, header in LANGUAGES.items():
        cache.clear()
        client = APIClient()
        assert ask(client, "get", "/api/v1/regions/", header).status_code == 200
        answers[lang] = ask(client, "get", "/api/v1/regions/", header)
    cache.clear()
    assert {response.status_code for response in answers.values()} == {429}
    for lang in ("en", "none"):
        detail = answers[lang].json()["detail"]
        assert re.fullmatch(r"Request was throttled\. Expected available in \d+ seconds?\.", detail)
    assert re.fullmatch(r"请求已被限流。 预计 \d+ 秒后可用。", answers["zh"].json()["detail"])


def test_a_spend_cap_refusal_names_the_cap_in_either_language(clients, buyer):
    buyer.monthly_spend_cap = 1
    buyer.save(update_fields=["monthly_spend_cap"])
    english = ask(clients["buyer"], "post", "/api/v1/requests/", None, data=REQUEST_BODY)
    chinese = ask(clients["buyer"], "post", "/api/v1/requests/", "zh-CN", data=REQUEST_BODY)
    assert english.status_code == chinese.status_code == 402
    assert re.fullmatch(
        r"This request may cost up to [\d.]+ CNY; the organisation's monthly spend cap is 1(\.00)? CNY "
        r"and 0(\.00)? CNY of it is committed for \d{4}-\d\d\.",
        english.json()["monthly_spend_cap"][0],
    )
    assert re.fullmatch(
        r"该需求最多可能花费 [\d.]+ 元；组织的月度支出上限为 1(\.00)? 元，其中 0(\.00)? 元已计入 \d{4}-\d\d 的支出。",
        chinese.json()["monthly_spend_cap"][0],
    )


def test_a_stored_status_reason_reads_the_same_in_every_language(clients, make_listing, make_request, now):
    request = make_request(gpus_per_replica=8, replicas=1)
    reserve(make_listing(), request, now)
    match = Match.objects.get(request=request)
    cancelled = ask(clients["buyer"], "post", f"/api/v1/matches/{match.pk}/cancel/", "zh-CN")
    assert cancelled.status_code == 200, cancelled.content
    reads = {
        lang: ask(clients["buyer"], "get", f"/api/v1/matches/{match.pk}/", header).json()
        for lang, header in LANGUAGES.items()
    }
    assert {read["status_reason"] for read in reads.values()} == {"cancelled by the buyer"}


def test_a_rounds_left_out_reason_is_english_whoever_triggers_it(make_request, now):
    """A round's snapshot stores why it left a row out: the rule's message, in English, even when
    the round runs inside a Chinese client's request (an eager trigger)."""
    request = make_request()
    request.gpus_per_replica = 3  # as a row that breaks a rule reads (the database's checks refuse one)
    with translation.override("zh-hans"):
        _, left_out = engine_request_specs([request], now)
        assert translation.get_language() == "zh-hans"
    assert [row.reason for row in left_out] == ["gpus_per_replica: Must be 1, 2, 4 or 8."]


def test_a_reliability_note_is_in_the_readers_language(clients, make_listing):
    listing = make_listing()
    english = ask(clients["anonymous"], "get", f"/api/v1/listings/{listing.pk}/", None).json()
    chinese = ask(clients["anonymous"], "get", f"/api/v1/listings/{listing.pk}/", "zh-CN").json()
    assert english["reliability_note"] == "too little history (0 matches in 30 days)"
    assert chinese["reliability_note"] == "历史记录不足（30 天内 0 次撮合）"

