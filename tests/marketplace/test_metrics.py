"""``/metrics``: Prometheus' parser reads it, it moves when a round runs, requests are counted by
route, task failures by task, it is closed outside the local settings but to a token or an
allowed address, and a scrape costs the same queries on a big market as on a small one."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
import yaml
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from marketplace import services
from marketplace.models import GpuModel, Listing, Region, VoucherProgram
from marketplace.services.rounds import round_run
from marketplace.services.shard_lock import shard_lock
from marketplace.tasks import matching_round
from tests.conftest import need_service
from tests.marketplace.test_vouchers import code_for, make_program  # noqa: F401  (fixture)
from tests.slow_clients import Server, gunicorn_args
from tests.test_deploy import manage, production_env
from tests.workers import ROOT, broker_reset, free_port, process_stop, wait_for, worker_start

Samples = dict[tuple[str, frozenset], float]


def parsed(text: str) -> Samples:
    """Every sample of a scrape, by name and labels, read by prometheus-client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: Client | None = None, **headers: str) -> Samples:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return parsed(response.content.decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def open_metrics(settings):
    settings.METRICS_PUBLIC = True


def test_the_scrape_parses_and_names_every_metric_with_the_marketplace_prefix(reference, open_metrics):
    Client().get("/healthz")
    families = list(text_string_to_metric_families(Client().get("/metrics").content.decode()))
    ours = {family.name for family in families if family.name.startswith("marketplace_")}
    assert {
        "marketplace_http_request_duration_seconds",
        "marketplace_recent_rounds",
        "marketplace_round_phase_duration_seconds",
        "marketplace_round_served_replicas",
        "marketplace_round_unserved_replicas",
        "marketplace_round_gap_ratio",
        "marketplace_idle_gpus",
        "marketplace_matched_gpus",
        "marketplace_voucher_budget_cny",
        "marketplace_voucher_budget_remaining_cny",
        "marketplace_queue_messages",
        "marketplace_broker_up",
        "marketplace_task_failures",
        "marketplace_task_retries",
        "marketplace_webhook_deliveries",
    } <= ours


def test_a_round_moves_the_round_gpu_and_voucher_metrics(
    open_metrics,
    make_listing,
    make_request,
    make_program,  # noqa: F811
    buyer,
):
    make_listing(region="gansu-qingyang", gpu_count=16)
    program = make_program()
    make_request(gpus_per_replica=4, replicas=3, latency_class="batch", voucher_code=code_for(program, buyer=buyer))
    where = {"region": "gansu-qingyang", "gpu_model": "h20"}
    before = scrape()
    assert value(before, "marketplace_idle_gpus", **where) == 16
    assert value(before, "marketplace_matched_gpus", **where) == 0
    assert value(before, "marketplace_recent_rounds", shard="h20", status="succeeded") is None
    budget = {"program": "Qingyang compute voucher"}
    assert value(before, "marketplace_voucher_budget_remaining_cny", **budget) == 100000

    round_run(shard="h20", trigger="manual")

    after = scrape()
    assert value(after, "marketplace_recent_rounds", shard="h20", status="succeeded") == 1
    assert value(after, "marketplace_round_served_replicas", shard="h20") == 3
    assert value(after, "marketplace_round_unserved_replicas", shard="h20") == 0
    assert value(after, "marketplace_round_gap_ratio", shard="h20") == 0
    for phase in ("snapshot", "solve", "apply"):
        assert value(after, "marketplace_round_phase_duration_seconds_gcount", shard="h20", phase=phase) == 1
        assert value(after, "marketplace_round_phase_duration_seconds_bucket", shard="h20", phase=phase, le="+Inf") == 1
    assert value(after, "marketplace_idle_gpus", **where) == 4
    assert value(after, "marketplace_matched_gpus", **where) == 12
    program.refresh_from_db()
    assert program.remaining_budget < program.budget
    assert value(after, "marketplace_voucher_budget_remaining_cny", **budget) == float(program.remaining_budget)
    assert value(after, "marketplace_voucher_budget_cny", **budget) == 100000


def test_a_request_is_timed_under_its_url_pattern_not_its_path(reference, open_metrics):
    detail = {"route": "/api/v1/regions/<slug:code>/", "method": "GET"}
    count = "marketplace_http_request_duration_seconds_count"
    before = scrape()
    client = Client()
    assert client.get("/api/v1/regions/shanghai/").status_code == 200
    assert client.get("/api/v1/regions/beijing/").status_code == 200
    assert client.get("/api/v1/regions/atlantis/").status_code == 404
    assert client.get("/no/such/page/").status_code == 404
    after = scrape()
    assert (value(after, count, **detail, status="2xx") or 0) - (value(before, count, **detail, status="2xx") or 0) == 2
    assert (value(after, count, **detail, status="4xx") or 0) - (value(before, count, **detail, status="4xx") or 0) == 1
    unmatched = {"route": "unmatched", "method": "GET", "status": "4xx"}
    assert (value(after, count, **unmatched) or 0) - (value(before, count, **unmatched) or 0) == 1
    assert not any("shanghai" in dict(labels).get("route", "") for _, labels in after)


def test_outside_the_local_settings_a_scrape_needs_the_token(reference, settings):
    settings.METRICS_PUBLIC, settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = False, "s3cret-scrape", []
    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="s3cret-scrape").status_code == 401
    scrape(HTTP_AUTHORIZATION="Bearer s3cret-scrape")


