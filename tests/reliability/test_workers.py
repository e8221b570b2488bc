"""Matching under real Celery worker processes on PostgreSQL and Redis (issue 7, invariants 1, 4, 6).

1. Many buyers submit at once against scarce GPUs while two worker processes match: exactly the
   free GPUs are allocated, none twice, every request in a valid state.
4. A worker killed with ``kill -9`` in the middle of a round loses nothing and holds nothing: the
   books balance, the shard lock dies with it, and after a restart matching resumes within the
   sweep interval (a real beat runs the sweep); the dead worker's run is recorded as lost.
6. A round that hangs past its soft time limit (a row lock held by the test stalls its apply) is
   aborted, rolled back, recorded failed and retried; the retry matches once the lock is gone.

The long variants (``LONG_TESTS=1``) repeat more: 20 races, 50 kills. Each test prints its figures.
"""

from __future__ import annotations

import os
import random
import re
import signal
import statistics
import threading
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.db.models import Max, Q
from psycopg import sql

from config.celery_app import app
from marketplace import services
from marketplace.demand import demand_request_build
from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, GpuModel, Listing, Match, MatchingRun, Organisation, Region
from marketplace.services.rounds import WORKER_LOST, matching_run_start, round_run
from marketplace.services.shard_lock import advisory_key
from marketplace.tasks import matching_round, matching_sweep
from tests.conftest import client_for, member, scale
from tests.workers import broker_reset, celery_start, database_url_of_test_db, process_stop, wait_for, worker_start

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

RACES = scale(2, 20)
KILLS = scale(5, 50)
BUYERS = 500
#: Threads submitting at once, each on its own database connection (PostgreSQL allows 100 in all).
SUBMITTERS = 20
#: The 100 free GPUs of each race: (GPU model, region, GPUs, GPUs per node, price per GPU-hour).
RACE_CAPACITY = (
    ("h20", "ningxia-zhongwei", 16, 8, "6.00"),
    ("h20", "gansu-qingyang", 16, 8, "6.50"),
    ("h20", "guizhou-guian", 16, 4, "7.00"),
    ("h100", "inner-mongolia-ulanqab", 24, 8, "11.00"),
    ("h100", "inner-mongolia-horinger", 16, 8, "11.50"),
    ("h100", "hebei-zhangjiakou", 12, 4, "12.00"),
)
#: Open requests in the kill test: enough that a round takes about a second on this machine.
KILL_DEMAND = 5000
#: GPUs a fresh listing brings to each kill's round.
KILL_GPUS = 64
SWEEP_SECONDS = 5
SOFT_LIMIT_SECONDS = 2


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def broker(postgres, redis_url, reference):
    """The Redis broker, emptied before and after: messages of an earlier run (queued, or held
    unacknowledged by a killed worker) would act on this run's rows."""
    broker_reset(redis_url)
    yield redis_url
    broker_reset(redis_url)


class Processes:
    """Worker and beat processes of one test, each logging to its own file; all stopped at the end."""

    def __init__(self, broker_url: str, log_dir: Path):
        self.broker_url, self.log_dir, self.started = broker_url, log_dir, []

    def worker(self, name: str, **options):
        log = self.log_dir / f"{name}.log"
        process = worker_start(broker_url=self.broker_url, log_path=log, name=name, **options)
        self.started.append((process, log))
        return process, log

    def beat(self, env: dict[str, str]):
        log = self.log_dir / "beat.log"
        args = ["beat", "--loglevel", "INFO", "--schedule", str(self.log_dir / "beat-schedule")]
        process = celery_start(args, broker_url=self.broker_url, log_path=log, env=env)
        self.started.append((process, log))
        return process, log

    def stop_all(self) -> None:
        for process, _ in self.started:
            process_stop(process)

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {log.name}\n{_text(log)[-chars:]}" for _, log in self.started)


def _text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def wait_ready(log: Path, seconds: float = 60) -> bool:
    """Whether the worker logging to ``log`` said it is consuming within ``seconds``."""
    return wait_for(lambda: " ready." in _text(log), seconds, interval=0.02)


