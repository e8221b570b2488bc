"""Inference requests through the real matching round: snapshot → engine → matches → lifecycle, and
rounds that cover the component of GPU models inference demand couples (issue 15)."""

from __future__ import annotations

import itertools
import math
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Q

from marketplace import selectors
from marketplace.models import BuyerRequest, Match, MatchingRun
from marketplace.selectors.spend import requests_spend_used
from marketplace.services import rounds
from marketplace.services.lifecycle import matches_fail_over
from marketplace.services.plans import ApplyResult, match_plan_apply
from marketplace.services.rounds import matching_run_finish, matching_run_start, round_run
from marketplace.services.shard_lock import shard_lock, shard_locked
from matching.latency import LatencyClass
from matching.problem import Assignment, Blocked, InferenceUnserved, Plan
from tests.conftest import scale
from tests.inference_builders import inference_request
from tests.services_helpers import assert_no_gpu_held_twice, race, refuse_matches_of

FP8_H20_1 = 1128.048780487805  # modelled tokens/s of one H20 serving the 32B distill at FP8 (1,000 in / 300 out)


def inference_assignment(request, listing, now, *, replicas=1, gpus_per_replica=1, tokens=FP8_H20_1, nodes=None):
    """One inference assignment as the engine would make it (price = the listing's, no subsidy)."""
    return Assignment(
        request_id=request.pk,
        listing_id=listing.pk,
        region=listing.region.code,
        replicas=replicas,
        gpus_per_replica=gpus_per_replica,
        nodes=tuple(nodes if nodes is not None else [0] * replicas),
        price_per_gpu_hour=listing.price_per_gpu_hour,
        subsidy_per_gpu_hour=Decimal("0"),
        energy_cost_per_gpu_hour=Decimal("0.17"),
        rtt_ms=31.4,
        latency_class=LatencyClass.STANDARD,
        cost_per_gpu_hour=listing.price_per_gpu_hour,
        starts_at=now,
        precision="FP8",
        tokens_per_second_per_replica=tokens,
        ttft_ms=850.34,
    )


def apply(*assignments, now) -> ApplyResult:
    plan = Plan((), (), "test", Decimal(0), Decimal(0), 0.0, 0, inference_assignments=tuple(assignments))
    return match_plan_apply(plan=plan, run_id=None, now=now)


# --- apply: inference matches and tokens/s placed ------------------------------------------------


def test_an_applied_inference_assignment_is_a_match_with_what_it_serves(make_listing, buyer, now):
    listing = make_listing(gpu_model="h20", price_per_gpu_hour=Decimal("6.00"))
    request = inference_request(buyer=buyer, now=now, output_tokens_per_second="2000")
    assert (request.gpus_per_replica, request.replicas) == (1, 2)  # its first choice: 2 × 1 H20 at FP8

    result = apply(inference_assignment(request, listing, now), now=now)

    match = Match.objects.get(pk=result.matches[0].pk)
    assert (match.precision, match.tokens_per_second, match.ttft_ms) == ("FP8", Decimal("1128.0"), Decimal("850.3"))
    expected = (Decimal("6.00") * 1 / (Decimal("1128.0") * Decimal("0.0036"))).quantize(Decimal("0.0001"))
    assert match.price_per_million_tokens == expected == Decimal("1.4775")
    request.refresh_from_db()
    request.inference.refresh_from_db()
    assert request.inference.tokens_per_second_placed == Decimal("1128.0")
    # 1,128 of 2,000 tokens/s is ⌊2 × 0.564⌋ = 1 of its 2 first-choice replicas.
    assert (request.status, request.matched_replicas) == ("partially_matched", 1)
    listing.refresh_from_db()
    assert listing.allocated_gpus == 1

    apply(inference_assignment(request, listing, now, nodes=[1]), now=now)
    request.refresh_from_db()
    request.inference.refresh_from_db()
    assert request.inference.tokens_per_second_placed == Decimal("2256.0")
    assert (request.status, request.matched_replicas) == ("matched", 2)
    assert_no_gpu_held_twice()


