"""Our own 404, 500 and 403 pages, in both languages, each with a way back; JSON for every error
under /api/ (400, 403, 404, 405, 500 and a refused CSRF token), whichever layer answers it.

The module is also a URLconf (``pytest.mark.urls``): the site's routes plus views that fail on
purpose, with the site's handlers."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.test import Client
from django.urls import include, path
from rest_framework.test import APIClient

from config.urls import handler400, handler403, handler404, handler500  # noqa: F401 (this URLconf's)
from config.urls import urlpatterns as site_urlpatterns

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


def broken(request):
    raise RuntimeError("a bug")


def forbidden(request):
    raise PermissionDenied("internal reason")


def form_post(request):
    """A plain Django view (no DRF): the CSRF middleware guards it."""
    return HttpResponse("ok")


urlpatterns = [
    path("api/v1/test-broken/", broken),
    path("api/v1/test-forbidden/", forbidden),
    path("api/v1/test-form/", form_post),
    path("test-broken/", broken),
    path("test-forbidden/", forbidden),
    path("", include(site_urlpatterns)),
]

pytestmark = pytest.mark.urls(__name__)


def assert_json(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return response.json()


def assert_page(response, status: int, *said: str) -> str:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    for text in said:
        assert text in html, text
    assert re.search(r'<a [^>]*href="/"', html), "a way back to the start"
    return html


# --- the pages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "said", "lang"),
    [(EN, ("Page not found", "The capacity board"), 'lang="en"'), (ZH, ("页面不存在", "算力看板"), 'lang="zh-Hans"')],
)
def test_a_page_no_route_matches_is_our_404_page(db, headers, said, lang):
    html = assert_page(Client(**headers).get("/no-such-page/"), 404, *said)
    assert lang in html
    assert "<title>" in html
    assert "</title>" in html


@pytest.mark.parametrize(
    ("headers", "said"), [(EN, ("Something went wrong", "may not have been saved")), (ZH, ("出错了", "可能没有保存"))]
)
def test_an_unhandled_error_on_a_page_is_our_500_page_without_the_database(headers, said):
    """No ``db`` fixture: any query raises here, as it would with the database down. The page
    renders all the same (it is drawn without a request, from error_base.html)."""
    client = Client(raise_request_exception=False, **headers)
    html = assert_page(client.get("/test-broken/"), 500, *said)
    assert "a bug" not in html
    assert "Traceback" not in html


@pytest.mark.parametrize(("headers", "said"), [(EN, "Not for this account"), (ZH, "该账号无权访问")])
def test_permission_denied_on_a_page_is_our_403_page(db, headers, said):
    html = assert_page(Client(**headers).get("/test-forbidden/"), 403, said)
    assert "internal reason" not in html


@pytest.mark.parametrize(("headers", "said"), [(EN, "Form expired"), (ZH, "表单已过期")])
def test_a_form_posted_without_its_csrf_token_is_our_403_page(db, headers, said):
    client = Client(enforce_csrf_checks=True, **headers)
    assert_page(client.post("/signin/", {"username": "x", "password": "y"}), 403, said)


# --- the API: JSON for every error ---------------------------------------------------------------


def test_an_api_path_no_route_matches_is_json_404(db):
    assert assert_json(APIClient().get("/api/v1/no-such-thing/"), 404) == {"detail": "Not found."}
    assert assert_json(APIClient().get("/api/nothing-here"), 404) == {"detail": "Not found."}


def test_an_unhandled_error_under_the_api_is_json_500_without_the_database():
    client = APIClient(raise_request_exception=False)
    assert assert_json(client.get("/api/v1/test-broken/"), 500) == {"detail": "Server error."}


def test_permission_denied_outside_drf_under_the_api_is_json_403(db):
    body = assert_json(APIClient().get("/api/v1/test-forbidden/"), 403)
    assert "internal reason" not in str(body)


def test_a_refused_csrf_token_under_the_api_is_json_403(db, buyer):
    from tests.conftest import member

    user = member("li", buyer)
    # A plain view: Django's CSRF middleware refuses it (CSRF_FAILURE_VIEW).
    client = Client(enforce_csrf_checks=True)
    body = assert_json(client.post("/api/v1/test-form/", {}), 403)
    assert body["detail"].startswith("CSRF Failed")
    # A DRF view with a session: DRF checks the token itself, in the same format.
    client.force_login(user)
    body = assert_json(client.post("/api/v1/requests/", "{}", content_type="application/json"), 403)
    assert "CSRF" in body["detail"]


def test_a_method_an_api_path_does_not_take_is_json_405(clients):
    assert_json(clients["buyer"].delete("/api/v1/regions/"), 405)
    assert_json(clients["buyer"].put("/api/v1/organisation/", "{}", content_type="application/json"), 405)


def test_a_request_django_refuses_is_json_400_under_the_api(db):
    assert_json(APIClient().get("/api/v1/regions/", HTTP_HOST="evil.example"), 400)