def buyers_create(count: int, prefix: str) -> list[Organisation]:
    return Organisation.objects.bulk_create(
        [Organisation(name=f"{prefix} buyer {i}", kind=Organisation.Kind.BUYER) for i in range(count)]
    )


def demand_terms(rng: random.Random, gpu_model: GpuModel, cities: list[Region], now) -> dict:
    """A batch request (any listing is in reach) of 1–2 replicas of 1–2 GPUs under a high cap."""
    return {
        "gpu_model": gpu_model,
        "gpus_per_replica": rng.choice([1, 2]),
        "replicas": rng.choice([1, 2]),
        "origin": rng.choice(cities),
        "latency_class": "batch",
        "max_price_per_gpu_hour": Decimal("30.00"),
        "duration_hours": 24,
        "start_by": now + timedelta(hours=6),
    }


def listing_of(provider: Organisation, model: str, region: str, gpus: int, node: int, price: str) -> Listing:
    now = market_now()
    return services.listing_create(
        provider=provider,
        region=Region.objects.get(code=region),
        gpu_model=GpuModel.objects.get(code=model),
        gpu_count=gpus,
        gpus_per_node=node,
        price_per_gpu_hour=Decimal(price),
        available_from=now - timedelta(hours=1),
        available_until=now + timedelta(days=30),
    )


def books_check(*, listing_ids=None, request_ids=None) -> dict:
    """Assert the books balance over the given listings and requests (all when None); return totals.

    Every match holds replicas × GPUs per replica of its request's size and model, one node per
    replica; every listing's allocated counter equals its live matches' GPUs, within its count and
    each node's size; every request's matched replicas equal its live matches' replicas, and its
    status says exactly that (open / partially matched / matched, or expired while unmatched).
    """
    listings_q = Listing.objects.all() if listing_ids is None else Listing.objects.filter(pk__in=listing_ids)
    requests_q = BuyerRequest.objects.all() if request_ids is None else BuyerRequest.objects.filter(pk__in=request_ids)
    listings = {row["id"]: row for row in listings_q.values()}
    requests = {row["id"]: row for row in requests_q.values()}
    matches = list(
        Match.objects.filter(Q(listing_id__in=list(listings)) | Q(request_id__in=list(requests)))
        .filter(status__in=Match.LIVE_STATUSES)
        .values("pk", "listing_id", "request_id", "replicas", "gpus_per_replica", "gpus", "nodes")
    )
    problems: list[str] = []
    allocated: Counter = Counter()
    replicas: Counter = Counter()
    node_use: dict[int, Counter] = {pk: Counter() for pk in listings}
    for match in matches:
        request = requests.get(match["request_id"]) or BuyerRequest.objects.values().get(pk=match["request_id"])
        listing = listings.get(match["listing_id"]) or Listing.objects.values().get(pk=match["listing_id"])
        size, count = match["gpus_per_replica"], match["replicas"]
        if match["gpus"] != count * size or len(match["nodes"]) != count:
            problems.append(f"match {match['pk']}: {count} replicas of {size}, {match['gpus']} GPUs, {match['nodes']}")
        if size != request["gpus_per_replica"] or listing["gpu_model_id"] != request["gpu_model_id"]:
            problems.append(f"match {match['pk']} does not fit request {request['id']}")
        allocated[match["listing_id"]] += match["gpus"]
        replicas[match["request_id"]] += match["replicas"]
        for node in match["nodes"]:
            node_use.setdefault(match["listing_id"], Counter())[node] += match["gpus_per_replica"]
    for pk, listing in listings.items():
        if not allocated[pk] == listing["allocated_gpus"] <= listing["gpu_count"]:
            problems.append(f"listing {pk}: allocated {listing['allocated_gpus']}, live matches hold {allocated[pk]}")
        nodes = listing["gpu_count"] // listing["gpus_per_node"]
        if any(not 0 <= node < nodes or used > listing["gpus_per_node"] for node, used in node_use[pk].items()):
            problems.append(f"listing {pk}: nodes over-used {dict(node_use[pk])}")
    statuses: Counter = Counter()
    for pk, request in requests.items():
        matched, wanted, status = request["matched_replicas"], request["replicas"], request["status"]
        statuses[status] += 1
        expected = {0: {"open", "expired"}, wanted: {"matched"}}.get(matched, {"partially_matched"})
        if matched != replicas[pk] or not 0 <= matched <= wanted or status not in expected:
            problems.append(f"request {pk}: {status}, matched {matched}/{wanted}, live matches hold {replicas[pk]}")
    assert not problems, f"{len(problems)} broken: " + "; ".join(problems[:10])
    return {
        "allocated": sum(row["allocated_gpus"] for row in listings.values()),
        "listed": sum(row["gpu_count"] for row in listings.values()),
        "statuses": dict(statuses),
        "matches": len(matches),
    }