def test_an_allowed_address_scrapes_without_a_token_and_a_forged_forwarded_for_does_not(reference, settings):
    settings.METRICS_PUBLIC, settings.METRICS_TOKEN = False, ""
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.20.0.0/16")]
    scrape(REMOTE_ADDR="10.20.3.4")
    assert Client().get("/metrics", REMOTE_ADDR="10.21.0.1").status_code == 403
    assert Client().get("/metrics", REMOTE_ADDR="10.21.0.1", HTTP_X_FORWARDED_FOR="10.20.3.4").status_code == 403


def test_with_neither_token_nor_allow_list_nobody_scrapes(reference, settings):
    settings.METRICS_PUBLIC, settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = False, "", []
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_production_settings_never_open_metrics_to_everyone():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "METRICS_PUBLIC": "1",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DATABASE_URL": "sqlite:///unused.sqlite3",
        "CELERY_BROKER_URL": "memory://",
        "ALLOWED_HOSTS": "localhost",
    }
    code = "from django.conf import settings; print(settings.METRICS_PUBLIC)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_failing_task_and_its_retries_are_counted(reference, open_metrics):
    """A round whose shard stays busy through every retry: the real task, run eagerly, retries
    and then fails; the signal handlers count both in the shared cache."""
    labels = {"task": "marketplace.matching_round"}
    before = scrape()
    with shard_held_by_another_round("h20"):
        result = matching_round.apply(kwargs={"shard": "h20", "trigger": "manual"})
    assert result.failed()
    after = scrape()
    retries = "marketplace_task_retries_total"
    failures = "marketplace_task_failures_total"
    assert value(after, retries, **labels) - value(before, retries, **labels) == matching_round.max_retries
    assert value(after, failures, **labels) - value(before, failures, **labels) >= 1


@contextmanager
def shard_held_by_another_round(shard: str) -> Iterator[None]:
    """``shard``'s lock held by a thread on its own database connection, as another worker would
    (on PostgreSQL an advisory lock is re-entrant within one session)."""
    held, done = threading.Event(), threading.Event()

    def other_round() -> None:
        try:
            with shard_lock(shard) as got:
                if got:
                    held.set()
                    done.wait(60)
        finally:
            connection.close()

    thread = threading.Thread(target=other_round)
    thread.start()
    try:
        assert held.wait(30), "the other round could not take the shard's lock"
        yield
    finally:
        done.set()
        thread.join()


def test_the_queue_depth_counts_messages_waiting_in_the_broker(reference, open_metrics):
    from config.celery_app import app

    before = value(scrape(), "marketplace_queue_messages", queue="celery")
    app.send_task("marketplace.matching_sweep")
    app.send_task("marketplace.matching_sweep")
    after = scrape()
    assert value(after, "marketplace_broker_up") == 1
    assert value(after, "marketplace_queue_messages", queue="celery") == before + 2
    with app.connection_for_write() as broker:  # leave the in-memory queue as it was
        broker.default_channel.queue_purge("celery")