def test_a_replica_that_would_start_at_or_past_the_target_is_never_applied(make_listing, buyer, now):
    listing = make_listing(gpu_model="h20")
    request = inference_request(buyer=buyer, now=now, output_tokens_per_second="2000")
    # Three replicas: the third would start at 2,256 tokens/s, past the 2,000 asked.
    result = apply(inference_assignment(request, listing, now, replicas=3), now=now)
    assert not result.matches
    assert "fewer tokens/s left" in result.stale[0][1]
    # Two: the second starts at 1,128 < 2,000, so it is placed (overshooting by less than one replica).
    result = apply(inference_assignment(request, listing, now, replicas=2), now=now)
    assert result.matches[0].tokens_per_second == Decimal("2256.1")
    assert_no_gpu_held_twice()


def test_an_inference_assignment_on_a_gpu_form_request_is_refused(make_listing, make_request, now):
    listing = make_listing(gpu_model="h20")
    request = make_request(replicas=1)
    result = apply(inference_assignment(request, listing, now), now=now)
    assert not result.matches
    assert "not an inference request" in result.stale[0][1]


def test_a_failed_inference_match_gives_its_tokens_back_and_reopens_the_request(make_listing, buyer, now):
    listing = make_listing(gpu_model="h20")
    request = inference_request(buyer=buyer, now=now, output_tokens_per_second="2000")
    first, second = (
        apply(inference_assignment(request, listing, now, nodes=[node]), now=now).matches[0] for node in (0, 1)
    )
    request.refresh_from_db()
    assert request.status == "matched"

    with transaction.atomic():
        matches_fail_over(Q(pk=first.pk), now=now, reason="node 0 failed")
    request.refresh_from_db()
    request.inference.refresh_from_db()
    assert request.inference.tokens_per_second_placed == Decimal("1128.0")
    assert (request.status, request.matched_replicas, request.priority) == ("partially_matched", 1, 1)

    with transaction.atomic():
        matches_fail_over(Q(pk=second.pk), now=now, reason="node 1 failed")
    request.refresh_from_db()
    request.inference.refresh_from_db()
    assert request.inference.tokens_per_second_placed == 0
    assert (request.status, request.matched_replicas) == ("open", 0)
    assert_no_gpu_held_twice()


def test_a_run_records_inference_demand_it_could_not_place(make_listing, buyer, now):
    request = inference_request(buyer=buyer, now=now, output_tokens_per_second="2000")
    run = matching_run_start(trigger="manual", shard="h20", now=now)
    blocked = Blocked(kind="capacity")
    plan = Plan(
        (), (), "test", Decimal(0), Decimal(0), 0.0, 0,
        inference_unserved=(InferenceUnserved(request.pk, 871.95, "h20: taken by other requests", blocked),),
    )  # fmt: skip
    # And one replica the apply found stale: it counts as unserved too, in the same units.
    stale = inference_assignment(request, make_listing(gpu_model="h20"), now)
    result = ApplyResult(stale=[(stale, "capacity or demand changed")])
    run = matching_run_finish(
        run_id=run.pk, plan=plan, result=result, request_count=1, listing_count=0, timings_ms={}, finished_at=now
    )
    assert run.unserved == [
        {
            "request": request.pk,
            "replicas": math.ceil(2 * 871.95 / 2000),  # 1 of its 2 first-choice replicas
            "reason": "h20: taken by other requests",
            "blocked": {"kind": "capacity"},
            "tokens_per_second": 872.0,
        },
        {
            "request": request.pk,
            "replicas": math.ceil(2 * FP8_H20_1 / 2000),
            "reason": "capacity or demand changed",
            "blocked": {"kind": "other"},
            "tokens_per_second": 1128.0,
        },
    ]
    assert run.unserved_replicas == 3


# --- the snapshot ---------------------------------------------------------------------------------


