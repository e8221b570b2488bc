"""Helpers shared by service and API tests."""

import threading
from decimal import Decimal

from django.db import IntegrityError, connection
from django.db.models import Sum

from marketplace.models import BuyerRequest, Listing, Match
from marketplace.services import plans
from marketplace.services.plans import inference_placed_state, match_plan_apply
from matching.latency import LatencyClass
from matching.problem import Assignment, Plan


def request_terms(**changes) -> dict:
    """A buyer's request in the API's terms: one H20 GPU for a day of batch work near Shanghai, at
    up to 9 CNY per GPU-hour; ``changes`` replaces or adds fields."""
    return {
        "gpu_model": "h20",
        "gpus_per_replica": 1,
        "replicas": 1,
        "origin": "shanghai",
        "latency_class": "batch",
        "max_price_per_gpu_hour": "9.00",
        "duration_hours": 24,
    } | changes


def refuse_matches_of(monkeypatch, request_id: int) -> None:
    """Make ``services.plans.match_plan_apply`` raise what a database CHECK raises whenever the plan
    it applies holds an assignment, of either form, for ``request_id``."""
    real = plans.match_plan_apply

    def apply(*, plan, run_id, now):
        if any(a.request_id == request_id for a in (*plan.assignments, *plan.inference_assignments)):
            raise IntegrityError("CHECK constraint failed: program_balance_within_budget")
        return real(plan=plan, run_id=run_id, now=now)

    monkeypatch.setattr(plans, "match_plan_apply", apply)


def reserve(listing, request, now, nodes=(0,), gpus_per_replica=None):
    """Apply a one-assignment plan, as a round would."""
    size = gpus_per_replica or request.gpus_per_replica
    assignment = Assignment(
        request_id=request.pk,
        listing_id=listing.pk,
        region=listing.region.code,
        replicas=len(nodes),
        gpus_per_replica=size,
        nodes=tuple(nodes),
        price_per_gpu_hour=listing.price_per_gpu_hour,
        subsidy_per_gpu_hour=Decimal("0"),
        energy_cost_per_gpu_hour=Decimal("0.17"),
        rtt_ms=35.1,
        latency_class=LatencyClass.STANDARD,
        cost_per_gpu_hour=listing.price_per_gpu_hour,
        starts_at=now,
    )
    plan = Plan((assignment,), (), "test", Decimal(0), Decimal(0), 0.0, len(nodes))
    return match_plan_apply(plan=plan, run_id=None, now=now)


def race(*actions):
    """Run ``actions`` in threads released together; return what each returned or raised."""
    barrier, results = threading.Barrier(len(actions), timeout=30), [None] * len(actions)

    def run(index, action):
        barrier.wait()
        try:
            results[index] = action()
        except Exception as exc:  # the outcome under test: one side may be refused
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def assert_no_gpu_held_twice():
    """Listings hold exactly their live matches' GPUs, within nodes; requests count the replicas of
    their matches that did not fail nor were pre-empted (those replicas go back to matching); an
    inference request counts their tokens/s instead, and its replicas placed are its share of the
    target in first-choice replicas (``services.plans.inference_placed_state``)."""
    for listing in Listing.objects.all():
        live = Match.objects.filter(listing=listing, status__in=Match.LIVE_STATUSES)
        assert listing.allocated_gpus == (live.aggregate(total=Sum("gpus"))["total"] or 0) <= listing.gpu_count
        used = [0] * listing.node_count
        for match in live:
            for node in match.nodes:
                used[node] += match.gpus_per_replica
        assert max(used) <= listing.gpus_per_node
    for request in BuyerRequest.objects.select_related("inference"):
        placed = Match.objects.filter(request=request).exclude(status__in=[Match.Status.FAILED, Match.Status.PREEMPTED])
        if request.kind == BuyerRequest.Kind.INFERENCE:
            tokens = placed.aggregate(total=Sum("tokens_per_second"))["total"] or 0
            assert request.inference.tokens_per_second_placed == tokens
            assert request.matched_replicas == inference_placed_state(request)[0] <= request.replicas
            continue
        matched = placed.aggregate(total=Sum("replicas"))["total"] or 0
        assert request.matched_replicas == matched <= request.replicas
