"""Webhooks through a real Celery worker over Redis: a request POSTed to the API is matched by the
worker, whose round writes the buyer's event; the worker sends it to a local receiver that answers
500 twice, retries with growing delays, and the third attempt succeeds, signed each time."""

from __future__ import annotations

import itertools
import json
from datetime import datetime

import pytest

from marketplace.models import WebhookDelivery
from marketplace.services.webhooks import webhook_endpoint_create
from marketplace.webhook_signatures import verify
from tests.marketplace.test_api import REQUEST_BODY
from tests.marketplace.webhook_receiver import receiver_running
from tests.workers import broker_reset, process_stop, wait_for, worker_start

WORKER_ENV = {
    "WEBHOOKS_ALLOW_HTTP": "1",
    "WEBHOOKS_ALLOW_PRIVATE_URLS": "1",
    "WEBHOOKS_RETRY_SCHEDULE_SECONDS": "1,3,9",
}


@pytest.fixture
def worker(postgres, redis_url, tmp_path):
    broker_reset(redis_url)
    process = worker_start(broker_url=redis_url, log_path=tmp_path / "worker.log", name="webhooks", env=WORKER_ENV)
    yield process
    process_stop(process)


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_a_real_worker_delivers_a_matched_requests_event_with_retries(
    worker, settings, clients, buyer, make_listing, tmp_path
):
    settings.WEBHOOKS_ALLOW_HTTP = settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
    with receiver_running(statuses=[500, 500, 200]) as receiver:
        created = webhook_endpoint_create(organisation=buyer, url=receiver.url, events=["request.matched"])
        make_listing(gpu_count=16)
        response = clients["buyer"].post("/api/v1/requests/", REQUEST_BODY, format="json")
        assert response.status_code == 201

        def delivered() -> bool:
            return WebhookDelivery.objects.filter(endpoint=created.endpoint, status="succeeded").exists()

        assert wait_for(delivered, 60), (tmp_path / "worker.log").read_text()[-3000:]
    delivery = WebhookDelivery.objects.get(endpoint=created.endpoint)
    assert [a["status_code"] for a in delivery.attempts] == [500, 500, 200]
    starts = [datetime.fromisoformat(a["at"]) for a in delivery.attempts]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    print(f"attempts {len(starts)}, gaps between them {[round(g, 2) for g in gaps]} s")
    assert 1 <= gaps[0] < gaps[1]
    assert gaps[1] >= 3
    assert len(receiver.received) == 3
    for item in receiver.received:
        verify(created.secret, item.headers, item.body)
        assert item.headers["webhook-id"] == delivery.event_id
    assert json.loads(receiver.received[0].body)["data"]["request"] == response.json()["id"]