def test_the_snapshot_offers_an_inference_request_what_is_left_of_its_target(make_listing, buyer, now):
    listing = make_listing(gpu_model="h20")
    make_listing(gpu_model="h100", price_per_gpu_hour=Decimal("20.00"))
    request = inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"), precision="FP8")
    apply(inference_assignment(request, listing, now), now=now)

    problem = selectors.engine_problem(shard="h100+h20", now=now).problem
    [demand] = problem.inference
    assert demand.id == request.pk
    assert not problem.requests
    assert demand.tokens_per_second == pytest.approx(2000 - 1128.0)
    # The budget is the cap per million tokens × what is left: 40 CNY × 872 tokens/s × 0.0036.
    assert demand.budget_per_hour == Decimal("125.5680")
    assert {a.gpu_model for a in demand.alternatives} == {"h20", "h100"}
    assert {a.precision for a in demand.alternatives} == {"FP8"}
    for a in demand.alternatives:  # each replica's cap: 40 × 0.0036 × its tokens/s ÷ its GPUs
        cap = Decimal("40.00") * Decimal("0.0036") * Decimal(str(a.tokens_per_second_per_replica)) / a.gpus_per_replica
        assert a.max_price_per_gpu_hour == cap.quantize(Decimal("0.0001"), rounding="ROUND_DOWN")
    # A one-model snapshot of h20 cannot hold it: it couples h100 too.
    assert not selectors.engine_problem(gpu_model_code="h20", now=now).problem.inference


def test_the_snapshot_puts_the_request_rows_first_choice_first(make_listing, buyer, now):
    """``alternatives[0]`` is what the nearest-first policy fills: the setup the request was filed
    under, whichever GPU model sorts first by code."""
    make_listing(gpu_model="h20")
    make_listing(gpu_model="h100")
    for first_choice in ("h20", "h100"):
        request = inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"), first_choice=first_choice)
        demand = next(
            d for d in selectors.engine_problem(shard="h100+h20", now=now).problem.inference if d.id == request.pk
        )
        assert (demand.alternatives[0].gpu_model, demand.alternatives[0].gpus_per_replica) == (
            first_choice,
            request.gpus_per_replica,
        )
        assert {a.gpu_model for a in demand.alternatives} == {"h20", "h100"}


def test_a_measured_listing_is_offered_at_its_measured_figures_and_the_modelled_setup_covers_the_rest(
    make_listing, buyer, now
):
    from marketplace.models import LlmModel, MeasuredProfile

    measured = make_listing(gpu_model="h20")
    other = make_listing(gpu_model="h20", region="gansu-qingyang")
    MeasuredProfile.objects.create(
        listing=measured,
        llm_model=LlmModel.objects.get(code="deepseek-r1-distill-qwen-32b"),
        precision="FP8",
        gpus_per_replica=1,
        prompt_tokens=2000,
        concurrency=32,
        output_tokens_per_second=Decimal("1500.0"),
        ttft_ms=Decimal("400.0"),
        measured_at=now,
    )
    request = inference_request(buyer=buyer, now=now, gpu_models=("h20",), precision="FP8")
    [demand] = selectors.engine_problem(gpu_model_code="h20", now=now).problem.inference
    one_gpu = {a.source: a for a in demand.alternatives if a.gpus_per_replica == 1}
    assert one_gpu["measured"].listing_ids == (measured.pk,)
    assert one_gpu["measured"].tokens_per_second_per_replica == 1500.0
    assert one_gpu["modelled"].listing_ids == (other.pk,)  # measured beats modelled on the measured listing
    assert one_gpu["modelled"].tokens_per_second_per_replica == pytest.approx(FP8_H20_1)
    # Another setup, measured nowhere, is modelled on every listing.
    assert all(a.listing_ids is None for a in demand.alternatives if a.gpus_per_replica == 2)
    assert demand.id == request.pk


def test_after_a_fail_over_only_what_the_spend_reservation_still_covers_is_offered(make_listing, buyer, now):
    listing = make_listing(gpu_model="h20", price_per_gpu_hour=Decimal("6.00"))
    request = inference_request(buyer=buyer, now=now, output_tokens_per_second="2000", gpu_models=("h20",))
    first, _ = (apply(inference_assignment(request, listing, now, nodes=[node]), now=now).matches[0] for node in (0, 1))
    with transaction.atomic():
        matches_fail_over(Q(pk=first.pk), now=now, reason="node 0 failed")
    # Its month's cap let the reservation grow back to 1,000 CNY only (the live match holds 144 of it).
    BuyerRequest.objects.filter(pk=request.pk).update(spend_month=now.date().replace(day=1), spend_committed=1000)

    [demand] = selectors.engine_problem(gpu_model_code="h20", now=now).problem.inference

    used = requests_spend_used([request.pk])[request.pk]  # the live match's worst case: 144 CNY and a line's slack
    assert used.failed_over
    assert Decimal("144") <= used.amount < Decimal("145")
    left = 2000 - 1128.0  # tokens/s given back
    worst = Decimal("40.00") * Decimal(str(left)) * Decimal("0.0036") * 24  # their budget for 24 hours
    share = float((Decimal(1000) - used.amount) / worst)
    assert 0 < share < 1
    assert demand.tokens_per_second == pytest.approx(left * share)
    assert demand.budget_per_hour * 24 <= Decimal(1000) - used.amount


