"""REST API v1: happy paths, validation errors naming the field, permissions, constant queries."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from marketplace.models import BuyerRequest, Listing
from tests.services_helpers import reserve

LISTING_BODY = {
    "region": "ningxia-zhongwei",
    "gpu_model": "h20",
    "gpu_count": 16,
    "gpus_per_node": 8,
    "price_per_gpu_hour": "6.20",
}
REQUEST_BODY = {
    "gpu_model": "h20",
    "gpus_per_replica": 2,
    "replicas": 3,
    "origin": "shanghai",
    "latency_class": "standard",
    "max_price_per_gpu_hour": "9.00",
    "duration_hours": 24,
}


# --- accounts -----------------------------------------------------------------------------------


def test_register_then_get_a_token_and_use_it(db):
    client = APIClient()
    body = {
        "username": "alice",
        "password": "a-long-pass-phrase",
        "email": "a@example.com",
        "role": "buyer",
        "organisation": "Alice AI",
    }
    response = client.post("/api/v1/auth/register/", body)
    assert response.status_code == 201, response.data
    assert response.data == {"username": "alice", "email": "a@example.com", "role": "buyer", "organisation": "Alice AI"}
    token = client.post("/api/v1/auth/token/", {"username": "alice", "password": "a-long-pass-phrase"}).data["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/requests/").status_code == 200


def test_register_rejects_weak_passwords_naming_the_field(db):
    body = {"username": "bob", "password": "123", "email": "b@example.com", "role": "buyer", "organisation": "Bob"}
    response = APIClient().post("/api/v1/auth/register/", body)
    assert response.status_code == 400
    assert "password" in response.data


@pytest.mark.parametrize(("field", "value"), [("username", -5.75e-05), ("organisation", 7), ("password", True)])
def test_register_refuses_a_number_or_boolean_where_the_schema_says_string(db, field, value):
    body = {"username": "carol", "password": "a-long-pass-phrase", "email": "c@example.com", "role": "buyer"}
    body = {**body, "organisation": "Carol AI", field: value}
    response = APIClient().post("/api/v1/auth/register/", body, format="json")
    assert response.status_code == 400
    assert response.data == {field: ["Not a valid string."]}
    assert not User.objects.filter(username__in=["carol", str(value)]).exists()


def test_wrong_password_gets_no_token(clients):
    response = APIClient().post("/api/v1/auth/token/", {"username": "buy", "password": "nope"})
    assert response.status_code == 400


# --- reference data and capacity ----------------------------------------------------------------


def test_regions_and_gpu_models_are_public(reference):
    client = APIClient()
    regions = client.get("/api/v1/regions/?page_size=100").data
    assert regions["count"] == 21
    detail = client.get("/api/v1/regions/shanghai/").data
    assert len(detail["rtts"]) == 21
    assert detail["rtts"][0] == {
        "region": "shanghai",
        "rtt_ms": "1.0",
        "latency_class": "realtime",
        "source": "estimated",
    }
    zhongwei = next(row for row in detail["rtts"] if row["region"] == "ningxia-zhongwei")
    assert (zhongwei["rtt_ms"], zhongwei["latency_class"]) == ("35.8", "standard")
    assert client.get("/api/v1/regions/atlantis/").status_code == 404
    gpu_models = {row["code"]: row for row in client.get("/api/v1/gpu-models/").data["results"]}
    assert len(gpu_models) == 8
    assert gpu_models["ascend-910b"]["name_zh"] == "华为昇腾 910B 64GB"
    assert gpu_models["h20"]["name_zh"] == "NVIDIA H20 96GB"


def test_capacity_groups_idle_gpus_by_region_and_latency_class(make_listing, make_request, now):
    make_listing(gpu_count=16, price_per_gpu_hour=Decimal("6.10"))
    make_listing(gpu_count=8, price_per_gpu_hour=Decimal("5.90"))
    make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_count=8, price_per_gpu_hour=Decimal("9.50"))
    reserve(Listing.objects.first(), make_request(gpus_per_replica=8, replicas=1), now)
    rows = APIClient().get("/api/v1/capacity/?origin=shanghai&gpu_model=h20").data
    assert rows == [
        {
            "region": "yrd-qingpu-wujiang-jiashan",
            "latency_class": "realtime",
            "rtt_ms": 2.8,
            "gpu_model": "h20",
            "free_gpus": 8,
            "min_price_per_gpu_hour": "9.5000",
            "listings": 1,
            "best_reliability": None,  # new listings: too little history
        },
        {
            "region": "ningxia-zhongwei",
            "latency_class": "standard",
            "rtt_ms": 35.8,
            "gpu_model": "h20",
            "free_gpus": 16,
            "min_price_per_gpu_hour": "5.9000",
            "listings": 2,
            "best_reliability": None,
        },
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "origin"),
        ("origin=atlantis", "origin"),
        ("origin=shanghai&gpu_model=tpu", "gpu_model"),
        ("origin=shanghai&colour=red", "colour"),
    ],
)
def test_capacity_rejects_unknown_filters(reference, query, field):
    response = APIClient().get(f"/api/v1/capacity/?{query}")
    assert response.status_code == 400
    assert field in response.data


# --- listings -----------------------------------------------------------------------------------


def test_provider_lists_capacity(clients):
    response = clients["provider"].post("/api/v1/listings/", LISTING_BODY)
    assert response.status_code == 201, response.data
    body = response.data
    assert (body["provider"], body["free_gpus"], body["status"]) == ("Zhongwei Desert Compute", 16, "active")
    # H20: 400 W × PUE 1.2 × 0.36 CNY/kWh
    assert body["energy_cost_per_gpu_hour"] == "0.1728"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gpu_count": 12}, "gpu_count"),
        ({"gpus_per_node": 3}, "gpus_per_node"),
        ({"price_per_gpu_hour": "-1"}, "price_per_gpu_hour"),
        ({"price_per_gpu_hour": "abc"}, "price_per_gpu_hour"),
        ({"region": "atlantis"}, "region"),
        ({"gpu_model": "tpu"}, "gpu_model"),
        ({"available_from": "2030-01-02T00:00:00Z", "available_until": "2030-01-01T00:00:00Z"}, "available_until"),
    ],
)
def test_listing_validation_names_the_field(clients, changes, field):
    response = clients["provider"].post("/api/v1/listings/", {**LISTING_BODY, **changes})
    assert response.status_code == 400
    assert field in response.data
    assert not Listing.objects.exists()


def test_listing_search_filters_and_orders(make_listing, clients):
    make_listing(price_per_gpu_hour=Decimal("6.00"))
    make_listing(region="yrd-qingpu-wujiang-jiashan", price_per_gpu_hour=Decimal("9.00"), gpu_count=8)
    make_listing(region="guizhou-guian", gpu_model="a100", price_per_gpu_hour=Decimal("5.00"))
    client = clients["buyer"]
    cheap = client.get("/api/v1/listings/?max_price=6.5&ordering=price").data["results"]
    assert [row["price_per_gpu_hour"] for row in cheap] == ["5.0000", "6.0000"]
    near = client.get("/api/v1/listings/?origin=shanghai&latency_class=interactive").data["results"]
    assert [(row["region"], row["rtt_ms"]) for row in near] == [("yrd-qingpu-wujiang-jiashan", 2.8)]
    by_rtt = client.get("/api/v1/listings/?origin=shanghai&ordering=-rtt&gpu_model=h20").data["results"]
    assert [row["region"] for row in by_rtt] == ["ningxia-zhongwei", "yrd-qingpu-wujiang-jiashan"]
    assert client.get("/api/v1/listings/?min_free_gpus=10").data["count"] == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("region=atlantis", "region"),
        ("latency_class=interactive", "latency_class"),
        ("ordering=rtt", "ordering"),
        ("ordering=colour", "ordering"),
        ("max_price=cheap", "max_price"),
        ("min_free_gpus=-1", "min_free_gpus"),
        ("flavour=vanilla", "flavour"),
        ("origin=shanghai&latency_class=warp", "latency_class"),
    ],
)
def test_listing_search_rejects_unknown_filter_values(reference, query, field):
    response = APIClient().get(f"/api/v1/listings/?{query}")
    assert response.status_code == 400
    assert field in response.data


def test_provider_updates_and_withdraws_own_listing(make_listing, clients):
    listing = make_listing()
    client = clients["provider"]
    response = client.patch(f"/api/v1/listings/{listing.pk}/", {"price_per_gpu_hour": "5.50"})
    assert response.status_code == 200
    assert response.data["price_per_gpu_hour"] == "5.5000"
    assert client.patch(f"/api/v1/listings/{listing.pk}/", {"gpu_count": 12}).status_code == 400
    response = client.delete(f"/api/v1/listings/{listing.pk}/")
    assert response.status_code == 200
    assert response.data["status"] == "withdrawn"
    assert client.delete(f"/api/v1/listings/{listing.pk}/").status_code == 409
    mine = client.get("/api/v1/listings/?mine=true").data
    assert [row["status"] for row in mine["results"]] == ["withdrawn"]
    assert clients["buyer"].get("/api/v1/listings/").data["count"] == 0


def test_shrinking_below_allocated_is_a_conflict_naming_the_field(make_listing, make_request, clients, now):
    listing = make_listing(gpu_count=16)
    reserve(listing, make_request(gpus_per_replica=8, replicas=2), now, nodes=(0, 1))
    response = clients["provider"].patch(f"/api/v1/listings/{listing.pk}/", {"gpu_count": 8})
    assert response.status_code == 409
    assert "gpu_count" in response.data


def test_read_only_fields_cannot_be_mass_assigned(make_listing, clients):
    listing = make_listing()
    response = clients["provider"].patch(f"/api/v1/listings/{listing.pk}/", {"status": "closed", "free_gpus": 999})
    assert response.status_code == 400
    assert response.json() == {"free_gpus": ["Unknown field."], "status": ["Unknown field."]}
    listing.refresh_from_db()
    assert (listing.status, listing.allocated_gpus) == ("active", 0)


# --- requests -----------------------------------------------------------------------------------


def test_buyer_submits_reads_and_cancels_a_request(clients, reference):
    client = clients["buyer"]
    response = client.post("/api/v1/requests/", REQUEST_BODY)
    assert response.status_code == 201, response.data
    body = response.data
    assert (body["status"], body["matched_replicas"], body["latency_class"]) == ("open", 0, "standard")
    assert client.get(f"/api/v1/requests/{body['id']}/").data["id"] == body["id"]
    assert client.get("/api/v1/requests/").data["count"] == 1
    cancelled = client.post(f"/api/v1/requests/{body['id']}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.data["status"] == "cancelled"
    assert client.post(f"/api/v1/requests/{body['id']}/cancel/").status_code == 409


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"gpus_per_replica": 3}, "gpus_per_replica"),
        ({"replicas": 0}, "replicas"),
        ({"origin": "atlantis"}, "origin"),
        ({"latency_class": "warp"}, "latency_class"),
        ({"max_rtt_ms": "25"}, "max_rtt_ms"),
        ({"max_price_per_gpu_hour": "0"}, "max_price_per_gpu_hour"),
        ({"duration_hours": "forever"}, "duration_hours"),
        ({"start_by": "2001-01-01T00:00:00Z"}, "start_by"),
        ({"gpu_model": None}, "gpu_model"),
    ],
)
def test_request_validation_names_the_field(clients, reference, changes, field):
    response = clients["buyer"].post("/api/v1/requests/", {**REQUEST_BODY, **changes}, format="json")
    assert response.status_code == 400, response.data
    assert field in response.data
    assert not BuyerRequest.objects.exists()


def test_request_with_max_rtt_only_gets_its_class(clients, reference):
    body = {**REQUEST_BODY, "max_rtt_ms": "8"}
    del body["latency_class"]
    response = clients["buyer"].post("/api/v1/requests/", body)
    assert response.status_code == 201
    assert (response.data["latency_class"], response.data["max_rtt_ms"]) == ("realtime", "8.0")


@pytest.mark.parametrize("field", ["max_price_per_gpu_hour", "max_rtt_ms", "latency_weight"])
def test_a_decimal_sent_as_a_json_number_is_a_400_naming_the_field(clients, reference, field):
    response = clients["buyer"].post("/api/v1/requests/", {**REQUEST_BODY, field: 9.5}, format="json")
    assert response.status_code == 400
    assert response.data == {field: ['A decimal number as a string, such as "9.50".']}
    assert not BuyerRequest.objects.exists()


@pytest.mark.parametrize("field", ["replicas", "gpus_per_replica", "duration_hours"])
def test_a_whole_number_sent_as_a_string_is_a_400_naming_the_field(clients, reference, field):
    response = clients["buyer"].post("/api/v1/requests/", {**REQUEST_BODY, field: "2"}, format="json")
    assert response.status_code == 400
    assert response.data == {field: ["A whole number, not a string."]}
    assert not BuyerRequest.objects.exists()


def test_malformed_json_is_a_400(clients):
    response = clients["buyer"].post("/api/v1/requests/", "{not json", content_type="application/json")
    assert response.status_code == 400


# The permission matrix (every operation × every kind of caller, lists, mass assignment) lives in
# tests/security/test_permission_matrix.py.


# --- constant queries per page ------------------------------------------------------------------


def queries_for(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/listings/?origin=shanghai&ordering=rtt",
        "/api/v1/requests/",
        "/api/v1/matches/",
        "/api/v1/capacity/?origin=beijing",
        "/api/v1/regions/",
    ],
)
def test_list_queries_do_not_grow_with_rows(clients, make_listing, make_request, now, url):
    def grow(n):
        for _ in range(n):
            listing = make_listing(region="guizhou-guian")
            reserve(listing, make_request(gpus_per_replica=8, replicas=1), now)

    grow(2)
    few = queries_for(clients["buyer"], url)
    grow(8)
    assert queries_for(clients["buyer"], url) == few


# --- schema, docs, health -----------------------------------------------------------------------


def test_openapi_schema_and_offline_docs(db):
    client = APIClient()
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/listings/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()
    assert b"swagger-ui" in docs.content


def test_healthz_reports_database_and_broker(db):
    response = APIClient().get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_request_start_by_defaults_to_a_day(clients, reference):
    from django.utils import timezone
    from django.utils.dateparse import parse_datetime

    response = clients["buyer"].post("/api/v1/requests/", REQUEST_BODY)
    start_by = parse_datetime(response.data["start_by"])
    assert timedelta(hours=23) < start_by - timezone.now() <= timedelta(hours=24)


# --- quotes -------------------------------------------------------------------------------------


def test_quote_shows_placement_and_price_latency_frontier_without_writing(clients, make_listing):
    make_listing(region="ningxia-zhongwei", price_per_gpu_hour=Decimal("5.50"))
    make_listing(region="yrd-qingpu-wujiang-jiashan", price_per_gpu_hour=Decimal("9.00"))
    body = {**REQUEST_BODY, "latency_class": "interactive", "replicas": 2}
    response = clients["buyer"].post("/api/v1/quotes/", body)
    assert response.status_code == 200, response.data
    quote = response.json()
    assert quote["replicas_placed"] == 2
    assert [p["region"] for p in quote["placement"]] == ["yrd-qingpu-wujiang-jiashan"]
    reasons = [option["reason"] for option in quote["placement"][0]["explanation"]["rejected"]]
    assert "ningxia-zhongwei: 35.8 ms > 30 ms bound" in reasons
    frontier = {point["latency_class"]: point for point in quote["frontier"]}
    assert frontier["realtime"]["region"] == "yrd-qingpu-wujiang-jiashan"
    assert frontier["standard"]["region"] == "ningxia-zhongwei"
    assert Decimal(frontier["standard"]["total_cost"]) < Decimal(frontier["interactive"]["total_cost"])
    assert not BuyerRequest.objects.exists()


def test_quote_uses_the_request_rules(clients):
    response = clients["buyer"].post("/api/v1/quotes/", {**REQUEST_BODY, "start_by": "2001-01-01T00:00:00Z"})
    assert response.status_code == 400
    assert "start_by" in response.data
    assert clients["provider"].post("/api/v1/quotes/", REQUEST_BODY).status_code == 403


# --- throttling and quotas ----------------------------------------------------------------------


@pytest.fixture
def low_rates(monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    cache.clear()
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "3/min", "user": "5/min", "login": "2/min"})
    yield
    cache.clear()


def test_anonymous_callers_are_throttled(reference, low_rates):
    client = APIClient()
    codes = [client.get("/api/v1/regions/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_token_logins_are_rate_limited(clients, low_rates):
    codes = [
        APIClient().post("/api/v1/auth/token/", {"username": "buy", "password": "guess"}).status_code for _ in range(3)
    ]
    assert codes == [400, 400, 429]


def test_a_buyer_at_its_open_request_quota_is_refused(clients, settings):
    settings.MAX_OPEN_REQUESTS_PER_BUYER = 2
    codes = [clients["buyer"].post("/api/v1/requests/", REQUEST_BODY).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    assert BuyerRequest.objects.count() == 2
