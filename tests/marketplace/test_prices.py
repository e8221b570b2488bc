"""Clearing prices end to end: recorded by a round with its run, pruned on schedule, served by the API."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import translation
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from marketplace.market_time import market_now
from marketplace.models import ClearingPrice, Match, MatchingRun, Rtt
from marketplace.selectors.engine import engine_problem
from marketplace.services.market_clock import market_clock_freeze
from marketplace.services.prices import clearing_prices_prune
from marketplace.services.rounds import round_run
from marketplace.tasks import prices_prune
from marketplace.web.formatting import cst
from tests.conftest import client_for, member

NEAR, FAR = "yrd-qingpu-wujiang-jiashan", "ningxia-zhongwei"


@pytest.fixture
def priced_round(make_listing, make_request):
    """A cheap near hub of 8 GPUs that fills, and a dearer western one with GPUs left over."""
    make_listing(region=NEAR, gpu_count=8, price_per_gpu_hour=Decimal("6.00"))
    make_listing(region=FAR, gpu_count=16, price_per_gpu_hour=Decimal("7.00"))
    make_request(latency_class="standard", gpus_per_replica=1, replicas=12)
    return MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))


def _rtt(target: str) -> Decimal:
    return Rtt.objects.get(source_region__code="shanghai", target_region__code=target).rtt_ms


def test_a_round_records_the_clearing_prices_with_its_run(priced_round):
    rows = {row.region.code: row for row in ClearingPrice.objects.filter(run=priced_round).select_related("region")}
    assert set(rows) == {NEAR, FAR}
    # One more GPU near Shanghai moves a replica from the west: it saves the price difference and the
    # latency cost (standard: 0.005 CNY per ms per GPU-hour) of the longer RTT.
    rent = Decimal("1.00") + Decimal("0.005") * (_rtt(FAR) - _rtt(NEAR))
    assert rows[NEAR].rent_per_gpu_hour == rent.quantize(Decimal("0.0001"))
    assert rows[NEAR].price_per_gpu_hour == Decimal("6.00") + rows[NEAR].rent_per_gpu_hour
    assert (rows[NEAR].free_gpus, rows[NEAR].saturated_listings) == (0, 1)
    assert rows[FAR].rent_per_gpu_hour == 0
    assert rows[FAR].price_per_gpu_hour == Decimal("7.00")
    assert rows[FAR].free_gpus == 12
    assert rows[NEAR].recorded_at == priced_round.finished_at
    assert "prices" in priced_round.timings_ms


def test_prices_list_serves_the_latest_round_nearest_first(priced_round, make_request):
    # A second round (nothing left to place near) becomes the latest.
    second = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))
    body = APIClient().get("/api/v1/prices/", {"gpu_model": "h20", "origin": "shanghai"}).json()
    assert [row["region"] for row in body] == [NEAR, FAR]
    assert [row["run_id"] for row in body] == [priced_round.pk, second.pk]  # the full hub was not in round 2
    near, far = body
    assert near["latency_class"] == "realtime"
    assert far["latency_class"] in {"interactive", "standard"}
    assert Decimal(far["latency_rent_per_gpu_hour"]) == 0
    assert Decimal(near["latency_rent_per_gpu_hour"]) == Decimal(near["price_per_gpu_hour"]) - Decimal("7.00")
    assert far["free_gpus"] == 12


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"origin": "shanghai"}, "gpu_model"),
        ({"gpu_model": "h20"}, "origin"),
        ({"gpu_model": "nope", "origin": "shanghai"}, "gpu_model"),
        ({"gpu_model": "h20", "origin": "atlantis"}, "origin"),
        ({"gpu_model": "h20", "origin": "shanghai", "colour": "red"}, "colour"),
    ],
)
def test_prices_list_refuses_bad_parameters_naming_them(reference, params, field):
    response = APIClient().get("/api/v1/prices/", params)
    assert response.status_code == 400
    assert field in response.json()


def test_prices_list_is_empty_before_any_round(reference):
    assert APIClient().get("/api/v1/prices/", {"gpu_model": "h20", "origin": "shanghai"}).json() == []


def test_history_is_a_paginated_time_series_bounded_by_hours(priced_round):
    round_run(shard="h20", trigger="manual")
    old = ClearingPrice.objects.filter(run=priced_round)
    old.update(recorded_at=priced_round.finished_at - timedelta(hours=5))
    client = APIClient()
    recent = client.get("/api/v1/prices/history/", {"gpu_model": "h20", "region": FAR, "hours": 2}).json()
    assert recent["count"] == 1
    wide = client.get("/api/v1/prices/history/", {"gpu_model": "h20", "region": FAR, "hours": 720}).json()
    assert wide["count"] == 2
    assert wide["results"][0]["run_id"] == priced_round.pk  # oldest first
    assert Decimal(wide["results"][0]["price_per_gpu_hour"]) == Decimal("7.00")
    page = client.get("/api/v1/prices/history/", {"gpu_model": "h20", "region": FAR, "hours": 720, "page_size": 1})
    assert page.json()["next"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"region": NEAR}, "gpu_model"),
        ({"gpu_model": "h20"}, "region"),
        ({"gpu_model": "h20", "region": NEAR, "hours": 721}, "hours"),
        ({"gpu_model": "h20", "region": NEAR, "hours": 0}, "hours"),
        ({"gpu_model": "h20", "region": NEAR, "hours": "soon"}, "hours"),
        ({"gpu_model": "h20", "region": NEAR, "hours": ""}, "hours"),
    ],
)
def test_history_refuses_bad_parameters_naming_them(reference, params, field):
    response = APIClient().get("/api/v1/prices/history/", params)
    assert response.status_code == 400
    assert field in response.json()


@override_settings(PRICE_HISTORY_DAYS=2)
def test_prune_keeps_the_configured_days(priced_round):
    second = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))
    ClearingPrice.objects.filter(run=priced_round).update(recorded_at=second.finished_at - timedelta(days=3))
    assert clearing_prices_prune(now=second.finished_at) == 2
    assert set(ClearingPrice.objects.values_list("run_id", flat=True)) == {second.pk}
    assert clearing_prices_prune(now=second.finished_at) == 0
    assert prices_prune() == 0  # the beat task runs the same service


def test_with_look_ahead_off_a_round_has_no_reservations_whatever_the_history(priced_round):
    snapshot = engine_problem(gpu_model_code="h20", now=market_now())
    assert snapshot.problem.reservations == {}


@override_settings(MATCHING_LOOKAHEAD=True, MATCHING_LOOKAHEAD_SCALE=Decimal("10"), MATCHING_LOOKAHEAD_PERIOD_MINUTES=0)
def test_with_look_ahead_on_near_capacity_carries_its_recent_rent_and_tolerant_work_goes_west(
    priced_round, make_listing, make_request
):
    rent = ClearingPrice.objects.get(run=priced_round, region__code=NEAR).rent_per_gpu_hour
    assert rent > 0
    # Fresh near capacity, cheaper than the west even with the latency cost of a standard request.
    near = make_listing(region=NEAR, gpu_count=8, price_per_gpu_hour=Decimal("6.00"))
    snapshot = engine_problem(gpu_model_code="h20", now=market_now())
    assert snapshot.problem.reservations == {
        x.id: (rent * 10).quantize(Decimal("0.0001")) for x in snapshot.problem.listings if x.region == NEAR
    }
    tolerant = make_request(latency_class="standard", gpus_per_replica=1, replicas=2)
    round_run(shard="h20", trigger="manual")
    placed = {m.listing.region.code for m in Match.objects.filter(request=tolerant).select_related("listing__region")}
    assert placed == {FAR}
    assert Match.objects.filter(listing=near).count() == 0
    # Real-time demand, which only the near hub can serve, still finds it free and pays no premium.
    realtime = make_request(latency_class="realtime", gpus_per_replica=1, replicas=2)
    round_run(shard="h20", trigger="manual")
    (match,) = Match.objects.filter(request=realtime)
    assert match.listing_id == near.pk
    assert match.cost_per_gpu_hour == match.price_per_gpu_hour + Decimal("0.05") * match.rtt_ms


@override_settings(MATCHING_LOOKAHEAD=True, MATCHING_LOOKAHEAD_PERIOD_MINUTES=60)
def test_with_look_ahead_on_a_far_off_request_waits_for_the_end_of_its_call_period(make_listing, make_request, now):
    make_listing(region=FAR, gpu_count=8, price_per_gpu_hour=Decimal("7.00"))
    period_start = now.replace(minute=0, second=0, microsecond=0)
    market_clock_freeze(at=period_start + timedelta(minutes=10))
    try:
        far_off = make_request(start_by=now + timedelta(hours=6))  # submitted in this period, in market time
        soon = make_request(start_by=period_start + timedelta(minutes=50))  # within the horizon: never held
        assert far_off.submitted_at == period_start + timedelta(minutes=10)
        round_run(shard="h20", trigger="manual")
        assert not Match.objects.filter(request=far_off).exists()
        assert Match.objects.filter(request=soon).exists()
        market_clock_freeze(at=period_start + timedelta(minutes=59))
        round_run(shard="h20", trigger="manual")
        assert not Match.objects.filter(request=far_off).exists()
        market_clock_freeze(at=period_start + timedelta(minutes=61))  # the period is over
        round_run(shard="h20", trigger="manual")
        assert Match.objects.filter(request=far_off).exists()
    finally:
        market_clock_freeze(at=None)


@override_settings(MATCHING_LOOKAHEAD=True, MATCHING_LOOKAHEAD_PERIOD_MINUTES=60)
def test_a_held_request_tells_its_buyer_when_it_is_offered_again(make_listing, make_request, buyer, now):
    """The API's held_until and the buyer's page say when the call comes; once it has, neither does."""
    make_listing(region=FAR, gpu_count=8, price_per_gpu_hour=Decimal("7.00"))
    period_start = now.replace(minute=0, second=0, microsecond=0)
    market_clock_freeze(at=period_start + timedelta(minutes=10))
    api = client_for(member("buy", buyer))
    page = Client()
    page.force_login(get_user_model().objects.get(username="buy"))
    try:
        far_off = make_request(start_by=now + timedelta(hours=6))
        due = make_request(start_by=period_start + timedelta(hours=1, minutes=30))  # its horizon comes first
        soon = make_request(start_by=period_start + timedelta(minutes=50))  # never held
        round_run(shard="h20", trigger="manual")
        far_off.refresh_from_db()
        due.refresh_from_db()
        assert far_off.held_until == period_start + timedelta(hours=1)
        assert due.held_until == period_start + timedelta(minutes=30)
        rows = {row["id"]: row for row in api.get("/api/v1/requests/").json()["results"]}
        assert parse_datetime(rows[far_off.pk]["held_until"]) == period_start + timedelta(hours=1)
        assert parse_datetime(rows[due.pk]["held_until"]) == period_start + timedelta(minutes=30)
        assert rows[soon.pk]["held_until"] is None
        assert api.get(f"/api/v1/requests/{far_off.pk}/").json()["held_until"] == rows[far_off.pk]["held_until"]
        html = page.get("/buyer/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert html.count("Waiting for its call") == 2
        with translation.override("en"):
            at = cst(period_start + timedelta(hours=1))  # the page's format, in China Standard Time
        assert at.endswith(" CST")
        assert f"offered to the matching rounds again at {at}." in html
        assert "等待集中撮合" in page.get("/buyer/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()

        with override_settings(MATCHING_LOOKAHEAD=False):  # turned off: nothing is held any more
            assert all(row["held_until"] is None for row in api.get("/api/v1/requests/").json()["results"])
        market_clock_freeze(at=period_start + timedelta(minutes=31))  # the due one's horizon: offered again
        rows = {row["id"]: row for row in api.get("/api/v1/requests/").json()["results"]}
        assert rows[due.pk]["held_until"] is None
        assert rows[far_off.pk]["held_until"] is not None
        market_clock_freeze(at=period_start + timedelta(minutes=61))
        assert all(row["held_until"] is None for row in api.get("/api/v1/requests/").json()["results"])
        assert "Waiting for its call" not in page.get("/buyer/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    finally:
        market_clock_freeze(at=None)


def test_with_look_ahead_off_nothing_is_held(make_listing, make_request, now):
    make_listing(region=FAR, gpu_count=8, price_per_gpu_hour=Decimal("7.00"))
    far_off = make_request(start_by=now + timedelta(hours=6))
    round_run(shard="h20", trigger="manual")
    assert Match.objects.filter(request=far_off).exists()