def test_the_snapshot_takes_as_many_queries_whatever_the_inference_demand(make_listing, buyer, now):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for code in ("h20", "h100"):
        make_listing(gpu_model=code)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            selectors.engine_problem(shard="h100+h20", now=now)
        return len(captured)

    inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"))
    few = queries()
    for tps in ("500", "900", "1300", "1700", "2100"):
        inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"), output_tokens_per_second=tps)
    assert queries() == few


# --- component shards -------------------------------------------------------------------------------


def test_open_work_is_grouped_into_the_components_inference_requests_couple(make_request, buyer, now):
    make_request(gpu_model="h20")
    make_request(gpu_model="a100")
    make_request(gpu_model="h100")
    assert selectors.shards_with_open_work(now=now) == ["a100", "h100", "h20"]
    inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"))
    assert selectors.shards_with_open_work(now=now) == ["a100", "h100+h20"]
    assert selectors.shard_component("h100", now=now) == "h100+h20"
    assert selectors.shard_component("a100", now=now) == "a100"


def test_a_model_too_big_for_a_gpu_does_not_couple_it(reference, buyer, now):
    # DeepSeek-R1 (671B) fits no RTX 4090 node: its allow-list names one, but only the H20 is coupled.
    inference_request(
        buyer=buyer, now=now, llm_model="deepseek-r1", gpu_models=("h20", "rtx4090"), output_tokens_per_second="100"
    )
    assert selectors.shards_with_open_work(now=now) == ["h20"]


def test_a_round_of_h20_coupled_to_h100_covers_h100s_gpu_form_requests(make_listing, make_request, buyer, now):
    make_listing(gpu_model="h20")
    make_listing(gpu_model="h100", price_per_gpu_hour=Decimal("20.00"))
    h20 = make_request(gpu_model="h20", replicas=1)
    h100 = make_request(gpu_model="h100", replicas=1, max_price_per_gpu_hour=Decimal("25.00"))
    inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"))

    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))

    assert run.shard == "h100+h20"
    assert Match.objects.get(request=h20).run_id == run.pk
    assert Match.objects.get(request=h100).run_id == run.pk  # one round, both GPU models
    assert run.request_count == 3
    assert not shard_locked("h20")
    assert not shard_locked("h100")


def test_gpu_form_rounds_are_unchanged_without_inference_demand(make_listing, make_request):
    make_listing(gpu_model="h20")
    make_listing(gpu_model="h100", price_per_gpu_hour=Decimal("20.00"))
    make_request(gpu_model="h20", replicas=1)
    h100 = make_request(gpu_model="h100", replicas=1, max_price_per_gpu_hour=Decimal("25.00"))
    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))
    assert (run.shard, run.request_count, run.served_replicas) == ("h20", 1, 1)
    h100.refresh_from_db()
    assert h100.status == "open"


def test_a_component_round_gives_up_while_a_round_of_one_of_its_models_runs(make_request, buyer, now):
    """A one-model round of h100 holds its lock (a thread on its own connection, as another worker)."""
    make_request(gpu_model="h20")
    inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"))
    held, done = threading.Event(), threading.Event()

    def h100_round():
        try:
            with shard_lock("h100") as got:
                if got:
                    held.set()
                    done.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=h100_round)
    thread.start()
    try:
        assert held.wait(30), "the other round could not take h100's lock"
        assert round_run(shard="h20", trigger="manual") is None
        assert not shard_locked("h20")  # what it took, it let go of
    finally:
        done.set()
        thread.join()
    assert not MatchingRun.objects.exists()
    assert MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual")).shard == "h100+h20"


