"""The SDK's own logic against httpx.MockTransport: retries, Retry-After, Idempotency-Key, errors.
(The SDK against the real server is test_cli.py; this is a unit test of the client.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from gpumkt import ApiError, Client, TransportError
from gpumkt.cli.demand import REQUEST_COLUMNS, request_rows, status_of
from gpumkt.client import retry_after_seconds
from gpumkt.errors import error_lines
from gpumkt.models import BuyerRequest

LISTING = {
    "id": 7,
    "provider": "Zhongwei Desert Compute",
    "region": "ningxia-zhongwei",
    "gpu_model": "h20",
    "gpu_count": 16,
    "gpus_per_node": 8,
    "free_gpus": 16,
    "price_per_gpu_hour": "6.0000",
    "energy_cost_per_gpu_hour": "0.1700",
    "available_from": "2026-12-04T09:00:00Z",
    "available_until": "2027-01-03T09:00:00Z",
    "status": "active",
    "rtt_ms": None,
    "left_out_reason": "",
}
TERMS = {"region": "ningxia-zhongwei", "gpu_model": "h20", "gpu_count": 16, "gpus_per_node": 8}


class Server:
    """Answers each call with the next of ``answers`` (a response, or an exception to raise) and
    keeps the requests it was sent."""

    def __init__(self, *answers):
        self.answers, self.seen = list(answers), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_for(server: Server, sleeps: list[float], **options) -> Client:
    return Client("http://market.test", "k3y", transport=httpx.MockTransport(server), sleep=sleeps.append, **options)


def test_a_429_is_retried_after_the_retry_after_it_sent_with_the_same_idempotency_key():
    server = Server(
        httpx.Response(429, json={"detail": "Request was throttled."}, headers={"Retry-After": "2"}),
        httpx.Response(503, json={"detail": "Retry shortly."}, headers={"Retry-After": "5"}),
        httpx.Response(201, json=LISTING),
    )
    sleeps: list[float] = []
    listing = client_for(server, sleeps).listing_create(**TERMS, price_per_gpu_hour="6.00")
    assert (listing.id, str(listing.price_per_gpu_hour), listing.available_from.tzinfo) == (7, "6.0000", UTC)
    assert sleeps == [2.0, 5.0]
    keys = {request.headers["Idempotency-Key"] for request in server.seen}
    assert len(server.seen) == 3
    assert len(keys) == 1
    assert server.seen[0].headers["Authorization"] == "Token k3y"


def test_each_creating_call_gets_its_own_key_and_a_given_key_is_sent_as_it_is():
    server = Server(httpx.Response(201, json=LISTING), httpx.Response(201, json=LISTING))
    client = client_for(server, [])
    client.listing_create(**TERMS, price_per_gpu_hour="6.00")
    client.listing_create(**TERMS, price_per_gpu_hour="6.00", idempotency_key="mine-1")
    first, second = (request.headers["Idempotency-Key"] for request in server.seen)
    assert first != second
    assert second == "mine-1"


def test_a_retry_that_finds_its_first_attempt_still_running_asks_again_with_the_same_key():
    busy = {"Idempotency-Key": ["A request with this key is still in progress."]}
    server = Server(httpx.ConnectError("reset"), httpx.Response(409, json=busy), httpx.Response(201, json=LISTING))
    sleeps: list[float] = []
    assert client_for(server, sleeps).listing_create(**TERMS, price_per_gpu_hour="6.00").id == 7
    assert len({request.headers["Idempotency-Key"] for request in server.seen}) == 1
    assert sleeps == [0.5, 1.0]


def test_any_other_conflict_is_the_error():
    server = Server(httpx.Response(409, json={"non_field_errors": ["A concurrent change conflicted; try again."]}))
    with pytest.raises(ApiError, match="concurrent change"):
        client_for(server, []).listing_create(**TERMS, price_per_gpu_hour="6.00")
    assert len(server.seen) == 1


def test_reads_and_updates_carry_no_idempotency_key():
    server = Server(httpx.Response(200, json=LISTING), httpx.Response(200, json=LISTING))
    client = client_for(server, [])
    client.listing(7)
    client.listing_update(7, price_per_gpu_hour="5.50")
    assert all("Idempotency-Key" not in request.headers for request in server.seen)
    assert server.seen[1].method == "PATCH"
    assert server.seen[1].url.path == "/api/v1/listings/7/"


def test_the_attempts_are_bounded_and_the_last_answer_is_the_error():
    server = Server(*[httpx.Response(503, json={"detail": "down"}, headers={"Retry-After": "1"})] * 3)
    sleeps: list[float] = []
    with pytest.raises(ApiError) as raised:
        client_for(server, sleeps, max_attempts=3).listing(7)
    assert (raised.value.status, len(server.seen), sleeps) == (503, 3, [1.0, 1.0])


def test_a_retry_after_longer_than_the_client_will_wait_is_not_waited_for():
    server = Server(httpx.Response(429, json={"detail": "Request was throttled."}, headers={"Retry-After": "3600"}))
    sleeps: list[float] = []
    with pytest.raises(ApiError, match="throttled"):
        client_for(server, sleeps, max_retry_wait=60).listing(7)
    assert sleeps == []


def test_without_retry_after_the_wait_backs_off_exponentially():
    server = Server(*[httpx.Response(503)] * 3, httpx.Response(200, json=LISTING))
    sleeps: list[float] = []
    client_for(server, sleeps, backoff=0.5).listing(7)
    assert sleeps == [0.5, 1.0, 2.0]


def test_retry_after_may_be_an_http_date():
    now = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    response = httpx.Response(503, headers={"Retry-After": format_datetime(now + timedelta(seconds=30), usegmt=True)})
    assert retry_after_seconds(response, now=now) == 30.0
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": "soon"})) is None


def test_a_lost_connection_is_retried_on_reads_and_keyed_posts_with_the_same_key():
    lost = httpx.ConnectError("connection refused")
    server = Server(
        lost, httpx.Response(200, json=LISTING), lost, httpx.ReadTimeout("slow"), httpx.Response(201, json=LISTING)
    )
    sleeps: list[float] = []
    client = client_for(server, sleeps)
    client.listing(7)
    client.listing_create(**TERMS, price_per_gpu_hour="6.00")
    posts = [request for request in server.seen if request.method == "POST"]
    assert len(posts) == 3
    assert len({request.headers["Idempotency-Key"] for request in posts}) == 1
    assert len(sleeps) == 3


def test_a_lost_connection_is_not_retried_on_a_call_that_is_not_safe_to_repeat():
    server = Server(httpx.ConnectError("connection refused"))
    with pytest.raises(TransportError, match="connection refused"):
        client_for(server, []).request_cancel(12)
    assert len(server.seen) == 1


def test_an_api_error_carries_each_field_and_its_message():
    body = {"replicas": ["Ensure this value is less than or equal to 4096."], "origin": ["Unknown region 'atlantis'."]}
    server = Server(httpx.Response(400, json=body))
    with pytest.raises(ApiError) as raised:
        client_for(server, []).request_submit(gpu_model="h20", replicas=5000, origin="atlantis")
    assert raised.value.status == 400
    assert raised.value.message == (
        "HTTP 400:\n  replicas: Ensure this value is less than or equal to 4096.\n  origin: Unknown region 'atlantis'."
    )


def test_error_lines_name_nested_fields_and_keep_plain_text():
    assert error_lines({"detail": "Not found."}) == ["Not found."]
    assert error_lines({"nodes": {"0": ["A whole number."]}}) == ["nodes.0: A whole number."]
    assert error_lines("<html>Bad Gateway</html>") == ["<html>Bad Gateway</html>"]


def test_the_sdk_refuses_to_send_what_its_endpoint_table_does_not_declare():
    with pytest.raises(ValueError, match="max_rtt"):
        client_for(Server(), []).request_submit(gpu_model="h20", max_rtt="20")


def test_lists_are_read_to_the_last_page():
    def page(results, next_url):
        return httpx.Response(200, json={"count": 3, "next": next_url, "previous": None, "results": results})

    server = Server(page([LISTING, LISTING], "http://market.test/api/v1/listings/?page=2"), page([LISTING], None))
    assert len(client_for(server, []).listings(mine="true")) == 3
    assert server.seen[1].url.params["page"] == "2"
    assert server.seen[1].headers["Authorization"] == "Token k3y"


def test_filters_an_older_server_does_not_know_are_applied_by_the_client():
    match = {"id": 1, "request": 5, "listing": 7, "status": "reserved"}
    other = {**match, "id": 2, "request": 6}
    server = Server(
        httpx.Response(400, json={"request": ["Unknown parameter."]}),
        httpx.Response(200, json={"count": 2, "next": None, "previous": None, "results": [match, other]}),
    )
    assert client_for(server, []).call("match_list", query={"request": 5}) == [match]
    assert server.seen[0].url.params["request"] == "5"
    assert "request" not in server.seen[1].url.params


#: A request the look-ahead holds for its call, as the API shows it.
HELD_REQUEST = {
    "id": 3, "gpu_model": "h20", "gpus_per_replica": 1, "replicas": 2, "origin": "shanghai",
    "latency_class": "batch", "max_rtt_ms": None, "max_price_per_gpu_hour": "7.0000", "duration_hours": 4,
    "start_by": "2026-12-06T20:00:00Z", "status": "open", "matched_replicas": 0, "voucher_program": None,
    "left_out_reason": "", "held_until": "2026-12-06T10:00:00Z",
}  # fmt: skip


def test_a_wait_that_times_out_on_a_held_request_says_when_it_is_offered_again():
    server = Server(httpx.Response(200, json=HELD_REQUEST))
    ticks = iter([0.0, 5.0])
    outcome = client_for(server, []).request_wait(3, timeout=1, clock=lambda: next(ticks))
    assert not outcome.matched
    assert outcome.reason == (
        "still open after 1 s: no matching round has placed it yet "
        "(held for its call: offered to the rounds again at 2026-12-06T10:00:00+00:00)"
    )


def test_the_cli_shows_a_held_request_s_status_with_when_it_is_offered_again():
    held = BuyerRequest.from_json(HELD_REQUEST)
    free = BuyerRequest.from_json({**HELD_REQUEST, "held_until": None})
    assert status_of(held) == "open, held until 2026-12-06 10:00Z"
    assert status_of(free) == "open"
    assert request_rows([held])[0][REQUEST_COLUMNS.index("status")] == "open, held until 2026-12-06 10:00Z"
