"""Hostile or malformed input gets a documented 4xx in the API's one error format, never a 500 or an
HTML page. Each case here is one that schemathesis found (test_schemathesis.py), kept as a plain
test so that it is checked on every run, not only when the fuzzer happens upon it again."""

from __future__ import annotations

import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from marketplace.api.schema import ERROR_COMPONENT

API = "/api/v1"


def assert_json_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    if field is not None:
        assert field in body, body
    return body


@pytest.mark.parametrize(
    "url",
    [f"{API}/listings/abc/", f"{API}/listings/-1/", f"{API}/regions/not%20a%20slug/", f"{API}/no-such-thing/"],
)
def test_an_api_url_no_route_matches_is_a_json_404(reference, url):
    assert assert_json_error(APIClient().get(url), 404) == {"detail": "Not found."}


def test_a_page_no_route_matches_is_still_a_page(db):
    response = APIClient().get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_request_django_refuses_is_a_json_400_under_the_api(reference):
    """A Host the site does not serve: Django refuses it before any view runs."""
    assert_json_error(APIClient().get(f"{API}/regions/", HTTP_HOST="evil.example"), 400)
    assert APIClient().get("/", HTTP_HOST="evil.example")["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", "gpu_model=h20&replicas=1"),
        ("multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n"),
        ("text/plain", "hello"),
    ],
)
def test_the_api_reads_json_bodies_only(clients, content_type, body):
    """Form bodies would bring HTML-form rules with them (a blank optional field counts as absent:
    ``name=`` would be ignored where JSON's ``"name": ""`` is refused)."""
    response = clients["buyer"].generic("POST", f"{API}/requests/", body, content_type=content_type)
    assert_json_error(response, 415)


@pytest.mark.parametrize("month", ["0000-01", "9999-12", "2026-13", "26-01"])
def test_a_statement_month_out_of_range_is_a_400(clients, month):
    """``0000-01`` was a 500 (no year 0), and ``9999-12`` too (its month ends in year 10000)."""
    assert_json_error(clients["buyer"].get(f"{API}/statements/?month={month}"), 400, "month")
    assert_json_error(clients["buyer"].get(f"{API}/statements/csv/?month={month}"), 400, "month")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"{API}/statements/?month=", "month"),
        (f"{API}/listings/?region=", "region"),
        (f"{API}/listings/?page_size=abc", "page_size"),
        (f"{API}/listings/?page_size=0", "page_size"),
        (f"{API}/listings/?page_size=-5", "page_size"),
        (f"{API}/regions/?colour=red", "colour"),
        (f"{API}/gpu-models/?colour=red", "colour"),
    ],
)
def test_bad_query_parameters_are_a_400_naming_them_not_ignored(clients, url, field):
    assert_json_error(clients["buyer"].get(url), 400, field)


def test_a_page_size_above_the_maximum_counts_as_the_maximum(clients, make_listing):
    for _ in range(3):
        make_listing()
    response = clients["buyer"].get(f"{API}/listings/?page_size=1000")
    assert response.status_code == 200
    assert len(response.json()["results"]) == 3


def test_every_operation_documents_its_errors_in_one_format():
    schema = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
    error_ref = f"#/components/schemas/{ERROR_COMPONENT}"
    assert ERROR_COMPONENT in schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            errors = {status for status in responses if status >= "400"}
            assert {"429", "503"} <= errors, (method, path)
            if operation.get("security") not in (None, [{}]):  # it authenticates callers
                assert "401" in errors, (method, path)
            if "{" in path:
                assert "404" in errors, (method, path)
            for status in errors:
                assert responses[status]["content"]["application/json"]["schema"] == {"$ref": error_ref}


@pytest.mark.parametrize("page", ["0", "-1", "abc", "99", "112002333425513080553472"])
@pytest.mark.parametrize("url", [f"{API}/listings/", f"{API}/matches/", f"{API}/regions/"])
def test_a_page_that_does_not_exist_is_a_404(clients, make_listing, url, page):
    """A page number past what SQL can offset was a 409 (an integer overflow in the database)."""
    make_listing()
    assert_json_error(clients["buyer"].get(f"{url}?page={page}"), 404)
