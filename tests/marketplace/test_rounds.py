"""Matching rounds through the Celery adapter: snapshot → solve → apply under locks → run recorded."""

import threading
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from marketplace import selectors
from marketplace.models import BuyerRequest, Listing, Match, MatchingRun
from marketplace.services.plans import match_plan_apply
from marketplace.services.rounds import round_run
from marketplace.services.shard_lock import shard_lock
from marketplace.tasks import matching_sweep
from matching.solver import solve
from tests.services_helpers import assert_no_gpu_held_twice


def test_a_round_matches_and_records_the_run(make_listing, make_request):
    make_listing(gpu_count=16)
    request = make_request(gpus_per_replica=4, replicas=3)
    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))
    request.refresh_from_db()
    assert (request.status, request.matched_replicas) == ("matched", 3)
    assert (run.status, run.served_replicas, run.unserved_replicas) == ("succeeded", 3, 0)
    assert set(run.timings_ms) == {"snapshot", "solve", "prices", "apply"}
    assert run.gap == 0
    assert run.objective == run.lower_bound
    match = Match.objects.get()
    assert match.explanation["region"] == "ningxia-zhongwei"
    assert match.ends_at - match.starts_at == timezone.timedelta(hours=24)


def test_western_capacity_wins_when_the_bound_allows_and_eastern_when_not(make_listing, make_request):
    make_listing(region="ningxia-zhongwei", price_per_gpu_hour=Decimal("5.50"))
    make_listing(region="yrd-qingpu-wujiang-jiashan", price_per_gpu_hour=Decimal("9.00"))
    standard = make_request(latency_class="standard", replicas=1)
    interactive = make_request(latency_class="interactive", replicas=1)
    round_run(shard="h20", trigger="manual")
    assert (
        Match.objects.get(request=standard).listing.region_id
        == Listing.objects.get(region__code="ningxia-zhongwei").region_id
    )
    match = Match.objects.get(request=interactive)
    assert match.listing.region.code == "yrd-qingpu-wujiang-jiashan"
    rejected = match.explanation["rejected"]
    assert any("ningxia-zhongwei" in option["reason"] and "30 ms" in option["reason"] for option in rejected)


def test_unserved_requests_say_what_blocked_them(make_listing, make_request):
    make_listing(region="ningxia-zhongwei")
    make_request(latency_class="realtime", replicas=1)
    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))
    assert run.unserved_replicas == 1
    assert "within 10 ms of shanghai" in run.unserved[0]["reason"]


def test_a_round_never_moves_earlier_matches(make_listing, make_request):
    make_listing(region="yrd-qingpu-wujiang-jiashan", price_per_gpu_hour=Decimal("9.00"))
    first = make_request(replicas=1)
    round_run(shard="h20", trigger="manual")
    make_listing(region="ningxia-zhongwei", price_per_gpu_hour=Decimal("5.00"))
    round_run(shard="h20", trigger="manual")
    assert Match.objects.get(request=first).listing.region.code == "yrd-qingpu-wujiang-jiashan"
    assert Match.objects.count() == 1


def test_a_busy_shard_is_not_run_twice(make_request):
    """Another round holds the shard's lock (a thread on its own connection, as another worker)."""
    make_request()
    held, done = threading.Event(), threading.Event()

    def other_round():
        try:
            with shard_lock("h20") as got:
                if got:
                    held.set()
                    done.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_round)
    thread.start()
    try:
        assert held.wait(30), "the other round could not take the shard's lock"
        assert round_run(shard="h20", trigger="manual") is None
    finally:
        done.set()
        thread.join()
    assert not MatchingRun.objects.exists()


def test_sweep_expires_stale_requests_and_reruns_open_shards(make_listing, make_request, now):
    make_listing()
    stale = make_request()
    BuyerRequest.objects.filter(pk=stale.pk).update(start_by=now - timezone.timedelta(minutes=1))
    make_request(gpu_model="a100")
    assert matching_sweep() == ["a100"]
    stale.refresh_from_db()
    assert stale.status == "expired"


def test_match_command_prints_a_summary(make_listing, make_request, capsys):
    make_listing()
    make_request()
    call_command("match")
    out = capsys.readouterr().out
    assert "h20: 1 requests × 1 listings" in out
    assert "served 2 replicas" in out


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.parametrize("attempt", range(5))
def test_two_rounds_racing_never_over_allocate(postgres, reference, make_listing, make_request, attempt):
    """Both rounds plan on the same snapshot; row locks and re-checks let only one have each GPU."""
    for region in ("ningxia-zhongwei", "gansu-qingyang"):
        make_listing(region=region, gpu_count=16)
    for size in (8, 4, 4, 2, 8, 1, 8):
        make_request(gpus_per_replica=size, replicas=2, latency_class="batch")
    barrier, errors = threading.Barrier(2), []

    def racing_round():
        try:
            plan = solve(selectors.engine_problem(gpu_model_code="h20", now=timezone.now()).problem)
            barrier.wait(timeout=30)
            match_plan_apply(plan=plan, run_id=None, now=timezone.now())
        except Exception as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=racing_round) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert_no_gpu_held_twice()
