"""A request POSTed to the API is matched by a real Celery worker process over Redis."""

from __future__ import annotations

import time

import pytest

from marketplace.models import BuyerRequest, MatchingRun
from tests.marketplace.test_api import REQUEST_BODY
from tests.workers import broker_reset, process_stop, wait_for, worker_start


@pytest.fixture
def worker(postgres, redis_url, tmp_path):
    """A Celery worker process on the test database and the Redis broker; stopped afterwards."""
    broker_reset(redis_url)  # what an earlier test left would match against, or block, this run's rounds
    process = worker_start(broker_url=redis_url, log_path=tmp_path / "worker.log", name="e2e")
    yield process
    process_stop(process)


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_a_posted_request_is_matched_by_a_real_worker(worker, clients, make_listing, tmp_path):
    make_listing(gpu_count=16)
    assert wait_for(lambda: MatchingRun.objects.exists(), 60), "the worker never ran the listing's round"
    started = time.monotonic()
    response = clients["buyer"].post("/api/v1/requests/", REQUEST_BODY)
    assert response.status_code == 201
    request = BuyerRequest.objects.get(pk=response.data["id"])

    def matched() -> bool:
        request.refresh_from_db()
        return request.status == "matched"

    assert wait_for(matched, 30), (tmp_path / "worker.log").read_text()[-3000:]
    elapsed = time.monotonic() - started
    print(f"POST /api/v1/requests/ → matched by a real worker in {elapsed:.2f} s")
    assert clients["buyer"].get("/api/v1/matches/").data["results"][0]["region"] == "ningxia-zhongwei"
