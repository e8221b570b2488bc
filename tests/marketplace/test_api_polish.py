"""API polish (issue 19): list filters, unknown fields, JSON for every error under /api/, one
number format in explanations, and a schema that tags, summarises and gives units everywhere."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.urls import include, path
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.views import APIView

from marketplace import services
from marketplace.models import Match
from marketplace.services.rounds import round_run
from tests.services_helpers import reserve

# --- filters -------------------------------------------------------------------------------------


def test_matches_filter_by_request_listing_status_and_creation_time(clients, make_listing, make_request, now):
    first = reserve(make_listing(), make_request(gpus_per_replica=8, replicas=1), now).matches[0]
    second = reserve(make_listing(), make_request(gpus_per_replica=8, replicas=1), now).matches[0]
    Match.objects.filter(pk=second.pk).update(created_at=now + timedelta(hours=2))
    client = clients["buyer"]

    def ids(query):
        response = client.get(f"/api/v1/matches/?{query}")
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids(f"request={first.request_id}") == [first.pk]
    assert ids(f"listing={second.listing_id}") == [second.pk]
    assert sorted(ids(f"status={first.status}")) == sorted([first.pk, second.pk])
    after = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids(f"created_after={after}") == [second.pk]
    assert ids(f"created_before={after}") == [first.pk]


def test_filtering_by_another_partys_request_answers_an_empty_list(clients, make_listing, make_request, now):
    match = reserve(make_listing(), make_request(gpus_per_replica=8, replicas=1), now).matches[0]
    response = clients["other_buyer"].get(f"/api/v1/matches/?request={match.request_id}")
    assert response.status_code == 200
    assert response.json()["count"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("request=abc", "request"),
        ("listing=99999999999999999999999", "listing"),  # past the database's 64-bit ids: a 400, not a 500
        ("status=nope", "status"),
        ("created_after=2026-12-04T09:00:00", "created_after"),
        ("created_before=yesterday", "created_before"),
        ("requests=1", "requests"),
    ],
)
def test_a_bad_match_filter_is_a_400_naming_it(clients, query, field):
    response = clients["buyer"].get(f"/api/v1/matches/?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_requests_filter_by_status(clients, make_request):
    make_request()
    cancelled = make_request()
    assert clients["buyer"].post(f"/api/v1/requests/{cancelled.pk}/cancel/").status_code == 200
    response = clients["buyer"].get("/api/v1/requests/?status=cancelled")
    assert [row["id"] for row in response.json()["results"]] == [cancelled.pk]
    assert list(clients["buyer"].get("/api/v1/requests/?status=gone").json()) == ["status"]


# --- unknown fields ------------------------------------------------------------------------------


def test_an_unknown_body_field_is_a_400_naming_it_and_nothing_is_written(clients):
    body = {
        "gpu_model": "h20",
        "gpus_per_replica": 8,
        "replicas": 1,
        "origin": "shanghai",
        "max_price_per_gpu_hour": "9.00",
        "duration_hours": 24,
        "max_rtt": "30.0",
    }
    response = clients["buyer"].post("/api/v1/requests/", body)
    assert response.status_code == 400
    assert response.json() == {"max_rtt": ["Unknown field."]}
    assert clients["buyer"].get("/api/v1/requests/").json()["count"] == 0


@pytest.mark.parametrize("blank", ["", " "])
def test_a_blank_decimal_is_a_400_even_where_null_is_allowed(clients, provider, blank):
    program = services.voucher_program_create(
        name="Blank caps",
        sponsor=provider.name,
        sponsor_provider=provider,
        percent=Decimal(10),
        budget=Decimal(100),
        valid_from=timezone.now(),
        valid_until=timezone.now() + timedelta(days=30),
    )
    response = clients["provider"].post(f"/api/v1/voucher-programs/{program.pk}/vouchers/", {"cap": blank})
    assert response.status_code == 400
    assert list(response.json()) == ["cap"]


def test_the_token_endpoint_refuses_unknown_fields_too(clients):
    response = clients["anonymous"].post("/api/v1/auth/token/", {"username": "buy", "password": "x", "otp": "1"})
    assert response.json() == {"otp": ["Unknown field."]}


# --- JSON for every answer under /api/ -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/nope/",
        "/api/v1/listings/null,null/",
        "/api/v1/listings/abc/fail-nodes/",
        "/api/v1/requests/-1/",
        "/api/v1/requests/x/cancel/",
        "/api/v1/matches/1.5/",
        "/api/v1/matches/x/cancel/",
        "/api/v1/regions/no%20such/",
        "/api/v1/voucher-programs/x/",
        "/api/v1/voucher-programs/x/vouchers/",
        "/api/v1/voucher-programs/x/report/",
    ],
)
def test_a_malformed_id_in_any_path_is_a_json_404(clients, url):
    response = clients["buyer"].get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_method_not_allowed_is_json(clients):
    response = clients["buyer"].put("/api/v1/matches/")
    assert response.status_code == 405
    assert response.json()["detail"]


class Broken(APIView):
    def get(self, request):
        raise RuntimeError("a bug")


urlpatterns = [
    path("api/v1/broken/", Broken.as_view()),
    path("broken/", Broken.as_view()),
    path("", include("config.urls")),
]
handler500 = "marketplace.api.errors.server_error"


@override_settings(ROOT_URLCONF=__name__)
def test_an_exception_in_a_view_is_a_json_500_under_api_and_a_page_elsewhere(clients):
    client = clients["buyer"]
    client.raise_request_exception = False
    response = client.get("/api/v1/broken/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Server error."}
    page = client.get("/broken/")
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")


# --- one number format ---------------------------------------------------------------------------

MONEY_TEXT = re.compile(r"^\d+\.\d{4}$")
UTC_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_a_matched_requests_explanation_writes_money_and_times_as_the_api_does(clients, make_listing, make_request):
    make_listing(region="ningxia-zhongwei", price_per_gpu_hour=Decimal("5.5"))  # cheap, too far for realtime
    make_listing(region="yrd-qingpu-wujiang-jiashan", price_per_gpu_hour=Decimal("7.25"))
    request = make_request(latency_class="realtime", replicas=1)
    round_run(shard="h20", trigger="manual")
    response = clients["buyer"].get(f"/api/v1/matches/?request={request.pk}")
    match = response.json()["results"][0]
    explanation = match["explanation"]
    for name in ("price_per_gpu_hour", "energy_cost_per_gpu_hour", "subsidy_per_gpu_hour", "cost_per_gpu_hour"):
        assert MONEY_TEXT.match(explanation[name]), (name, explanation[name])
        assert len(explanation[name].split(".")[1]) == len(match["price_per_gpu_hour"].split(".")[1])
    assert MONEY_TEXT.match(explanation["latency_cost_per_gpu_hour"])
    assert explanation["rejected"], "a second listing was there to reject"
    for rejected in explanation["rejected"]:
        assert MONEY_TEXT.match(rejected["price_per_gpu_hour"])
    for when in (explanation["starts_at"], match["starts_at"], match["ends_at"], match["created_at"]):
        assert UTC_TEXT.match(when), when


# --- the schema ----------------------------------------------------------------------------------

#: Field names that are money, a time span or a latency, and the units one of which each must state.
UNIT_WORDS = {
    re.compile(r"price|cost|subsidy|budget|gross|fee|earns|pays|spent|reserved|remaining|cap"): ("CNY", "%"),
    re.compile(r"_ms$|rtt"): ("ms",),
    re.compile(r"hours"): ("hours", "GPU-hours"),
}


def _walk_properties(node, name=""):
    if isinstance(node, dict):
        if "properties" in node:
            yield from node["properties"].items()
        for key, value in node.items():
            yield from _walk_properties(value, key)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_properties(value, name)


def test_every_operation_has_a_tag_a_summary_and_a_description_and_every_amount_a_unit():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    bare = [
        f"{method.upper()} {route}"
        for route, operations in schema["paths"].items()
        for method, operation in operations.items()
        if not (operation.get("tags") and operation.get("summary") and operation.get("description"))
    ]
    assert bare == []
    tags = {
        tag for operations in schema["paths"].values() for operation in operations.values() for tag in operation["tags"]
    }
    assert {"listings", "requests", "matches", "statements", "voucher-programs"} <= tags
    fields = [(name, s) for name, s in _walk_properties(schema["components"])]
    fields += [
        (parameter["name"], parameter)
        for operations in schema["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query"
    ]
    unitless = sorted(
        {
            name
            for name, field in fields
            for pattern, units in UNIT_WORDS.items()
            if pattern.search(name) and not any(unit in str(field.get("description", "")) for unit in units)
        }
    )
    assert unitless == [], unitless


def test_decimal_patterns_have_no_sign_where_the_value_is_never_negative_and_no_empty_match():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    request_bodies = {name: s for name, s in schema["components"]["schemas"].items() if name.endswith("Request")}
    decimals = [
        field
        for body in request_bodies.values()
        # A oneOf body (the quote's two forms) has no properties of its own: its members are checked.
        for field in body.get("properties", {}).values()
        if field.get("format") == "decimal"
    ]
    assert decimals
    for field in decimals:
        assert "-" not in field["pattern"].replace("0-9", "").replace("1-9", "")
        assert not re.fullmatch(field["pattern"].strip("^$"), "")
