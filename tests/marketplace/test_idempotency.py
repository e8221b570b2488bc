"""``Idempotency-Key`` on creating POSTs: retries get the first answer and create nothing."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from marketplace.models import BuyerRequest, Listing
from tests.marketplace.test_api import LISTING_BODY, REQUEST_BODY


def test_the_same_key_twice_creates_one_request_and_replays_the_answer(clients):
    first = clients["buyer"].post("/api/v1/requests/", REQUEST_BODY, HTTP_IDEMPOTENCY_KEY="order-1")
    second = clients["buyer"].post("/api/v1/requests/", REQUEST_BODY, HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert BuyerRequest.objects.count() == 1


def test_the_same_key_with_another_body_is_refused(clients):
    clients["buyer"].post("/api/v1/requests/", REQUEST_BODY, HTTP_IDEMPOTENCY_KEY="order-2")
    other = clients["buyer"].post("/api/v1/requests/", {**REQUEST_BODY, "replicas": 9}, HTTP_IDEMPOTENCY_KEY="order-2")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.data
    assert BuyerRequest.objects.count() == 1


def test_keys_belong_to_their_user(clients):
    clients["provider"].post("/api/v1/listings/", LISTING_BODY, HTTP_IDEMPOTENCY_KEY="k")
    clients["other_provider"].post("/api/v1/listings/", LISTING_BODY, HTTP_IDEMPOTENCY_KEY="k")
    assert Listing.objects.count() == 2


def test_a_refused_request_is_replayed_as_refused(clients):
    bad = {**REQUEST_BODY, "gpus_per_replica": 3}
    first = clients["buyer"].post("/api/v1/requests/", bad, HTTP_IDEMPOTENCY_KEY="bad-1")
    again = clients["buyer"].post("/api/v1/requests/", bad, HTTP_IDEMPOTENCY_KEY="bad-1")
    assert first.status_code == again.status_code == 400
    assert again.json() == first.json()


def test_voucher_claims_take_a_key_too(clients, reference, now):
    from datetime import timedelta
    from decimal import Decimal

    from marketplace import services

    program = services.voucher_program_create(
        name="p",
        sponsor="s",
        percent=Decimal(10),
        budget=Decimal(100),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=1),
    )
    code = services.vouchers_issue(program_id=program.pk, sponsor_provider=None)[0].code
    answers = [
        clients["buyer"].post("/api/v1/vouchers/claim/", {"code": code}, HTTP_IDEMPOTENCY_KEY="claim") for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[1]["Idempotent-Replayed"] == "true"


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_fifty_concurrent_posts_with_one_key_create_one_request(postgres, reference, buyer):
    from tests.conftest import member

    user = member("racer", buyer)

    def post(_):
        client = APIClient()
        client.force_authenticate(user)
        try:
            response = client.post("/api/v1/requests/", REQUEST_BODY, format="json", HTTP_IDEMPOTENCY_KEY="same")
            return response.status_code, response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(post, range(50)))
    assert BuyerRequest.objects.count() == 1
    assert {status for status, _ in answers} == {201}
    assert all(body == answers[0][1] for _, body in answers)
