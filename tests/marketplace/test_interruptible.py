"""The interruptible tier through the market: placement at the floor, pre-emption with notice,
settlement to the minute, re-queueing, the API's fields, and a pre-emption racing a cancel."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from marketplace import services
from marketplace.models import BuyerRequest, Listing, Match, Settlement, WebhookDelivery, WebhookEndpoint
from marketplace.services.events import MATCH_PREEMPTED
from marketplace.services.market_clock import market_clock_freeze
from marketplace.services.rounds import round_run
from tests.services_helpers import assert_no_gpu_held_twice, race

NOTICE = 300


@pytest.fixture
def market(db, now):
    """The market clock stood at ``now``; ``market.at(minutes)`` moves it to ``now`` + that."""

    class Clock:
        def at(self, minutes: float):
            market_clock_freeze(at=now + timedelta(minutes=minutes))
            return now + timedelta(minutes=minutes)

    clock = Clock()
    clock.at(0)
    return clock


@pytest.fixture
def tiered(make_listing):
    """One 8-GPU node in Ningxia at 6.00, offering the tier at a floor of 2.00."""
    return make_listing(gpu_count=8, interruptible_floor_price_per_gpu_hour=Decimal("2.00"))


def batch(make_request, **terms):
    fields = {"gpus_per_replica": 8, "replicas": 1, "latency_class": "batch", "duration_hours": 24}
    return make_request(**{**fields, **terms})


@pytest.fixture(autouse=True)
def notice():
    with override_settings(PREEMPT_NOTICE_SECONDS=NOTICE):
        yield


@pytest.fixture
def running_interruptible(market, tiered, make_request):
    """An interruptible 8-GPU request bidding 3.00, placed on ``tiered`` and running from minute 0."""
    request = batch(make_request, interruptible=True, max_price_per_gpu_hour=Decimal("3.00"))
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get(request=request)
    services.lifecycle_tick(now=market.at(0))
    match.refresh_from_db()
    assert match.status == Match.Status.RUNNING
    return request, match


def test_an_interruptible_request_pays_the_floor_not_its_bid_nor_the_list_price(running_interruptible):
    _, match = running_interruptible
    assert match.price_per_gpu_hour == Decimal("2.00")


def test_an_interruptible_request_is_not_placed_where_the_floor_is_above_its_bid(market, tiered, make_request):
    request = batch(make_request, interruptible=True, max_price_per_gpu_hour=Decimal("1.99"))
    round_run(shard="h20", trigger="manual")
    assert not Match.objects.filter(request=request).exists()


def test_an_interruptible_request_is_not_placed_on_a_listing_without_the_tier(market, make_listing, make_request):
    make_listing(gpu_count=8, price_per_gpu_hour=Decimal("1.00"))
    request = batch(make_request, interruptible=True, max_price_per_gpu_hour=Decimal("9.00"))
    round_run(shard="h20", trigger="manual")
    assert not Match.objects.filter(request=request).exists()


def test_pre_emption_gives_notice_then_ends_billed_to_the_minute_and_requeues(
    running_interruptible, market, make_request, make_listing
):
    interruptible, match = running_interruptible
    market.at(90)
    on_demand = batch(make_request, max_price_per_gpu_hour=Decimal("6.00"))  # the list price: enough to pre-empt
    round_run(shard="h20", trigger="manual")

    match.refresh_from_db()
    notice_end = market.at(90) + timedelta(seconds=NOTICE)
    assert (match.status, match.preempt_at, match.ends_at) == (Match.Status.RUNNING, notice_end, notice_end)
    assert not Match.objects.filter(request=on_demand).exists()  # waits for the notice
    assert not Settlement.objects.filter(match=match).exists()

    services.lifecycle_tick(now=market.at(94))  # inside the notice: still running
    match.refresh_from_db()
    assert match.status == Match.Status.RUNNING

    services.lifecycle_tick(now=market.at(97))  # the tick comes late; billing stops at the notice's end
    match.refresh_from_db()
    assert (match.status, match.ended_at) == (Match.Status.PREEMPTED, notice_end)
    line = Settlement.objects.get(match=match)
    # 8 GPUs × 95 minutes at the floor of 2.00: 12.6667 GPU-hours, 25.33 CNY.
    assert (line.gpu_hours, line.price_per_gpu_hour, line.gross) == (
        Decimal("12.6667"),
        Decimal("2.00"),
        Decimal("25.33"),
    )
    interruptible.refresh_from_db()
    assert (interruptible.status, interruptible.matched_replicas) == (BuyerRequest.Status.OPEN, 0)

    round_run(shard="h20", trigger="manual")  # the GPUs are free: on-demand first
    assert Match.objects.get(request=on_demand).listing_id == match.listing_id
    assert Match.objects.filter(request=interruptible).count() == 1  # nowhere to go yet

    make_listing(gpu_count=8, interruptible_floor_price_per_gpu_hour=Decimal("2.50"), available_from=market.at(97))
    round_run(shard="h20", trigger="manual")  # matched again, later, on the new floor
    again = Match.objects.filter(request=interruptible).exclude(pk=match.pk).get()
    assert again.price_per_gpu_hour == Decimal("2.50")
    assert_no_gpu_held_twice()


def test_an_on_demand_match_is_never_pre_empted(market, tiered, make_request):
    first = batch(make_request, max_price_per_gpu_hour=Decimal("7.00"))
    round_run(shard="h20", trigger="manual")
    services.lifecycle_tick(now=market.at(1))
    second = batch(make_request, max_price_per_gpu_hour=Decimal("50.00"), priority=5)
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get(request=first)
    assert (match.status, match.preempt_at) == (Match.Status.RUNNING, None)
    assert not Match.objects.filter(request=second).exists()


def test_interruptible_demand_never_pre_empts_interruptible_work(running_interruptible, market, make_request):
    _, match = running_interruptible
    batch(make_request, interruptible=True, max_price_per_gpu_hour=Decimal("9.00"), priority=5)
    round_run(shard="h20", trigger="manual")
    match.refresh_from_db()
    assert match.preempt_at is None


def test_the_buyer_hears_of_the_pre_emption(running_interruptible, market, make_request, buyer):
    WebhookEndpoint.objects.create(
        organisation=buyer, url="https://hooks.example.com/market", events=[MATCH_PREEMPTED], secret="s" * 40
    )
    batch(make_request)
    round_run(shard="h20", trigger="manual")
    (delivery,) = WebhookDelivery.objects.filter(event_type=MATCH_PREEMPTED)
    assert delivery.payload["data"]["preempt_at"] is not None


# --- the API --------------------------------------------------------------------------------------


def listing_body(**extra):
    return {
        "region": "ningxia-zhongwei",
        "gpu_model": "h20",
        "gpu_count": 8,
        "gpus_per_node": 8,
        "price_per_gpu_hour": "6.00",
        **extra,
    }


def test_a_listing_offers_the_tier_through_the_api_and_shows_its_floor(clients):
    created = clients["provider"].post(
        "/api/v1/listings/", listing_body(interruptible_floor_price_per_gpu_hour="2.00"), format="json"
    )
    assert created.status_code == 201, created.json()
    assert created.json()["interruptible_floor_price_per_gpu_hour"] == "2.0000"
    url = f"/api/v1/listings/{created.json()['id']}/"
    changed = clients["provider"].patch(url, {"interruptible_floor_price_per_gpu_hour": None}, format="json")
    assert changed.status_code == 200, changed.json()
    assert clients["provider"].get(url).json()["interruptible_floor_price_per_gpu_hour"] is None
    plain = clients["provider"].post("/api/v1/listings/", listing_body(), format="json")
    assert plain.json()["interruptible_floor_price_per_gpu_hour"] is None


@pytest.mark.parametrize("floor", ["6.01", "0", "abc"])
def test_a_floor_above_the_price_or_not_positive_is_a_400_naming_it(clients, floor):
    response = clients["provider"].post(
        "/api/v1/listings/", listing_body(interruptible_floor_price_per_gpu_hour=floor), format="json"
    )
    assert response.status_code == 400
    assert "interruptible_floor_price_per_gpu_hour" in str(response.json())
    assert not Listing.objects.exists()


def test_a_price_cut_below_the_floor_is_a_400_naming_the_floor(clients, tiered):
    response = clients["provider"].patch(
        f"/api/v1/listings/{tiered.pk}/", {"price_per_gpu_hour": "1.50"}, format="json"
    )
    assert response.status_code == 400
    assert "interruptible_floor_price_per_gpu_hour" in str(response.json())


def request_body(**extra):
    return {
        "gpu_model": "h20",
        "gpus_per_replica": 8,
        "replicas": 1,
        "origin": "shanghai",
        "latency_class": "batch",
        "max_price_per_gpu_hour": "3.00",
        "duration_hours": 24,
        **extra,
    }


def test_a_request_is_interruptible_through_the_api_and_on_demand_by_default(clients):
    tier = clients["buyer"].post("/api/v1/requests/", request_body(interruptible=True), format="json")
    plain = clients["buyer"].post("/api/v1/requests/", request_body(), format="json")
    assert (tier.status_code, plain.status_code) == (201, 201)
    assert (tier.json()["interruptible"], plain.json()["interruptible"]) == (True, False)
    assert clients["buyer"].get(f"/api/v1/requests/{tier.json()['id']}/").json()["interruptible"] is True


def test_interruptible_must_be_a_boolean(clients):
    response = clients["buyer"].post("/api/v1/requests/", request_body(interruptible="maybe"), format="json")
    assert response.status_code == 400
    assert "interruptible" in str(response.json())
    assert not BuyerRequest.objects.exists()


def test_a_quote_shows_both_tiers_prices(clients, tiered):
    body = clients["buyer"].post("/api/v1/quotes/", request_body(max_price_per_gpu_hour="9.00"), format="json").json()
    assert body["tiers"]["on_demand"]["price_per_gpu_hour"] == "6.0000"
    assert body["tiers"]["interruptible"]["price_per_gpu_hour"] == "2.0000"
    assert body["placement"][0]["price_per_gpu_hour"] == "6.0000"  # its own tier: on-demand
    tier = (
        clients["buyer"]
        .post("/api/v1/quotes/", request_body(max_price_per_gpu_hour="9.00", interruptible=True), format="json")
        .json()
    )
    assert tier["placement"][0]["price_per_gpu_hour"] == "2.0000"


# --- a pre-emption and a cancel at once -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.parametrize("attempt", range(4))
def test_a_pre_emption_and_a_cancel_of_the_same_match_at_once_bill_once(
    postgres, reference, make_listing, make_request, buyer, now, attempt
):
    """The tick ends a match whose notice ran out as ``preempted`` (locking its request, the match,
    its listing) while its buyer cancels it: one settlement, one status, the GPUs given back once."""
    market_clock_freeze(at=now)
    make_listing(gpu_count=8, interruptible_floor_price_per_gpu_hour=Decimal("2.00"))
    interruptible = batch(make_request, interruptible=True, max_price_per_gpu_hour=Decimal("3.00"))
    round_run(shard="h20", trigger="manual")
    services.lifecycle_tick(now=now)
    market_clock_freeze(at=now + timedelta(minutes=30))
    batch(make_request)
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get(request=interruptible)
    assert match.preempt_at is not None
    after = match.preempt_at + timedelta(seconds=attempt)

    outcomes = race(
        lambda: services.lifecycle_tick(now=after),
        lambda: services.match_cancel(match_id=match.pk, buyer=buyer, now=after),
    )

    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert all("already" in str(o) for o in refused), outcomes
    match.refresh_from_db()
    assert match.status in (Match.Status.PREEMPTED, Match.Status.CANCELLED)
    assert Settlement.objects.filter(match=match).count() == 1
    # 8 GPUs × 35 minutes: 30 before the pre-emption, 5 of notice; the cancel does not bill past the notice.
    assert Settlement.objects.get(match=match).gpu_hours == Decimal("4.6667")
    assert_no_gpu_held_twice()
    assert Listing.objects.get(pk=match.listing_id).allocated_gpus == 0


def test_a_round_between_the_notices_end_and_the_tick_pre_empts_nothing_more(market, make_listing, make_request):
    for floor in ("2.00", "2.50"):
        make_listing(gpu_count=8, interruptible_floor_price_per_gpu_hour=Decimal(floor))
    for _ in range(2):
        batch(make_request, interruptible=True, max_price_per_gpu_hour=Decimal("3.00"))
    round_run(shard="h20", trigger="manual")
    services.lifecycle_tick(now=market.at(0))
    market.at(60)
    batch(make_request)
    round_run(shard="h20", trigger="manual")
    market.at(70)  # past the notice's end; the tick has not run yet
    round_run(shard="h20", trigger="manual")
    assert list(Match.objects.order_by("price_per_gpu_hour").values_list("preempt_at", flat=True)) == [
        market.at(60) + timedelta(seconds=NOTICE),
        None,
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.parametrize("attempt", range(4))
def test_a_round_pre_empting_a_match_while_its_buyer_cancels_it_bills_once(
    postgres, reference, make_listing, make_request, buyer, now, attempt
):
    """The round that gives the notice (locking requests, then the match) and the buyer's cancel
    (the match) at once: whichever wins, the match ends once, with one settlement line, and the
    on-demand request is placed on its GPUs by a later round."""
    market_clock_freeze(at=now)
    make_listing(gpu_count=8, interruptible_floor_price_per_gpu_hour=Decimal("2.00"))
    interruptible = batch(make_request, interruptible=True, max_price_per_gpu_hour=Decimal("3.00"))
    round_run(shard="h20", trigger="manual")
    services.lifecycle_tick(now=now)
    match = Match.objects.get(request=interruptible)
    at = now + timedelta(minutes=30 + attempt)
    market_clock_freeze(at=at)
    on_demand = batch(make_request)

    outcomes = race(
        lambda: round_run(shard="h20", trigger="manual"),
        lambda: services.match_cancel(match_id=match.pk, buyer=buyer, now=at),
    )

    assert [o for o in outcomes if isinstance(o, Exception)] == [], outcomes
    end = at + timedelta(seconds=NOTICE)
    market_clock_freeze(at=end)
    services.lifecycle_tick(now=end)
    round_run(shard="h20", trigger="manual")
    match.refresh_from_db()
    assert match.status in (Match.Status.PREEMPTED, Match.Status.CANCELLED)
    assert Settlement.objects.filter(match=match).count() == 1
    assert Match.objects.filter(request=on_demand, listing=match.listing).exists()
    assert_no_gpu_held_twice()
