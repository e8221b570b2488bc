"""Hostile bodies, query strings, paths and headers: each is a 400 naming what is wrong (or a 406
for an ``Accept`` the API does not speak), never a 500, and writes nothing.

Found by an outside probe (issue 14, finding 5): JSON ~950 levels deep ran the server out of stack;
a NUL in any text reached PostgreSQL, which cannot store it; ``Accept: text/html`` asked the
browsable API for pages it could not build. The checks do not depend on the database, so these
tests run on SQLite and PostgreSQL alike; ``test_on_postgresql_no_nul_reaches_a_query`` insists on
PostgreSQL, where a NUL that got through used to be a 500.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern
from rest_framework.test import APIClient

from marketplace.api.urls import urlpatterns as api_routes
from marketplace.bounds import JSON_DEPTH
from marketplace.models import BuyerRequest, IdempotencyKey, Listing, Organisation, VoucherProgram
from tests.security.test_error_responses import assert_json_error

API = "/api/v1"
TOO_DEEP = f"JSON nested deeper than {JSON_DEPTH.maximum} levels"


def nested(depth: int, inner="x") -> object:
    """``depth`` containers, alternating lists and objects, around ``inner``."""
    value = inner
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def rows() -> tuple[int, ...]:
    """What a refused call must not have written."""
    models = (get_user_model(), Organisation, Listing, BuyerRequest, VoucherProgram, IdempotencyKey)
    return tuple(model.objects.count() for model in models)


def post_json(client, url, body, **headers):
    return client.generic("POST", url, json.dumps(body), content_type="application/json", **headers)


def register_body(**changes) -> dict:
    return {
        "username": "li",
        "password": "a-long-pass-phrase",
        "email": "li@example.com",
        "role": "buyer",
        "organisation": "Li Inference",
    } | changes


def request_body(**changes) -> dict:
    return {
        "gpu_model": "h20",
        "gpus_per_replica": 2,
        "replicas": 1,
        "origin": "shanghai",
        "max_price_per_gpu_hour": "9.00",
        "duration_hours": 24,
    } | changes


def listing_body(**changes) -> dict:
    return {
        "region": "ningxia-zhongwei",
        "gpu_model": "h20",
        "gpu_count": 8,
        "gpus_per_node": 8,
        "price_per_gpu_hour": "5.80",
    } | changes


def program_body(**changes) -> dict:
    return {
        "name": "Qingyang compute voucher",
        "sponsor": "Qingyang government",
        "percent": "30",
        "budget": "1000",
        "valid_until": "2030-01-01T00:00:00Z",
    } | changes


# --- depth --------------------------------------------------------------------------------------


def test_a_body_nested_as_deep_as_the_bound_is_read(clients):
    """32 containers (the body object and 31 inside it) pass the parser: the serializer then refuses
    the field for not being a string."""
    before = rows()
    body = register_body(organisation=nested(JSON_DEPTH.maximum - 1))
    response = post_json(clients["anonymous"], f"{API}/auth/register/", body)
    assert_json_error(response, 400, "organisation")
    assert rows() == before


def test_a_body_one_level_deeper_than_the_bound_is_a_400_saying_so(clients):
    before = rows()
    body = register_body(organisation=nested(JSON_DEPTH.maximum))
    response = post_json(clients["anonymous"], f"{API}/auth/register/", body)
    assert TOO_DEEP in assert_json_error(response, 400, "detail")["detail"]
    assert rows() == before


@pytest.mark.parametrize("depth", [950, 1000, 100_000])
@pytest.mark.parametrize(
    ("role", "url"),
    [
        ("anonymous", f"{API}/auth/register/"),
        ("anonymous", f"{API}/auth/token/"),
        ("buyer", f"{API}/requests/"),
        ("buyer", f"{API}/quotes/"),
        ("buyer", f"{API}/vouchers/claim/"),
        ("provider", f"{API}/listings/"),
        ("staff", f"{API}/voucher-programs/"),
    ],
)
def test_a_body_nested_a_thousand_deep_is_the_same_400_not_a_500(clients, role, url, depth):
    """Deep enough that Python cannot even parse it (it ran out of stack: a 500 before)."""
    before = rows()
    response = clients[role].generic("POST", url, "[" * depth + "]" * depth, content_type="application/json")
    assert TOO_DEEP in assert_json_error(response, 400, "detail")["detail"]
    assert rows() == before


# --- NUL and lone surrogates in bodies ----------------------------------------------------------

NUL = "\x00"
SURROGATE = "\ud800"

BODY_CASES = [
    # (role, url, body, the field the 400 names)
    ("anonymous", "auth/register/", register_body(username=f"li{NUL}"), "username"),
    ("anonymous", "auth/register/", register_body(organisation=f"Li{NUL}Inference"), "organisation"),
    ("anonymous", "auth/register/", register_body(email=f"li{NUL}@example.com"), "email"),
    ("anonymous", "auth/token/", {"username": f"buy{NUL}", "password": "x"}, "username"),
    ("buyer", "requests/", request_body(origin=f"shanghai{NUL}"), "origin"),
    ("buyer", "requests/", request_body(gpu_model=f"h20{NUL}"), "gpu_model"),
    ("buyer", "requests/", request_body(voucher_code=NUL), "voucher_code"),
    ("buyer", "quotes/", request_body(origin=NUL), "origin"),
    ("buyer", "vouchers/claim/", {"code": f"abc{NUL}"}, "code"),
    ("provider", "listings/", listing_body(region=f"ningxia-zhongwei{NUL}"), "region"),
    ("staff", "voucher-programs/", program_body(eligible_regions=["shanghai", f"x{NUL}"]), "eligible_regions"),
    ("staff", "voucher-programs/", program_body(eligible_buyer_provinces=[NUL]), "eligible_buyer_provinces"),
    ("staff", "voucher-programs/", program_body(name=f"Q{NUL}"), "name"),
    ("staff", "voucher-programs/", program_body(name={"nested": [f"deep{NUL}"]}), "name"),
    ("staff", "voucher-programs/", program_body(sponsor=f"Q{SURROGATE}"), "sponsor"),
    ("buyer", "requests/", request_body(origin=f"shanghai{SURROGATE}"), "origin"),
    ("buyer", "requests/", request_body(**{f"key{NUL}": 1}), "key\\u0000"),
    ("buyer", "requests/", request_body(**{f"key{SURROGATE}": 1}), "key\\ud800"),
]


def _body_case_id(case) -> str:
    role, url, _, field = case
    return f"{role}-{url}-{field}"


@pytest.mark.parametrize(("role", "url", "body", "field"), BODY_CASES, ids=map(_body_case_id, BODY_CASES))
def test_unstorable_text_in_a_json_body_is_a_400_naming_the_field(clients, role, url, body, field):
    before = rows()
    response = post_json(clients[role], f"{API}/{url}", body, HTTP_IDEMPOTENCY_KEY="hostile-1")
    message = assert_json_error(response, 400, field)[field][0]
    assert "no field accepts it" in message
    assert rows() == before


def test_a_nul_in_a_token_form_is_a_400_naming_the_field(clients):
    """The token endpoint reads forms as well as JSON (``curl -d``, ``curl -F``)."""
    anonymous = clients["anonymous"]
    form = anonymous.generic(
        "POST", f"{API}/auth/token/", "username=buy%00&password=x", content_type="application/x-www-form-urlencoded"
    )
    assert_json_error(form, 400, "username")
    multipart = anonymous.post(f"{API}/auth/token/", {"username": f"buy{NUL}", "password": "x"}, format="multipart")
    assert_json_error(multipart, 400, "username")


# --- NUL in query strings, paths and headers ----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (f"{API}/listings/?origin=%00", "origin"),
        (f"{API}/listings/?region=ningxia%00", "region"),
        (f"{API}/listings/?gpu_model=%00&origin=shanghai", "gpu_model"),
        (f"{API}/capacity/?origin=%00&gpu_model=h20", "origin"),
        (f"{API}/regions/?%00=1", "\\u0000"),
        (f"{API}/statements/?month=2026-0%00", "month"),
        (f"{API}/regions/shanghai%00/", "path"),
        (f"{API}/listings/1%00/", "path"),
    ],
)
def test_a_nul_in_a_query_or_path_is_a_400_naming_it(clients, url, name):
    message = assert_json_error(clients["buyer"].get(url), 400, name)[name][0]
    assert "NUL" in message


def test_a_nul_in_a_header_is_a_400_naming_it(clients):
    before = rows()
    response = post_json(clients["buyer"], f"{API}/requests/", request_body(), HTTP_IDEMPOTENCY_KEY=f"k{NUL}")
    assert_json_error(response, 400, "Idempotency-Key")
    assert rows() == before


@pytest.mark.parametrize(
    "url", ["/?origin=%00", "/?origin=shanghai&gpu_model=%00", "/admin/marketplace/organisation/?q=%00", "/%00/"]
)
def test_a_nul_in_a_page_query_is_a_plain_400_page(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")


def test_a_nul_in_a_page_form_is_a_400_that_writes_nothing(client, reference):
    before = rows()
    body = {"role": "buyer", "organisation": "Li", "username": "li", "email": "li@example.com", "password": NUL}
    assert client.post("/signup/", body).status_code == 400
    assert client.post("/signin/", {"username": NUL, "password": "x"}).status_code == 400
    assert rows() == before


@pytest.mark.services
def test_on_postgresql_no_nul_reaches_a_query(postgres, clients):
    """The cases above that were 500s on PostgreSQL (``DataError``: text fields cannot contain NUL),
    run again where they were found."""
    for role, url, body, field in BODY_CASES:
        response = post_json(clients[role], f"{API}/{url}", body)
        assert_json_error(response, 400, field)
    for url in (f"{API}/listings/?origin=%00", f"{API}/capacity/?origin=%00&gpu_model=h20", "/?origin=%00"):
        assert clients["buyer"].get(url).status_code == 400


# --- Accept: JSON only --------------------------------------------------------------------------


def _api_routes() -> list[str]:
    """Every route of the API, its path parameters filled with ids that may or may not exist (the
    answer to an Accept no renderer speaks comes before any lookup)."""
    fill = {"<int:listing_id>": "1", "<int:request_id>": "1", "<int:match_id>": "1", "<int:program_id>": "1"}
    fill |= {"<int:key_id>": "1", "<int:member_id>": "1", "<int:endpoint_id>": "1", "<int:delivery_id>": "1"}
    fill["<slug:code>"] = "shanghai"
    paths = []
    for route in api_routes:
        assert isinstance(route, URLPattern)
        path = str(route.pattern)
        for parameter, value in fill.items():
            path = path.replace(parameter, value)
        assert "<" not in path, f"fill in the parameter of {path}"
        paths.append(f"{API}/{path}")
    return paths


@pytest.mark.parametrize("role", ["anonymous", "buyer", "staff"])
@pytest.mark.parametrize("url", _api_routes())
def test_accept_text_html_is_a_json_406_on_every_api_route(clients, url, role):
    """The browsable API is gone (it was a 500 on five lists, which have no queryset); the API
    answers JSON, and a client that accepts only HTML is told so in JSON."""
    response = clients[role].get(url, HTTP_ACCEPT="text/html")
    assert_json_error(response, 406, "detail")


@pytest.mark.parametrize("url", [u for u in _api_routes() if "/1/" not in u and "shanghai" not in u])
def test_a_browser_accept_header_gets_json(clients, url):
    """A browser accepts HTML first and anything after it: it gets the JSON."""
    response = clients["staff"].get(url, HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code < 500
    assert response["Content-Type"].startswith(("application/json", "text/csv")), response["Content-Type"]


def test_the_schema_and_its_swagger_page_still_answer(db):
    client = APIClient()
    assert client.get("/api/schema/").status_code == 200
    page = client.get("/api/docs/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
