"""The offline bound on western utilisation (bench/west_bound.py): it replays the simulation's script,
and on small instances its LP gives the held GPU-hours worked out by hand."""

from __future__ import annotations

from argparse import Namespace
from decimal import Decimal

import pytest

from bench import west_bound as wb
from marketplace.simulation.scenario import ListCapacity, Submit

REF = wb.reference_load()


def test_replays_the_default_scenario_script():
    args = Namespace(seed=2026, days=3.0, step_minutes=30, scenario="default")
    script, listings, requests = wb.script_read(args, REF)
    # The report's run (docs/report/README.md): 40 listings, 6 withdrawn, 1098 requests.
    assert len(script.steps) == 144
    assert len(listings) == 40
    assert sum(listing.active_until < listing.window_end for listing in listings) == 6
    assert len(requests) == 1098
    assert sum(r.event.replicas * r.event.gpus_per_replica * r.event.duration_hours for r in requests) == 77120


def _listing(region: str, *, gpus: int = 8, price: str = "5.00", model: str = "h20") -> wb.Listing:
    event = ListCapacity(
        key=0,
        provider="p",
        region=region,
        gpu_model=model,
        gpu_count=gpus,
        gpus_per_node=8,
        price_per_gpu_hour=Decimal(price),
        open_hours=240,
    )
    return wb.Listing(event, active_from=0, active_until=480, window_end=480)


def _request(step: int, *, origin="beijing", cls="batch", cap="6.00", hours=2, within=2) -> wb.Request:
    event = Submit(
        buyer="b",
        origin=origin,
        workload="batch",
        gpu_model="h20",
        gpus_per_replica=8,
        replicas=1,
        latency_class=cls,
        max_price_per_gpu_hour=Decimal(cap),
        duration_hours=hours,
        start_within_hours=within,
        program=None,
    )
    return wb.Request(event, step)


def _bound(listings, requests, *, prices="energy", wait=None) -> dict:
    args = Namespace(
        step_minutes=30,
        days=3.0,
        prices=prices,
        max_wait_hours=wait,
        integer=False,
        served=0,
        realtime=0,
        time_limit=60,
    )
    return wb.bound_solve(args, REF, listings, requests, steps=144)


def test_waiting_lets_two_jobs_share_one_western_node():
    west = [_listing("ningxia-zhongwei")]
    jobs = [_request(48), _request(48)]  # two 8-GPU, 2-hour jobs asked at the start of day 2
    assert _bound(west, jobs)["west_held"] == pytest.approx(32)  # one now, one 2 hours later
    assert _bound(west, jobs, wait=0)["west_held"] == pytest.approx(16)  # no waiting: one of them


def test_only_the_utilisation_window_counts():
    west = [_listing("ningxia-zhongwei")]
    # Asked at 23:00 on day 1, 2 hours: 1 of its hours falls in day 2 when started at once; waiting
    # 1 hour puts both in the window (the bound may shift work across the window's edge).
    assert _bound(west, [_request(46)], wait=0)["west_held"] == pytest.approx(8)
    assert _bound(west, [_request(46)])["west_held"] == pytest.approx(16)


def test_latency_bound_and_price_rules():
    west = [_listing("ningxia-zhongwei", price="5.00")]
    # Beijing → Zhongwei is 23.7 ms: out of a real-time request's 10 ms, within interactive's 30 ms.
    assert _bound(west, [_request(48, cls="realtime")])["west_held"] == 0
    assert _bound(west, [_request(48, cls="interactive")])["west_held"] == pytest.approx(16)
    # A cap below the listed price: out at listed prices, in when the listing may go down to its energy cost.
    assert _bound(west, [_request(48, cap="4.00")], prices="listed")["west_held"] == 0
    assert _bound(west, [_request(48, cap="4.00")], prices="energy")["west_held"] == pytest.approx(16)


def test_eastern_capacity_is_not_counted_and_capacity_binds():
    east = [_listing("hebei-zhangjiakou", gpus=16)]
    west = [_listing("ningxia-zhongwei", gpus=8)]
    jobs = [_request(48, within=0), _request(48, within=0)]  # both must start at once
    solved = _bound(east + west, jobs)
    assert solved["west_held"] == pytest.approx(16)  # one fits in the west, the other goes east
    assert solved["served"] == pytest.approx(16)  # nothing forces serving more than the west holds