def allocated_is(listing_ids: list[int], gpus: int):
    """A predicate: the listings' allocated GPUs add up to ``gpus``."""
    return lambda: sum(Listing.objects.filter(pk__in=listing_ids).values_list("allocated_gpus", flat=True)) == gpus


def runs_after(run_id: int | None):
    """A predicate: a matching run newer than ``run_id`` exists (a round has started)."""
    return lambda: MatchingRun.objects.filter(pk__gt=run_id or 0).exists()


def overlapping(runs: list[dict]) -> int:
    """How many pairs of ``runs`` (dicts with started_at, finished_at) overlap in time."""
    runs = sorted(runs, key=lambda run: run["started_at"])
    return sum(
        1
        for i, earlier in enumerate(runs)
        for later in runs[i + 1 :]
        if later["started_at"] < (earlier["finished_at"] or later["started_at"])
    )


def shard_lock_holders(shard: str) -> int:
    """Sessions holding ``shard``'s advisory lock right now."""
    first, second = advisory_key(shard)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 2",
            [first, second % (1 << 32)],
        )
        return cursor.fetchone()[0]


# --- 1. concurrent demand, two workers ----------------------------------------------------------


def test_500_buyers_race_for_100_gpus_with_two_workers_matching(broker, tmp_path):
    """500 buyers submit at once (20 threads, each on its own connection) for 100 free GPUs over
    two shards (H20, H100) while two worker processes run the rounds the commits trigger.

    Each race: exactly 100 GPUs end up allocated, no listing or node over-allocated, every request
    valid; rounds of one shard never overlap (the shard lock), rounds of the two shards may.
    """
    processes = Processes(broker, tmp_path)
    provider = Organisation.objects.create(name="Race DC", kind=Organisation.Kind.PROVIDER)
    models = {code: GpuModel.objects.get(code=code) for code in ("h20", "h100")}
    cities = list(Region.objects.filter(kind=Region.Kind.CITY))
    times, overlaps = [], 0
    try:
        logs = [processes.worker(f"race{i}")[1] for i in range(2)]
        assert all(wait_ready(log) for log in logs), processes.logs()
        for race in range(RACES):
            first_run = (MatchingRun.objects.aggregate(last=Max("id"))["last"] or 0) + 1
            listings = [listing_of(provider, *row).pk for row in RACE_CAPACITY]
            buyers = buyers_create(BUYERS, f"race {race}")
            started = time.monotonic()
            request_ids, errors = submit_concurrently(buyers, models, cities, seed=race)
            submitted = time.monotonic() - started
            assert not errors, errors[:5]
            assert wait_for(allocated_is(listings, 100), 120, interval=0.1), processes.logs()
            elapsed = time.monotonic() - started
            assert wait_for(lambda: not MatchingRun.objects.filter(status="running").exists(), 60), processes.logs()
            totals = books_check(listing_ids=listings, request_ids=request_ids)
            assert (totals["allocated"], totals["listed"], len(request_ids)) == (100, 100, BUYERS)
            runs = list(MatchingRun.objects.filter(pk__gte=first_run).values("shard", "started_at", "finished_at"))
            for shard in models:
                assert overlapping([run for run in runs if run["shard"] == shard]) == 0, f"two {shard} rounds at once"
            overlaps += overlapping(runs)
            times.append(elapsed)
            print(
                f"race {race + 1}/{RACES}: {BUYERS} submissions in {submitted:.2f} s, 100 GPUs allocated "
                f"{elapsed:.2f} s after the first; {len(runs)} rounds; requests {totals['statuses']}"
            )
            # The race's unplaced demand retires, so the next race starts on fresh rows alone.
            BuyerRequest.objects.filter(pk__in=request_ids, status__in=BuyerRequest.OPEN_STATUSES).update(
                start_by=market_now() - timedelta(minutes=1)
            )
        rounds = [len(re.findall(r"matching_round\[[^]]+\] succeeded", _text(log))) for log in logs]
        busy = [len(re.findall(r"matching_round\[[^]]+\] retry", _text(log))) for log in logs]
    finally:
        processes.stop_all()
    assert all(rounds), f"each worker should have run rounds: {rounds}"
    print(
        f"{RACES} races: {statistics.mean(times):.2f} s mean, {max(times):.2f} s max, {sum(times):.1f} s total; "
        f"rounds per worker {rounds}, shard-busy retries {busy}, cross-shard overlapping round pairs {overlaps}"
    )