def test_a_run_a_dead_worker_left_on_a_component_is_failed_by_a_round_of_any_member(make_request, now):
    make_request(gpu_model="h100")
    lost = MatchingRun.objects.create(trigger="commit", shard="h100+h20", started_at=now)
    other = MatchingRun.objects.create(trigger="commit", shard="a100", started_at=now)
    round_run(shard="h100", trigger="manual")
    lost.refresh_from_db()
    other.refresh_from_db()
    assert (lost.status, lost.error) == ("failed", rounds.WORKER_LOST)
    assert other.status == "running"


def test_a_submission_reaches_the_round_of_its_component(
    make_request, buyer, now, monkeypatch, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    from marketplace.services import triggers

    cache.clear()
    asked = []
    monkeypatch.setattr(triggers, "matching_round_enqueue", lambda **kwargs: asked.append(kwargs["shard"]))
    make_request(gpu_model="h100")
    with django_capture_on_commit_callbacks(execute=True):
        inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"), first_choice="h20", enqueue=True)
    assert asked == ["h20"]  # its own GPU model's trigger…
    run = MatchingRun.objects.get(pk=round_run(shard=asked[0], trigger="commit"))
    assert run.shard == "h100+h20"  # …runs the round of its whole component


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_rounds_of_overlapping_components_never_run_at_once(postgres, reference, make_listing, make_request, buyer):
    """Rounds asked for h20, for h100 and for a100 race; an inference request couples h20 and h100 and
    another a100 and h100 (both priced too low to be placed, so they stay open and keep coupling).
    Every round that runs covers all three GPU models, so no two ever overlap in time."""
    from marketplace.market_time import market_now

    for code in ("h20", "h100", "a100"):
        make_listing(gpu_model=code, gpu_count=16, price_per_gpu_hour=Decimal("5.00"))
        make_request(gpu_model=code, replicas=1, latency_class="batch", max_price_per_gpu_hour=Decimal("30.00"))
    now = market_now()
    inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"), max_price_per_million_tokens="0.05")
    inference_request(
        buyer=buyer,
        now=now,
        gpu_models=("a100", "h100"),
        first_choice="a100",
        llm_model="qwen2-5-7b-instruct",
        max_price_per_million_tokens="0.05",
    )
    spans: list[tuple[float, float, str]] = []
    locked_round = rounds._round_locked

    def timed(**kwargs):
        started = time.monotonic()
        try:
            return locked_round(**kwargs)
        finally:
            spans.append((started, time.monotonic(), kwargs["shard"]))

    rounds._round_locked = timed
    try:
        for _ in range(scale(4, 20)):
            results = race(
                *(lambda code=code: round_run(shard=code, trigger="manual") for code in ("h20", "h100", "a100"))
            )
            assert not [r for r in results if isinstance(r, Exception)], results
    finally:
        rounds._round_locked = locked_round
    assert spans
    assert {shard for _, _, shard in spans} == {"a100+h100+h20"}
    assert not Match.objects.filter(request__kind="inference").exists()
    spans.sort()
    for (_, end, _), (start, _, _) in itertools.pairwise(spans):
        assert end <= start, "two rounds sharing a GPU model ran at once"
    assert_no_gpu_held_twice()


# --- the whole round ----------------------------------------------------------------------------


def test_a_round_places_an_inference_request_across_two_gpu_models_when_one_is_not_enough(make_listing, buyer, now):
    """7,500 tokens/s of the 32B distill at FP8: one free H100 makes 6,852, one free H20 1,128;
    neither alone reaches the target, both together do."""
    make_listing(gpu_model="h20", gpu_count=1, gpus_per_node=1, price_per_gpu_hour=Decimal("6.00"))
    make_listing(gpu_model="h100", gpu_count=1, gpus_per_node=1, price_per_gpu_hour=Decimal("20.00"))
    request = inference_request(
        buyer=buyer, now=now, output_tokens_per_second="7500", gpu_models=("h20", "h100"), precision="FP8"
    )

    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))

    assert run.shard == "h100+h20"
    matches = {m.listing.gpu_model.code: m for m in Match.objects.filter(request=request).select_related("listing")}
    assert set(matches) == {"h20", "h100"}
    for match in matches.values():
        assert (match.precision, match.run_id) == ("FP8", run.pk)
        assert 0 < match.ttft_ms <= Decimal("1500")
        assert match.tokens_per_second > 0
        paid = (match.price_per_gpu_hour - match.subsidy_per_gpu_hour) * match.gpus
        assert match.price_per_million_tokens == (paid / (match.tokens_per_second * Decimal("0.0036"))).quantize(
            Decimal("0.0001")
        )
    request.refresh_from_db()
    request.inference.refresh_from_db()
    placed = sum(m.tokens_per_second for m in matches.values())
    assert request.inference.tokens_per_second_placed == placed >= Decimal("7500")
    assert (request.status, request.matched_replicas) == ("matched", request.replicas)
    assert not run.unserved
    assert_no_gpu_held_twice()

    # The H20 fails: its tokens/s go back, the request reopens, and the next round places them again.
    with transaction.atomic():
        matches_fail_over(Q(pk=matches["h20"].pk), now=now, reason="node 0 failed")
    request.refresh_from_db()
    request.inference.refresh_from_db()
    assert request.status == "partially_matched"
    assert request.inference.tokens_per_second_placed == matches["h100"].tokens_per_second
    round_run(shard="h100", trigger="manual")
    request.refresh_from_db()
    assert request.status == "matched"
    assert Match.objects.filter(request=request, status="reserved").count() == 2
    assert_no_gpu_held_twice()


