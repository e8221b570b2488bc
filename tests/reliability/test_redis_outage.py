"""Redis stopped while buyers submit requests, then restarted (issue 7, invariant 5).

Redis carries two things: the Celery broker, and the shared cache that holds the DRF throttle
counters and the rounds' coalescing keys. While it is down a client sees:

- **503** with ``Retry-After`` when the outage meets the request before any write (the throttles
  count in the cache): nothing is written (``marketplace.api.errors``).
- **201** when the request committed and only the matching trigger met the outage: the trigger
  gives up quietly (``marketplace.services.triggers``), the request is in the database, and the
  beat sweep matches it once Redis is back.

Never a 500, never a half-created request, never a hang: each Redis call is bounded by
``REDIS_TIMEOUT_SECONDS`` (socket timeouts on the cache and the broker, one publish retry).

The end-to-end test runs what production runs — gunicorn, a Celery worker and beat — on the test
database and a redis-server of its own, which it kills (restarted empty: queued messages and
coalescing keys are lost too) or freezes (SIGSTOP: a Redis that accepts connections and never
answers), while threads keep posting. The smaller tests pin each contract on its own. The long
variant (``LONG_TESTS=1``) runs more outage cycles. Figures are printed (``-s``).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from django.conf import settings as django_settings
from psycopg import sql
from rest_framework.authtoken.models import Token

from config.settings.base import caches_from_url
from marketplace.bounds import GPU_COUNT
from marketplace.models import BuyerRequest, IdempotencyKey, Listing, Match, Organisation
from marketplace.services.triggers import round_pending_key
from tests.conftest import member, scale
from tests.services_helpers import request_terms
from tests.slow_clients import gunicorn_args
from tests.workers import (
    ROOT,
    PrivateRedis,
    celery_start,
    database_url_of_test_db,
    free_port,
    process_stop,
    service_env,
    sessions_blocked_by,
    wait_for,
    worker_start,
)

#: Outage cycles of the end-to-end test; they alternate between a killed and a frozen Redis.
CYCLES = scale(2, 10)
#: Seconds Redis stays down in each cycle, and seconds of normal service before each outage.
DOWN_SECONDS = 4
UP_SECONDS = 2
#: Beat's sweep interval in the end-to-end test: how soon lost triggers are made up for.
SWEEP_SECONDS = 2
#: Threads posting requests, each pausing this long between its posts.
POSTERS = 4
PACE_SECONDS = 0.05
#: Buyers each poster rotates through (so that no buyer nears its open-request quota).
BUYERS_PER_POSTER = 5
#: The most any answer may take: the worst path meets three bounded Redis calls (cache, then two
#: publish attempts) plus queueing behind the other posters for a gunicorn thread.
ANSWER_BOUND_SECONDS = 4 * django_settings.REDIS_TIMEOUT_SECONDS + 6
#: After Redis is back, every accepted request is matched within this: the worker reconnects
#: (Celery backs off 2, 4, 6… s), beat's next sweep, one round.
MATCH_BOUND_SECONDS = SWEEP_SECONDS + 25
GPUS = GPU_COUNT.maximum  # one listing with room for every request the posters send
REQUEST_BODY = request_terms()


# --- one contract at a time ---------------------------------------------------------------------


@pytest.mark.services
def test_a_post_while_redis_is_down_is_a_503_that_writes_nothing_and_service_resumes(private_redis, settings, clients):
    settings.CACHES = caches_from_url(private_redis.url(1))
    buyer = clients["buyer"]
    assert buyer.post("/api/v1/requests/", REQUEST_BODY, HTTP_IDEMPOTENCY_KEY="before").status_code == 201
    private_redis.kill()

    response = buyer.post("/api/v1/requests/", REQUEST_BODY, HTTP_IDEMPOTENCY_KEY="during")

    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert "temporarily unavailable" in response.json()["detail"]
    assert BuyerRequest.objects.count() == 1
    assert not IdempotencyKey.objects.filter(key="during").exists()  # the same key may retry
    private_redis.start()  # empty, on the same port: the pooled connections are stale
    assert buyer.post("/api/v1/requests/", REQUEST_BODY, HTTP_IDEMPOTENCY_KEY="during").status_code == 201
    assert BuyerRequest.objects.count() == 2


@pytest.mark.services
def test_a_frozen_redis_cannot_hang_a_post(private_redis, settings, clients):
    settings.CACHES = caches_from_url(private_redis.url(1))
    private_redis.freeze()

    started = time.monotonic()
    response = clients["buyer"].post("/api/v1/requests/", REQUEST_BODY)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert elapsed < settings.REDIS_TIMEOUT_SECONDS + 2, f"answered after {elapsed:.1f} s"
    assert not BuyerRequest.objects.exists()


@pytest.mark.services
def test_a_committed_request_survives_its_trigger_meeting_the_cache_down(
    private_redis, settings, make_request, django_capture_on_commit_callbacks, caplog
):
    settings.CACHES = caches_from_url(private_redis.url(1))
    private_redis.kill()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        request = make_request()  # its on-commit trigger runs here, against the dead cache

    assert len(callbacks) == 1
    assert BuyerRequest.objects.get(pk=request.pk).status == BuyerRequest.Status.OPEN
    assert "cache unavailable" in caplog.text
    assert "the sweep will run it" in caplog.text


def _trigger_in_a_process(*, cache_url: str, broker_url: str) -> subprocess.CompletedProcess:
    """Run the matching trigger in a fresh process configured like the web (its own broker and
    cache); it prints how long the trigger took."""
    code = (
        "import time, django; django.setup()\n"
        "from marketplace.services.triggers import _round_request\n"
        "started = time.monotonic(); _round_request('h20'); print(f'took {time.monotonic() - started:.2f}')\n"
    )
    env = service_env(broker_url, CACHE_URL=cache_url, DATABASE_URL="sqlite:///:memory:", LOG_LEVEL="WARNING")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.services
@pytest.mark.parametrize("outage", ["killed", "frozen"])
def test_the_trigger_gives_up_within_its_bound_when_only_the_broker_is_down(private_redis, tmp_path, outage):
    broker = PrivateRedis(private_redis.binary, tmp_path / "broker.log")
    broker.start()
    try:
        broker.kill() if outage == "killed" else broker.freeze()
        result = _trigger_in_a_process(cache_url=private_redis.url(1), broker_url=broker.url(0))
    finally:
        broker.stop()

    assert result.returncode == 0, result.stderr
    took = float(result.stdout.split("took ")[1])
    # Two publish attempts, each bounded by the socket timeout, plus Celery's connection set-up.
    assert took < 2 * django_settings.REDIS_TIMEOUT_SECONDS + 2, result.stdout
    assert "broker unavailable" in result.stderr
    assert "the sweep will run it" in result.stderr
    # The coalescing key is cleared, so that the next commit asks again.
    assert redis.Redis.from_url(private_redis.url(1)).keys(f"*{round_pending_key('h20')}") == []
    print(f"\ntrigger with the broker {outage}: gave up after {took:.2f} s")


# --- end to end: gunicorn, worker and beat through outages --------------------------------------


@dataclass
class Answer:
    key: str
    sent: float  # time.monotonic() when the POST went out
    seconds: float
    status: int | None  # None: no answer at all (connection error or client timeout)
    request_id: int | None = None
    retry_after: str | None = None
    detail: str = ""
    error: str = ""


def post_requests(base_url: str, tokens: list[str], stop: threading.Event, answers: list[Answer]) -> None:
    """POST requests with fresh Idempotency-Keys, one after another, until ``stop``."""
    session = requests.Session()
    for i in range(10**9):
        if stop.is_set():
            return
        key = uuid.uuid4().hex
        headers = {"Authorization": f"Token {tokens[i % len(tokens)]}", "Idempotency-Key": key}
        sent = time.monotonic()
        try:
            response = session.post(
                f"{base_url}/api/v1/requests/", json=REQUEST_BODY, headers=headers, timeout=ANSWER_BOUND_SECONDS * 2
            )
        except requests.RequestException as exc:
            answers.append(Answer(key, sent, time.monotonic() - sent, None, error=repr(exc)))
            continue
        body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        answers.append(
            Answer(
                key,
                sent,
                time.monotonic() - sent,
                response.status_code,
                request_id=body.get("id") if response.status_code == 201 else None,
                retry_after=response.headers.get("Retry-After"),
                detail=str(body.get("detail", response.text[:200])),
            )
        )
        time.sleep(PACE_SECONDS)


def token_of(username: str, organisation: Organisation) -> str:
    return Token.objects.create(user=member(username, organisation)).key


def health(base_url: str) -> tuple[int, dict]:
    response = requests.get(f"{base_url}/healthz", timeout=30)
    return response.status_code, response.json()


class Stack:
    """gunicorn (as the Dockerfile runs it: config/gunicorn.py), one worker and beat on the test database and the
    private Redis (broker: db 0, cache: db 1, as docker-compose.yml has them); logs in tmp_path."""

    def __init__(self, redis_server: PrivateRedis, log_dir: Path):
        self.log_dir, self.port, self.processes = log_dir, free_port(), []
        self.broker_url = redis_server.url(0)
        self.env = {"CACHE_URL": redis_server.url(1), "MATCHING_SWEEP_SECONDS": str(SWEEP_SECONDS)}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with (self.log_dir / "gunicorn.log").open("a") as log:
            env = service_env(self.broker_url, **self.env)
            self.processes.append(
                subprocess.Popen(gunicorn_args(self.port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        worker_log = self.log_dir / "worker.log"
        self.processes.append(
            worker_start(broker_url=self.broker_url, log_path=worker_log, name="outage", env=self.env)
        )
        beat = ["beat", "--loglevel", "INFO", "--schedule", str(self.log_dir / "beat-schedule")]
        self.processes.append(
            celery_start(beat, broker_url=self.broker_url, log_path=self.log_dir / "beat.log", env=self.env)
        )
        assert wait_for(lambda: " ready." in worker_log.read_text(errors="replace"), 60), self.logs()
        assert wait_for(self._serving, 60), self.logs()

    def _serving(self) -> bool:
        try:
            return health(self.base_url)[0] == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        for process in self.processes:
            process_stop(process)

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}" for log in sorted(self.log_dir.glob("*.log"))
        )


def all_matched(request_ids: list[int]) -> bool:
    return not BuyerRequest.objects.filter(pk__in=request_ids).exclude(status=BuyerRequest.Status.MATCHED).exists()


@pytest.fixture
def stack(postgres, reference, private_redis, tmp_path):
    """The running stack; stopped however the test ends (before its Redis is)."""
    running = Stack(private_redis, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


class Posters:
    """Threads posting requests, each as its own buyers, until the ``with`` block ends."""

    def __init__(self, base_url: str, tokens: list[list[str]]):
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=post_requests, args=(base_url, own, self.stop, self.answers), daemon=True)
            for own in tokens
        ]

    def __enter__(self) -> Posters:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=ANSWER_BOUND_SECONDS * 3)

    def accepted(self) -> list[int]:
        return [a.request_id for a in list(self.answers) if a.status == 201]


def outage_cycle(cycle: int, listing_id: int, private_redis: PrivateRedis, stack: Stack) -> tuple:
    """Take Redis down (kill or freeze) for DOWN_SECONDS and bring it back; returns (how, down at,
    up at, the /healthz answer during the outage).

    Redis goes down while the worker is in the middle of a task: the test holds the listing's row
    lock until a round (or the sweep) waits on it, so the task finishes, and acknowledges its
    message, while Redis is down.
    """
    mode = ("killed", "frozen")[cycle % 2]
    with psycopg.connect(database_url_of_test_db()) as holder:
        table = sql.Identifier(Listing._meta.db_table)
        holder.execute(sql.SQL("SELECT id FROM {} WHERE id = %s FOR UPDATE").format(table), [listing_id])
        assert wait_for(lambda: sessions_blocked_by(holder.info.backend_pid) > 0, 30), f"no task waited\n{stack.logs()}"
        down_at = time.monotonic()
        private_redis.kill() if mode == "killed" else private_redis.freeze()
        holder.rollback()
    try:
        time.sleep(1)
        health_down = health(stack.base_url)
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
    finally:
        up_at = time.monotonic()
        private_redis.start() if mode == "killed" else private_redis.thaw()
    return mode, down_at, up_at, health_down


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_redis_outages_while_buyers_submit_refuse_or_accept_cleanly_and_lose_nothing(private_redis, stack):
    provider_token = token_of("outage-provider", Organisation.objects.create(name="Outage DC", kind="provider"))
    tokens = [
        [
            token_of(f"outage-buyer-{p}-{b}", Organisation.objects.create(name=f"Outage buyer {p}-{b}", kind="buyer"))
            for b in range(BUYERS_PER_POSTER)
        ]
        for p in range(POSTERS)
    ]
    listing = requests.post(
        f"{stack.base_url}/api/v1/listings/",
        json={
            "region": "ningxia-zhongwei",
            "gpu_model": "h20",
            "gpu_count": GPUS,
            "gpus_per_node": 8,
            "price_per_gpu_hour": "6.20",
        },
        headers={"Authorization": f"Token {provider_token}"},
        timeout=30,
    )
    assert listing.status_code == 201, listing.text

    outages, recoveries = [], []
    with Posters(stack.base_url, tokens) as posters:
        for cycle in range(CYCLES):
            time.sleep(UP_SECONDS)
            outages.append(outage_cycle(cycle, listing.json()["id"], private_redis, stack))
            # Every request accepted so far (before, during, just after the outage) gets matched.
            up_at, accepted = outages[-1][2], posters.accepted()
            matched = wait_for(lambda ids=accepted: all_matched(ids), MATCH_BOUND_SECONDS, interval=0.2)
            recoveries.append(time.monotonic() - up_at)
            assert matched, (
                f"cycle {cycle}: requests unmatched {MATCH_BOUND_SECONDS} s after Redis came back\n{stack.logs()}"
            )
        time.sleep(UP_SECONDS)
    answers = posters.answers
    ids = posters.accepted()
    assert wait_for(lambda: all_matched(ids), MATCH_BOUND_SECONDS, interval=0.2), stack.logs()
    health_after = health(stack.base_url)

    statuses = Counter(a.status for a in answers)
    refused = [a for a in answers if a.status == 503]
    during = [a for a in answers if a.status == 201 and any(down <= a.sent < up for _, down, up, _ in outages)]
    seconds = sorted(a.seconds for a in answers)
    print(
        f"\n{len(answers)} POSTs through {CYCLES} Redis outages of {DOWN_SECONDS} s"
        f" ({', '.join(mode for mode, *_ in outages)}): {statuses[201]} accepted"
        f" ({len(during)} of them sent while Redis was down), {len(refused)} refused with 503;"
        f"\nanswer time p50 {statistics.median(seconds) * 1000:.0f} ms, max {seconds[-1]:.2f} s"
        f" (bound {ANSWER_BOUND_SECONDS} s); every request accepted so far matched"
        f" {', '.join(f'{r:.1f}' for r in recoveries)} s after Redis came back"
    )

    # Every answer is a 201 or a clear 503, in bounded time.
    assert set(statuses) <= {201, 503}, [a for a in answers if a.status not in (201, 503)][:5]
    assert seconds[-1] <= ANSWER_BOUND_SECONDS
    assert refused, "no POST met the outage: the test did not test it"
    assert all(a.retry_after and "temporarily unavailable" in a.detail for a in refused), refused[:3]
    for _, _, up, _ in outages:
        assert any(a.status == 201 and a.sent > up for a in answers), "service did not resume after an outage"
    # Every 201 is exactly one request; a 503 left nothing behind, not even its Idempotency-Key.
    created = set(BuyerRequest.objects.filter(buyer__name__startswith="Outage buyer").values_list("pk", flat=True))
    assert len(ids) == len(set(ids))
    assert set(ids) == created
    assert not IdempotencyKey.objects.filter(key__in=[a.key for a in refused]).exists()
    # Every accepted request is matched exactly once, none of the GPUs twice.
    assert BuyerRequest.objects.filter(pk__in=ids, status=BuyerRequest.Status.MATCHED).count() == len(ids)
    assert Match.objects.filter(request_id__in=ids).count() == len(ids)
    assert Listing.objects.get(pk=listing.json()["id"]).allocated_gpus == len(ids)
    # /healthz names Redis as down while it is, and is healthy again after.
    for *_, (status, body) in outages:
        assert status == 503, body
        assert body["broker"] == "unreachable", body
        assert body["cache"] == "unreachable", body
    assert health_after == (200, {"database": "ok", "broker": "ok", "cache": "ok"})