def _market(provider, now, *, listings: int, programs: int) -> None:
    regions = list(Region.objects.filter(kind="hub").order_by("code"))
    models = list(GpuModel.objects.order_by("code"))
    for n in range(listings):
        services.listing_create(
            provider=provider,
            region=regions[n % len(regions)],
            gpu_model=models[n % len(models)],
            gpu_count=8,
            gpus_per_node=8,
            price_per_gpu_hour=Decimal("7.00"),
            available_from=now - timedelta(hours=1),
            available_until=now + timedelta(days=3),
        )
    for n in range(programs):
        services.voucher_program_create(
            name=f"programme {n}",
            sponsor="a city",
            percent=Decimal("20"),
            budget=Decimal("5000"),
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=30),
        )


def test_a_scrape_costs_the_same_queries_on_a_big_market(reference, open_metrics, provider, make_request, now):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            scrape()
        return len(captured)

    small = queries()
    _market(provider, now, listings=40, programs=6)
    for _ in range(3):
        make_request(gpu_model="h100", replicas=1)
        round_run(shard="h100", trigger="manual")
        round_run(shard="h20", trigger="manual")
    assert Listing.objects.count() == 40
    assert VoucherProgram.objects.count() == 6
    assert queries() == small == 5


def test_web_workers_write_their_own_files_and_one_scrape_sums_them(reference, open_metrics, tmp_path, monkeypatch):
    """Two processes serve requests in prometheus-client's multiprocess mode, as gunicorn's workers
    do; this process then scrapes the directory they share, as any worker answering /metrics does."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    serve = (
        "import django; django.setup(); from django.test import Client; "
        "codes = {{Client(HTTP_HOST='localhost').get('/healthz').status_code for _ in range({n})}}; "
        "assert codes == {{200}}, codes"
    )
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path}/web.sqlite3",
        "CELERY_BROKER_URL": "memory://",
        "CACHE_URL": "locmem://",
    }
    # The file exists, in WAL mode, before the workers open it, as after `migrate` in a deployment:
    # two connections switching a new file to WAL at once can fail one with "database is locked"
    # at once, whatever the busy timeout (seen under CI load: /healthz answered 503).
    with closing(sqlite3.connect(tmp_path / "web.sqlite3")) as database:
        database.execute("PRAGMA journal_mode=WAL")
    workers = [
        subprocess.Popen([sys.executable, "-c", serve.format(n=n)], cwd=ROOT, env=env, stderr=subprocess.PIPE)
        for n in (3, 4)
    ]
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors.decode()
    assert len(list(shared.glob("histogram_*.db"))) == 2
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    samples = scrape()
    healthz = {"route": "/healthz", "method": "GET", "status": "2xx"}
    assert value(samples, "marketplace_http_request_duration_seconds_count", **healthz) == 7
    assert value(samples, "marketplace_idle_gpus", region="ningxia-zhongwei", gpu_model="h20") is None
    assert value(samples, "marketplace_broker_up") == 1


def test_under_the_shipped_gunicorn_a_scrape_counts_every_workers_requests(tmp_path):
    """config/gunicorn.py as the image runs it (three workers, production settings): a previous
    run's file is cleared at start, and one scrape counts the requests whichever worker served them."""
    token = "scrape-token-for-the-test"
    env = production_env(tmp_path, METRICS_TOKEN=token, SECURE_SSL_REDIRECT="0")
    assert manage(env, "migrate", "--noinput", "-v0").returncode == 0
    shared = tmp_path / "prometheus"
    shared.mkdir()
    stale = (
        "from prometheus_client import Histogram; "
        "Histogram('marketplace_http_request_duration_seconds', '', ['route', 'method', 'status'])"
        ".labels('/healthz', 'GET', '2xx').observe(1)"
    )
    subprocess.run([sys.executable, "-c", stale], env={**env, "PROMETHEUS_MULTIPROC_DIR": str(shared)}, check=True)
    assert list(shared.glob("histogram_*.db"))
    port = free_port()
    server = Server(gunicorn_args(port), env, tmp_path / "gunicorn.log")
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(f"{base}/healthz"), seconds=60), server.log()
        sent = 1  # the request that found the server up
        # Twelve clients at once keep more than one worker busy, so that the count below sums
        # several workers' files; on a loaded machine one worker's threads may take a whole batch,
        # so batches go on (ten at most) until a second worker has served.
        for _ in range(10):
            with ThreadPoolExecutor(max_workers=12) as pool:
                assert set(pool.map(lambda _: _answers(f"{base}/healthz"), range(40))) == {True}
            sent += 40
            if len(list(shared.glob("histogram_*.db"))) >= 2:
                break
        assert len(list(shared.glob("histogram_*.db"))) >= 2, "one worker served every request"
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
        response = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 200
        samples = parsed(response.text)
    finally:
        server.stop()
    healthz = {"route": "/healthz", "method": "GET", "status": "2xx"}
    # Every request sent, whichever worker served it; none from the stale file.
    assert value(samples, "marketplace_http_request_duration_seconds_count", **healthz) == sent
    assert value(samples, "marketplace_broker_up") == 1


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


