"""A request POSTed to the API is matched by a real Celery worker process over Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from config.celery_app import app
from marketplace.models import BuyerRequest, MatchingRun
from tests.marketplace.test_api import REQUEST_BODY

ROOT = Path(__file__).resolve().parents[2]


def database_url_of_test_db() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(postgres, redis_url, tmp_path):
    """A Celery worker process on the test database and the Redis broker; stopped afterwards."""
    app.control.purge()  # messages left by an earlier run would match against this run's rows
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url_of_test_db(),
        "CELERY_BROKER_URL": redis_url,
    }
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--hostname",
            f"e2e-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    process.wait(timeout=30)
    log.close()


def wait_for(predicate, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


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