def test_a_round_records_inference_demand_it_could_not_place(make_listing, buyer, now):
    make_listing(gpu_model="h20", gpu_count=1, gpus_per_node=1)
    request = inference_request(buyer=buyer, now=now, output_tokens_per_second="2000", gpu_models=("h20",))
    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))
    request.refresh_from_db()
    assert request.status == "partially_matched"
    [entry] = run.unserved
    assert (entry["request"], entry["replicas"]) == (request.pk, 1)
    assert entry["reason"]
    assert entry["tokens_per_second"] == pytest.approx(
        2000 - float(request.inference.tokens_per_second_placed), abs=0.1
    )


@pytest.fixture
def worker(postgres, redis_url, tmp_path):
    """A Celery worker process on the test database and the Redis broker (as in test_celery_e2e)."""
    from tests.workers import broker_reset, process_stop, worker_start

    broker_reset(redis_url)
    process = worker_start(broker_url=redis_url, log_path=tmp_path / "worker.log", name="e2e-inference")
    yield process
    process_stop(process)


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_a_request_in_the_inference_form_is_matched_by_a_real_worker(worker, make_listing, buyer, tmp_path):
    from marketplace.market_time import market_now
    from tests.workers import wait_for

    make_listing(gpu_model="h20", gpu_count=1, gpus_per_node=1, price_per_gpu_hour=Decimal("6.00"))
    make_listing(gpu_model="h100", gpu_count=1, gpus_per_node=1, price_per_gpu_hour=Decimal("20.00"))
    assert wait_for(lambda: MatchingRun.objects.count() >= 2, 60), "the worker never ran the listings' rounds"
    started = time.monotonic()
    request = inference_request(
        buyer=buyer,
        now=market_now(),
        output_tokens_per_second="7500",
        gpu_models=("h20", "h100"),
        precision="FP8",
        enqueue=True,  # as the submission does: a round of its first choice's GPU model, on commit
    )

    def matched() -> bool:
        request.refresh_from_db()
        return request.status == "matched"

    assert wait_for(matched, 30), (tmp_path / "worker.log").read_text()[-3000:]
    print(f"inference request → matched by a real worker in {time.monotonic() - started:.2f} s")
    matches = Match.objects.filter(request=request).select_related("listing__gpu_model", "run")
    assert {m.listing.gpu_model.code for m in matches} == {"h20", "h100"}
    assert {m.run.shard for m in matches} == {"h100+h20"}
    assert all(m.tokens_per_second and m.ttft_ms and m.price_per_million_tokens for m in matches)