def submit_concurrently(buyers, models, cities, *, seed: int) -> tuple[list[int], list[Exception]]:
    """Each buyer submits one request; ``SUBMITTERS`` threads released together by a barrier."""
    rng = random.Random(seed)
    codes = sorted(models)
    work = [(buyer, demand_terms(rng, models[codes[i % 2]], cities, market_now())) for i, buyer in enumerate(buyers)]
    barrier, lock = threading.Barrier(SUBMITTERS), threading.Lock()
    ids: list[int] = []
    errors: list[Exception] = []

    def submitter(part):
        try:
            barrier.wait(timeout=30)
            for buyer, terms in part:
                request = services.request_submit(buyer=buyer, **terms)
                with lock:
                    ids.append(request.pk)
        except Exception as exc:  # surfaced by the caller: a thread's exception would vanish
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submitter, args=(work[i::SUBMITTERS],)) for i in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ids, errors


# --- 4. kill -9 in the middle of a round --------------------------------------------------------


def test_a_worker_killed_mid_round_loses_nothing_and_matching_resumes_within_the_sweep(broker, tmp_path):
    """``KILLS`` times: a fresh listing triggers a round over thousands of open requests; the
    worker is killed with SIGKILL after the round's run row appears: at a random moment of the
    round, or (every other kill) inside its apply transaction.

    After each kill: the books balance, the shard lock is free again within seconds (it died with
    the worker's connection). After the restart (every other time with the queue emptied while the
    worker is down, so that only beat's sweeps can bring rounds back) a round starts within the
    sweep interval, marks the dead worker's run failed ("worker lost"), and places the listing's
    GPUs.
    """
    processes = Processes(broker, tmp_path)
    env = {"MATCHING_SWEEP_SECONDS": str(SWEEP_SECONDS)}
    provider = Organisation.objects.create(name="Kill DC", kind=Organisation.Kind.PROVIDER)
    demand_bulk_create(KILL_DEMAND)
    rng = random.Random(4)
    figures: dict[str, list[float]] = {
        "lock freed": [],
        "ready": [],
        "round after ready": [],
        "emptied": [],
        "restart to round": [],
    }
    phases: Counter = Counter()
    lost: list[int] = []
    try:
        processes.beat(env)
        worker, log = processes.worker("kill-0", env=env)
        assert wait_ready(log), processes.logs()
        calibration = round_of(listing_of(provider, "h20", "ningxia-zhongwei", KILL_GPUS, 8, "6.00"), processes)
        duration = (calibration.finished_at - calibration.started_at).total_seconds()
        print(f"calibration round: {duration:.2f} s {calibration.timings_ms}, {calibration.request_count} requests")
        for kill in range(KILLS):
            last = MatchingRun.objects.aggregate(last=Max("id"))["last"]
            listing = listing_of(provider, "h20", "gansu-qingyang", KILL_GPUS, 8, "6.50")
            assert wait_for(runs_after(last), 30, 0.005), processes.logs()
            run_id = MatchingRun.objects.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[0]
            seen_applying, delay = kill_during(worker, rng, aim_at_apply=kill % 2 == 1, calibration=calibration)
            worker.wait(timeout=10)
            killed_at = time.monotonic()
            assert wait_for(lambda: shard_lock_holders("h20") == 0, 10, 0.02), "the dead worker's lock outlived it"
            figures["lock freed"].append(time.monotonic() - killed_at)
            # Its session is gone: nothing of the dead worker can still commit.
            run = MatchingRun.objects.get(pk=run_id)
            phase = landed(run, seen_applying, delay, calibration)
            phases[phase] += 1
            totals = books_check()
            emptied = kill % 2 == 0
            if emptied:  # the queue is lost too: only beat's sweeps can bring rounds back
                app.control.purge()
            restarted = time.monotonic()
            worker, log = processes.worker(f"kill-{kill + 1}", env=env)
            assert wait_ready(log), processes.logs()
            ready = time.monotonic()
            figures["ready"].append(ready - restarted)
            assert wait_for(runs_after(run_id), SWEEP_SECONDS + 2, 0.02), (
                f"no round within the sweep interval after the restart\n{processes.logs()}"
            )
            figures["emptied" if emptied else "round after ready"].append(time.monotonic() - ready)
            figures["restart to round"].append(time.monotonic() - restarted)
            assert wait_for(allocated_is([listing.pk], KILL_GPUS), 60), processes.logs()
            run.refresh_from_db()
            assert run.status != MatchingRun.Status.RUNNING, f"run {run_id} of the dead worker still 'running'"
            if phase != "after":  # the dead worker's run, still marked running, was marked lost
                assert (run.status, run.error) == ("failed", WORKER_LOST)
                lost.append(run_id)
            books_check()
            print(
                f"kill {kill + 1}/{KILLS} at +{delay:.2f} s ({phase}): lock freed in "
                f"{figures['lock freed'][-1]:.2f} s; worker ready {figures['ready'][-1]:.2f} s after restart, "
                f"round {figures['emptied' if emptied else 'round after ready'][-1]:.2f} s after ready"
                f"{' (queue emptied)' if emptied else ''}; open requests {totals['statuses'].get('open')}"
            )
        staff = client_for(member("kill-staff", Organisation.objects.create(name="Ops", kind="buyer"), is_staff=True))
        shown = {row["id"]: row for row in staff.get("/api/v1/matching-runs/", {"page_size": 200}).data["results"]}
        assert lost
        assert lost[-1] in shown
        assert all((shown[pk]["status"], shown[pk]["error"]) == ("failed", WORKER_LOST) for pk in lost if pk in shown)
    finally:
        processes.stop_all()
    assert phases["after"] < KILLS / 2, f"too few kills landed mid-round: {dict(phases)}"
    assert phases["apply"], f"no kill landed inside an apply transaction: {dict(phases)}"
    print(f"{KILLS} kills by phase {dict(phases)}; " + "; ".join(_spread(name, xs) for name, xs in figures.items()))


