"""The baseline policies: what they choose first, and that they keep every constraint (no database)."""

import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from matching import costs
from matching.policies import CHEAPEST, ENGINE, NEAREST, POLICIES, planner
from tests.matching.builders import NOW, lst, problem, req

ROOT = Path(__file__).resolve().parents[2]


def test_policies_module_imports_no_django():
    code = "import sys, matching.policies; print('django' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown policy"):
        planner("fastest")


def test_nearest_takes_the_closest_region_even_when_dearer():
    p = problem([req(bound=40.0)], [lst(1, region="guian", price="5"), lst(2, region="yrd", price="9")])
    (a,) = planner(NEAREST)(p).assignments
    assert (a.listing_id, a.region) == (2, "yrd")
    (b,) = planner(CHEAPEST)(p).assignments
    assert b.listing_id == 1


def test_nearest_never_goes_beyond_the_latency_bound():
    p = problem([req(bound=30.0, replicas=2)], [lst(1, region="ningxia-zhongwei", price="1", nodes=(8,))])
    plan = planner(NEAREST)(p)
    assert plan.assignments == ()
    assert plan.unserved[0].replicas == 2


def test_nearest_serves_requests_in_arrival_order():
    listings = [lst(1, region="yrd", nodes=(8,)), lst(2, region="guian", nodes=(8,))]
    p = problem([req(2, size=8, bound=40.0), req(1, size=8, bound=40.0)], listings)
    placed = {a.request_id: a.region for a in planner(NEAREST)(p).assignments}
    assert placed == {1: "yrd", 2: "guian"}


def _random_problem(rng: random.Random):
    regions = ["shanghai", "yrd", "guian", "ningxia-zhongwei"]
    listings = [
        lst(
            j,
            region=rng.choice(regions),
            model=rng.choice(["h100", "h20"]),
            gpn=(gpn := rng.choice([4, 8])),
            nodes=tuple(rng.choice([0, gpn // 2, gpn]) for _ in range(rng.randint(1, 3))),
            price=str(rng.choice([5, 8, 11, 14])),
            opens=NOW + timedelta(hours=rng.choice([-1, 0, 3])),
            days=rng.choice([1, 30]),
        )
        for j in range(1, 7)
    ]
    requests = [
        req(
            i,
            model=rng.choice(["h100", "h20"]),
            size=rng.choice([1, 2, 4, 8]),
            replicas=rng.randint(1, 4),
            bound=rng.choice([10.0, 30.0, 60.0, None]),
            cap=str(rng.choice([6, 10, 15])),
            hours=rng.choice([4, 48]),
            start_by=NOW + timedelta(hours=rng.choice([1, 5])),
            priority=rng.choice([0, 0, 1]),
        )
        for i in range(1, 9)
    ]
    return problem(requests, listings)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_keeps_model_bound_price_window_and_node_capacity(policy):
    rng = random.Random(f"policies-{policy}")
    for _ in range(20):
        p = _random_problem(rng)
        plan = planner(policy)(p)
        requests = {r.id: r for r in p.requests}
        listings = {x.id: x for x in p.listings}
        used = {x.id: list(x.node_free) for x in p.listings}
        placed = dict.fromkeys(requests, 0)
        for a in plan.assignments:
            r, x = requests[a.request_id], listings[a.listing_id]
            rtt = costs.rtt_between(p.rtt_ms, r.origin, x.region)
            assert costs.infeasibility(r, x, rtt, p.now) is None
            for node in a.nodes:
                used[x.id][node] -= r.gpus_per_replica
            placed[r.id] += a.replicas
        assert all(free >= 0 for nodes in used.values() for free in nodes)
        assert all(placed[i] <= requests[i].replicas for i in placed)


def _served_by_priority(p, plan) -> tuple[int, ...]:
    """GPUs served per priority level, highest first: what the engine maximises, in that order.

    (GPUs, not replicas: with mixed replica sizes the engine maximises GPUs served, so one 2-GPU
    replica can take the place of two 1-GPU ones.)
    """
    priority = {r.id: r.priority for r in p.requests}
    levels = sorted(set(priority.values()), reverse=True)
    return tuple(sum(a.gpus for a in plan.assignments if priority[a.request_id] == lv) for lv in levels)


def test_the_engine_serves_at_least_as_many_gpus_as_either_baseline_in_one_round():
    rng = random.Random("engine-vs-baselines")
    for _ in range(15):
        p = _random_problem(rng)
        engine = _served_by_priority(p, planner(ENGINE)(p))
        assert engine >= _served_by_priority(p, planner(CHEAPEST)(p))
        assert engine >= _served_by_priority(p, planner(NEAREST)(p))