def test_an_inference_match_the_database_refuses_costs_only_its_request(make_listing, buyer, now, monkeypatch):
    """The quarantine search covers inference assignments as it covers GPU-form ones."""
    make_listing(gpu_model="h20", gpu_count=16)
    poisoned = inference_request(buyer=buyer, now=now, gpu_models=("h20",))
    bystander = inference_request(buyer=buyer, now=now, gpu_models=("h20",))
    refuse_matches_of(monkeypatch, poisoned.pk)
    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))

    assert run.status == MatchingRun.Status.SUCCEEDED
    assert [(row["kind"], row["id"]) for row in run.left_out] == [("request", poisoned.pk)]
    assert Match.objects.filter(request=bystander).exists()
    assert not Match.objects.filter(request=poisoned).exists()


def test_an_inference_request_the_engine_cannot_plan_costs_only_itself(make_listing, buyer, now, monkeypatch):
    make_listing(gpu_model="h20", gpu_count=16)
    poisoned = inference_request(buyer=buyer, now=now, gpu_models=("h20",))
    bystander = inference_request(buyer=buyer, now=now, gpu_models=("h20",))
    real = rounds.planner

    def planner(policy):
        def plan_of(problem):
            if any(d.id == poisoned.pk for d in problem.inference):
                raise OverflowError("date value out of range")
            return real(policy)(problem)

        return plan_of

    monkeypatch.setattr(rounds, "planner", planner)
    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))

    assert run.status == MatchingRun.Status.SUCCEEDED
    assert run.left_out == [
        {
            "kind": "request",
            "id": poisoned.pk,
            "reason": "the engine could not plan it: OverflowError('date value out of range')",
        }
    ]
    bystander.refresh_from_db()
    assert bystander.status == "matched"
    assert not Match.objects.filter(request=poisoned).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.parametrize("attempt", range(scale(3, 20)))
def test_the_tick_a_component_round_and_a_cancellation_racing_keep_tokens_placed_exact(
    postgres, reference, make_listing, make_request, provider, buyer, attempt
):
    """The tick fails over inference matches on a failed node (their tokens/s go back), a round of the
    h20+h100 component places the demand left, and a buyer cancels an inference request, all at once:
    no deadlock, no GPU held twice, and every request's tokens/s placed are its live matches'."""
    from datetime import timedelta

    from marketplace import services
    from marketplace.market_time import market_now
    from marketplace.services.listings import _listing_mark_failed_nodes

    h20 = make_listing(gpu_model="h20", gpu_count=16)
    make_listing(gpu_model="h100", gpu_count=16, price_per_gpu_hour=Decimal("20.00"))
    now = market_now()
    placed = [
        inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"), output_tokens_per_second=tps)
        for tps in ("1500", "2500", "4000")
    ]
    make_request(gpu_model="h100", gpus_per_replica=2, replicas=1, max_price_per_gpu_hour=Decimal("25.00"))
    round_run(shard="h20", trigger="manual")
    on_h20 = Match.objects.filter(listing=h20).order_by("pk").first()
    assert on_h20 is not None, "the round placed nothing on the H20s"
    _listing_mark_failed_nodes(listing_id=h20.pk, provider=provider, nodes=[on_h20.nodes[0]])
    inference_request(buyer=buyer, now=now, gpu_models=("h20", "h100"), output_tokens_per_second="1000")
    cancelled = placed[attempt % len(placed)]
    at = market_now() + timedelta(minutes=1)

    outcomes = race(
        lambda: services.lifecycle_tick(now=at),
        lambda: round_run(shard="h100", trigger="manual"),
        lambda: services.request_cancel(request_id=cancelled.pk, buyer=buyer, now=at),
    )

    assert [o for o in outcomes if isinstance(o, Exception)] == [], outcomes
    assert_no_gpu_held_twice()
    assert BuyerRequest.objects.get(pk=cancelled.pk).status == BuyerRequest.Status.CANCELLED
    h20.refresh_from_db()
    assert not [
        m.pk
        for m in Match.objects.filter(listing=h20, status__in=Match.LIVE_STATUSES)
        if set(m.nodes) & set(h20.failed_nodes)
    ], "a live match was left on a failed node"