# --- what ships beside the endpoint: the Grafana dashboard, Prometheus and its compose service ----------------


def test_every_metric_the_dashboard_queries_is_one_the_scrape_serves(
    open_metrics,
    make_listing,
    make_request,
    make_program,  # noqa: F811
    buyer,
):
    make_listing(region="gansu-qingyang")
    make_request(latency_class="batch", voucher_code=code_for(make_program(), buyer=buyer))
    round_run(shard="h20", trigger="manual")
    Client().get("/healthz")
    served = {name for name, _ in scrape()}
    dashboard = json.loads((ROOT / "docs" / "grafana" / "marketplace.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\bmarketplace_\w+", target["expr"])
    }
    assert len(queried) >= 14
    assert queried <= served, sorted(queried - served)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_prometheus_scrapes_the_web_service_with_the_token_the_web_service_reads():
    metrics_stack = yaml.safe_load((ROOT / "docker-compose.metrics.yml").read_text())["services"]
    stack = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    prometheus = metrics_stack["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]  # not published beyond the host
    config_mount = "./config/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert config_mount in prometheus["volumes"]
    (job,) = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["web:8000"]}]
    token_file = job["authorization"]["credentials_file"]
    assert any(volume.endswith(f":{token_file}:ro") for volume in prometheus["volumes"])
    assert stack["web"]["environment"]["METRICS_TOKEN"] == "${METRICS_TOKEN:-}"
    assert metrics_stack["web"]["environment"]["ALLOWED_HOSTS"].endswith(",web")


# --- on the production servers: Redis as the broker and the shared cache, a real worker -----------


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_a_real_worker_drains_the_redis_queue_and_its_task_failures_reach_the_scrape(
    postgres, redis_url, tmp_path, open_metrics
):
    from config.celery_app import app

    if not settings_cache_is_redis():
        need_service("this test needs the shared cache on Redis (set CACHE_URL=redis://…)")
    broker_reset(redis_url)
    labels = {"task": "marketplace.matching_round"}
    failed_before = value(scrape(), "marketplace_task_failures_total", **labels)
    for _ in range(2):  # a message the task cannot take: it fails in the worker, not here
        app.send_task("marketplace.matching_round", kwargs={"shard": "h20", "no_such_argument": 1})
    assert value(scrape(), "marketplace_queue_messages", queue="celery") == 2
    worker = worker_start(broker_url=redis_url, log_path=tmp_path / "worker.log", name="metrics")
    try:

        def counted() -> bool:
            samples = scrape()
            return (
                value(samples, "marketplace_task_failures_total", **labels) == failed_before + 2
                and value(samples, "marketplace_queue_messages", queue="celery") == 0
            )

        assert wait_for(counted, 60, interval=0.5), (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        process_stop(worker)


def settings_cache_is_redis() -> bool:
    from django.conf import settings

    return settings.CACHES["default"]["BACKEND"].endswith(".RedisCache")


def test_webhook_deliveries_are_counted_by_status(reference, open_metrics, buyer):
    from marketplace.services.events import event_publish
    from marketplace.services.webhooks import webhook_endpoint_create

    assert value(scrape(), "marketplace_webhook_deliveries", status="pending") == 0
    webhook_endpoint_create(organisation=buyer, url="https://93.184.216.34/hooks", events=["match.failed"])
    event_publish("match.failed", buyer.pk, {"match": 1})
    event_publish("match.failed", buyer.pk, {"match": 2})
    after = scrape()
    assert value(after, "marketplace_webhook_deliveries", status="pending") == 2
    assert value(after, "marketplace_webhook_deliveries", status="succeeded") == 0