def demand_bulk_create(count: int) -> None:
    """``count`` open H20 requests checked by the submission rules, inserted in bulk (setup speed:
    submitting them one by one would take half a minute), spread so no buyer passes its quota."""
    now, h20 = market_now(), GpuModel.objects.get(code="h20")
    cities = list(Region.objects.filter(kind=Region.Kind.CITY))
    buyers = buyers_create(count // 400 + 1, "kill")
    rng = random.Random(count)
    rows = [
        demand_request_build(buyer=buyers[i // 400], now=now, **demand_terms(rng, h20, cities, now))
        for i in range(count)
    ]
    BuyerRequest.objects.bulk_create(rows, batch_size=1000)


def round_of(listing: Listing, processes: Processes) -> MatchingRun:
    """The succeeded round that placed ``listing``'s GPUs."""
    assert wait_for(allocated_is([listing.pk], listing.gpu_count), 60), processes.logs()
    run = MatchingRun.objects.filter(matches__listing=listing).distinct().get()
    assert wait_for(lambda: MatchingRun.objects.get(pk=run.pk).status == "succeeded", 30), processes.logs()
    return MatchingRun.objects.get(pk=run.pk)


def kill_during(worker, rng: random.Random, *, aim_at_apply: bool, calibration: MatchingRun) -> tuple[bool, float]:
    """SIGKILL ``worker``, whose round has just started; return whether it was seen applying,
    and how long after the start of the round it was killed.

    At a uniformly random moment of a round as long as the calibration round; or, aiming at the
    apply phase (the shortest and the one that writes), once the worker's session is seen inside
    a write transaction, after a random part of the calibration round's apply time.
    """
    started = time.monotonic()
    duration = (calibration.finished_at - calibration.started_at).total_seconds()
    seen_applying = aim_at_apply and wait_for(worker_writing, duration * 3, 0.002)
    if seen_applying:
        time.sleep(rng.uniform(0, calibration.timings_ms["apply"] / 1000 * 0.8))
    elif not aim_at_apply:
        time.sleep(rng.uniform(0, duration))
    os.kill(worker.pid, signal.SIGKILL)
    return seen_applying, time.monotonic() - started


def landed(run: MatchingRun, seen_applying: bool, delay: float, calibration: MatchingRun) -> str:
    """Where a kill landed in ``run``: after it was recorded, after its apply committed, inside
    its apply transaction (seen), or (by the delay against the calibration round) in its
    snapshot, solve or (probably) apply."""
    if run.status != MatchingRun.Status.RUNNING:
        return "after"
    if Match.objects.filter(run=run).exists():
        return "applied, not recorded"
    if seen_applying:
        return "apply"
    snapshot, solve = (calibration.timings_ms[phase] / 1000 for phase in ("snapshot", "solve"))
    return "snapshot" if delay < snapshot else "solve" if delay < snapshot + solve else "apply?"


def worker_writing() -> bool:
    """Whether another session on this database is inside a write transaction (it holds a
    transaction id): during a round, that is its apply phase locking and writing rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
        )
        return cursor.fetchone()[0] > 0


def _spread(name: str, values: list[float]) -> str:
    name = {"emptied": "round after ready (queue emptied)"}.get(name, name)
    return f"{name} median {statistics.median(values):.2f} s, max {max(values):.2f} s"


def test_the_sweep_runs_a_shard_whose_run_a_dead_worker_left_running(broker):
    """A run left running long past any round's time limit, on a shard with no open work (its
    worker died after placing everything): the sweep still runs that shard, and the round marks
    the run lost. A run that began moments ago (perhaps a live round) is left alone."""
    now = market_now()
    dead = matching_run_start(trigger="commit", shard="a100", now=now - timedelta(hours=1))
    live = matching_run_start(trigger="commit", shard="l40s", now=now - timedelta(seconds=5))
    assert matching_sweep() == ["a100"]
    assert round_run(shard="a100", trigger="sweep") is not None
    dead.refresh_from_db()
    live.refresh_from_db()
    assert (dead.status, dead.error, live.status) == ("failed", WORKER_LOST, "running")
    assert dead.finished_at >= dead.started_at


# --- 6. a round past its soft time limit ----------------------------------------------------------


def test_a_round_hung_past_its_soft_time_limit_is_rolled_back_and_retried(broker, tmp_path, monkeypatch):
    """The test holds a listing's row lock, so the round's apply phase waits on it. At the soft
    time limit the round is aborted: its query cancelled, its transaction rolled back (nothing
    applied, its row and shard locks gone), its run recorded failed; the task retries. Once the
    test lets the lock go, a retry places the request.
    """
    processes = Processes(broker, tmp_path)
    env = {"CELERY_TASK_SOFT_TIME_LIMIT": str(SOFT_LIMIT_SECONDS), "CELERY_TASK_TIME_LIMIT": "30"}
    # A task's time limits travel in its message, set by whoever enqueues it: here this process,
    # configured as the worker is (in production web, beat and workers share one environment).
    monkeypatch.setattr(matching_round, "soft_time_limit", SOFT_LIMIT_SECONDS)
    monkeypatch.setattr(matching_round, "time_limit", 30)
    monkeypatch.setattr(matching_round, "_exec_options", None)  # Celery caches them at first use
    provider = Organisation.objects.create(name="Hang DC", kind=Organisation.Kind.PROVIDER)
    buyer = buyers_create(1, "hang")[0]
    try:
        _, log = processes.worker("hang", pool="prefork", concurrency=1, env=env)
        assert wait_ready(log), processes.logs()
        listing = listing_of(provider, "h20", "ningxia-zhongwei", 16, 8, "6.00")
        assert wait_for(lambda: MatchingRun.objects.filter(status="succeeded").exists(), 30), processes.logs()
        before = MatchingRun.objects.aggregate(last=Max("id"))["last"]
        with psycopg.connect(database_url_of_test_db()) as holder:
            table = sql.Identifier(Listing._meta.db_table)
            holder.execute(sql.SQL("SELECT id FROM {} WHERE id = %s FOR UPDATE").format(table), [listing.pk])
            now = market_now()
            cities = list(Region.objects.filter(code="shanghai"))
            terms = demand_terms(random.Random(6), GpuModel.objects.get(code="h20"), cities, now)
            request = services.request_submit(buyer=buyer, **terms)
            hung = time.monotonic()
            first_attempt: list[int] = []  # the session of the first round to wait on the lock
            waiting: list[set[int]] = []
            lingering: list[int] = []

            def two_rounds_failed() -> bool:
                failures = MatchingRun.objects.filter(pk__gt=before, status="failed").count()
                blocked = _blocked_by(holder.info.backend_pid)
                waiting.append(blocked)
                if not first_attempt and blocked and not failures:
                    first_attempt.append(min(blocked))
                if failures and first_attempt[0] in blocked:
                    lingering.append(first_attempt[0])
                return failures >= 2

            assert wait_for(two_rounds_failed, SOFT_LIMIT_SECONDS * 2 + 20, 0.01), processes.logs()
            aborted = time.monotonic() - hung
            failed = list(MatchingRun.objects.filter(pk__gt=before, status="failed").order_by("pk"))
            assert all("SoftTimeLimitExceeded" in run.error for run in failed), [run.error for run in failed]
            # The aborted round's query was cancelled before its failure was recorded: its session
            # never waited again, and never beside the retry's.
            assert first_attempt, "the aborted round's session still waited on the row lock"
            assert not lingering, "the aborted round's session still waited on the row lock"
            assert max(map(len, waiting)) == 1, f"sessions waiting at once: {max(map(len, waiting))}"
            request.refresh_from_db()
            listing.refresh_from_db()
            assert (request.status, request.matched_replicas, listing.allocated_gpus) == ("open", 0, 0)
            assert not Match.objects.exists()
            holder.rollback()  # the hang ends
        released = time.monotonic()

        def placed() -> bool:
            request.refresh_from_db()
            return request.status == "matched"

        assert wait_for(placed, 60), processes.logs()
        match = Match.objects.get(request=request)
        assert match.run_id > failed[-1].pk
        assert wait_for(lambda: MatchingRun.objects.get(pk=match.run_id).status == "succeeded", 30)
        assert not Match.objects.filter(run__in=failed).exists()
        listing.refresh_from_db()
        assert listing.allocated_gpus == request.gpus
        books_check()
        text = _text(log)
    finally:
        processes.stop_all()
    assert "Hard time limit" not in text, "the soft limit should have ended the round, not the hard one"
    assert re.search(r"matching_round\[[^]]+\] retry: Retry in .*SoftTimeLimitExceeded", text), text[-3000:]
    print(
        f"soft limit {SOFT_LIMIT_SECONDS} s: {len(failed)} rounds aborted and retried in {aborted:.2f} s; "
        f"matched {time.monotonic() - released:.2f} s after the lock was released"
    )


def _blocked_by(pid: int) -> set[int]:
    """The sessions waiting on a lock that session ``pid`` holds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid])
        return {row[0] for row in cursor.fetchall()}
