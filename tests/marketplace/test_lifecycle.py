"""Matches through time: start, complete, cancel, fail over; metering, settlement, statements."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import Sum

from marketplace import selectors, services
from marketplace.errors import InvalidTransition
from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, Listing, Match, Region, Settlement, VoucherLedgerEntry
from marketplace.services.market_clock import market_clock_advance
from marketplace.services.plans import match_plan_apply
from marketplace.services.rounds import round_run
from matching.solver import solve
from tests.services_helpers import race


@pytest.fixture
def placed(make_listing, make_request):
    """A 24-hour request of 2 × 4 H20s placed on a Ningxia listing at 6.00 CNY."""
    listing = make_listing(price_per_gpu_hour=Decimal("6.00"))
    request = make_request(gpus_per_replica=4, replicas=2, duration_hours=24, latency_class="batch")
    round_run(shard="h20", trigger="manual")
    return listing, request, Match.objects.get(request=request)


def test_a_match_runs_its_duration_then_settles_and_frees_its_gpus(placed):
    listing, _, match = placed
    services.lifecycle_tick(now=match.starts_at + timedelta(minutes=1))
    match.refresh_from_db()
    assert match.status == "running"
    services.lifecycle_tick(now=match.ends_at + timedelta(minutes=1))
    match.refresh_from_db()
    listing.refresh_from_db()
    assert (match.status, match.ended_at, listing.allocated_gpus) == ("completed", match.ends_at, 0)
    line = Settlement.objects.get(match=match)
    # 8 GPUs × 24 h × 6.00 = 1152.00; 5% fee = 57.60
    assert (line.gpu_hours, line.gross, line.buyer_pays) == (Decimal("192"), Decimal("1152.00"), Decimal("1152.00"))
    assert (line.platform_fee, line.provider_earns) == (Decimal("57.60"), Decimal("1094.40"))


def test_a_second_tick_bills_nothing_twice(placed):
    _, _, match = placed
    for _ in range(2):
        services.lifecycle_tick(now=match.ends_at + timedelta(hours=1))
    assert Settlement.objects.count() == 1


def test_a_cancelled_running_match_pays_for_the_time_it_ran(placed, buyer):
    listing, _, match = placed
    services.lifecycle_tick(now=match.starts_at + timedelta(minutes=1))
    services.match_cancel(match_id=match.pk, buyer=buyer, now=match.starts_at + timedelta(hours=2, minutes=30))
    line = Settlement.objects.get(match=match)
    assert (line.gpu_hours, line.gross) == (Decimal("20"), Decimal("120.00"))
    listing.refresh_from_db()
    assert listing.allocated_gpus == 0
    with pytest.raises(InvalidTransition):
        services.match_cancel(match_id=match.pk, buyer=buyer, now=match.starts_at + timedelta(hours=3))


def test_cancelling_a_completed_match_is_refused(placed, clients):
    _, _, match = placed
    services.lifecycle_tick(now=match.ends_at)
    response = clients["buyer"].post(f"/api/v1/matches/{match.pk}/cancel/")
    assert response.status_code == 409
    assert Settlement.objects.count() == 1


def test_cancel_through_the_api_shows_the_reason(placed, clients):
    _, _, match = placed
    response = clients["buyer"].post(f"/api/v1/matches/{match.pk}/cancel/")
    assert response.status_code == 200
    assert (response.data["status"], response.data["status_reason"]) == ("cancelled", "cancelled by the buyer")
    assert clients["other_buyer"].post(f"/api/v1/matches/{match.pk}/cancel/").status_code == 404


def test_subsidy_is_drawn_for_hours_used_and_the_rest_released(make_listing, make_request, buyer, now):
    make_listing(region="gansu-qingyang", price_per_gpu_hour=Decimal("5.00"))
    program = services.voucher_program_create(
        name="Qingyang",
        sponsor="Qingyang government",
        percent=Decimal(30),
        budget=Decimal(10000),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
    )
    code = services.vouchers_issue(program_id=program.pk, sponsor_provider=None, buyer=buyer)[0].code
    request = make_request(voucher_code=code, latency_class="batch", replicas=1, duration_hours=10)
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    services.lifecycle_tick(now=match.starts_at)
    services.request_cancel(request_id=request.pk, buyer=buyer, now=match.starts_at + timedelta(hours=4))
    line = Settlement.objects.get(match=match)
    assert (line.gross, line.subsidy, line.buyer_pays) == (Decimal("20.00"), Decimal("6.00"), Decimal("14.00"))
    ledger = list(VoucherLedgerEntry.objects.order_by("id").values_list("kind", "amount"))
    assert ledger == [("reserve", Decimal("15.0000")), ("release", Decimal("9.0000"))]
    program.refresh_from_db()
    assert program.remaining_budget == Decimal("10000") - line.subsidy
    assert selectors.voucher_ledger_reconciles(program)


def test_a_failed_node_moves_its_matches_to_other_capacity(make_listing, make_request, provider, clients):
    first = make_listing(region="ningxia-zhongwei", price_per_gpu_hour=Decimal("5.00"), gpu_count=8)
    request = make_request(gpus_per_replica=8, replicas=1, latency_class="batch", duration_hours=24)
    round_run(shard="h20", trigger="manual")
    failed = Match.objects.get()
    second = make_listing(region="gansu-qingyang", price_per_gpu_hour=Decimal("5.50"), gpu_count=8)
    market_clock_advance(by=timedelta(hours=1))  # the node fails an hour into the run
    services.lifecycle_tick(now=market_now())
    response = clients["provider"].post(f"/api/v1/listings/{first.pk}/fail-nodes/", {"nodes": [0]}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["free_gpus"] == 8  # nothing held; the failed node is offered to nobody
    failed.refresh_from_db()
    request.refresh_from_db()
    assert (failed.status, failed.status_reason) == ("failed", f"node 0 of listing {first.pk} failed")
    assert (request.status, request.matched_replicas, request.priority) == ("open", 0, 1)
    round_run(shard="h20", trigger="manual")
    moved = Match.objects.exclude(pk=failed.pk).get()
    assert moved.listing_id == second.pk
    history = clients["buyer"].get("/api/v1/matches/").data["results"]
    assert [(m["listing"], m["status"]) for m in history] == [(second.pk, "reserved"), (first.pk, "failed")]
    assert Decimal("7.99") < Settlement.objects.get(match=failed).gpu_hours < Decimal("8.1")  # 8 GPUs, ~1 h
    assert not Settlement.objects.filter(match=moved).exists()


def test_withdrawing_a_listing_fails_over_its_matches(placed, provider, make_listing):
    listing, request, match = placed
    other = make_listing(region="gansu-qingyang", price_per_gpu_hour=Decimal("6.50"))
    services.listing_withdraw(listing_id=listing.pk, provider=provider)
    match.refresh_from_db()
    assert match.status == "failed"
    assert "withdrawn" in match.status_reason
    round_run(shard="h20", trigger="manual")
    request.refresh_from_db()
    assert request.status == "matched"
    assert Match.objects.filter(request=request, status="reserved").get().listing_id == other.pk


def test_another_provider_cannot_fail_or_withdraw_my_listing(placed, other_provider, clients):
    listing, _, match = placed
    assert (
        clients["other_provider"].post(f"/api/v1/listings/{listing.pk}/fail-nodes/", {"nodes": [0]}).status_code == 404
    )
    assert clients["other_provider"].delete(f"/api/v1/listings/{listing.pk}/").status_code == 404
    match.refresh_from_db()
    assert match.status == "reserved"


def test_statements_total_their_lines_to_the_fen(placed, clients, make_request):
    _, _, match = placed
    services.lifecycle_tick(now=match.ends_at)
    month = f"{match.ends_at:%Y-%m}"
    for role, own_total in (("buyer", "buyer_pays"), ("provider", "provider_earns")):
        statement = clients[role].get(f"/api/v1/statements/?month={month}").json()
        assert statement["role"] == role
        assert len(statement["lines"]) == 1
        ledger = Settlement.objects.aggregate(total=Sum(own_total))["total"]
        assert Decimal(statement["totals"][own_total]) == ledger == Decimal(statement["lines"][0][own_total])
        rows = list(
            csv.reader(io.StringIO(clients[role].get(f"/api/v1/statements/csv/?month={month}").content.decode()))
        )
        assert rows[0][0] == "match"
        assert rows[-1][0] == "total"
        assert len(rows) == 3
    assert clients["buyer"].get("/api/v1/statements/?month=2026-13").status_code == 400
    assert clients["other_buyer"].get(f"/api/v1/statements/?month={month}").json()["lines"] == []


def test_advance_clock_runs_a_day_in_seconds(make_listing, make_request, capsys):
    make_listing(price_per_gpu_hour=Decimal("6.00"))
    request = make_request(latency_class="batch", replicas=1, duration_hours=12)
    before = market_now()
    call_command("advance_clock", hours=24, step_minutes=240)
    assert market_now() - before >= timedelta(hours=24)
    request.refresh_from_db()
    match = Match.objects.get(request=request)
    assert (request.status, match.status) == ("matched", "completed")
    assert Settlement.objects.get(match=match).gpu_hours == Decimal("12")
    out = capsys.readouterr().out
    assert "[6/6]" in out
    assert "1 completed" in out


def test_requests_that_cannot_start_expire(make_request, now):
    request = make_request(start_by=now + timedelta(hours=1))
    services.lifecycle_tick(now=now + timedelta(hours=2))
    request.refresh_from_db()
    assert request.status == BuyerRequest.Status.EXPIRED


def test_listings_past_their_window_close(make_listing, now):
    listing = make_listing(available_until=now + timedelta(hours=1))
    services.lifecycle_tick(now=now + timedelta(hours=2))
    assert Listing.objects.get(pk=listing.pk).status == "closed"
    assert Region.objects.exists()


# --- races (PostgreSQL) -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.parametrize("attempt", range(3))
def test_ending_a_match_twice_at_once_bills_it_once(postgres, reference, placed, buyer, attempt):
    _, _, match = placed
    services.lifecycle_tick(now=match.starts_at + timedelta(hours=1))
    at = match.starts_at + timedelta(hours=2)
    outcomes = race(
        lambda: services.match_cancel(match_id=match.pk, buyer=buyer, now=at),
        lambda: services.match_cancel(match_id=match.pk, buyer=buyer, now=at),
        lambda: services.lifecycle_tick(now=match.ends_at),
    )
    assert Settlement.objects.filter(match=match).count() == 1
    assert sum(isinstance(outcome, InvalidTransition) for outcome in outcomes[:2]) >= 1
    assert Listing.objects.get(pk=match.listing_id).allocated_gpus == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.parametrize("attempt", range(3))
def test_withdrawing_capacity_during_a_round_never_leaves_a_match_on_it(
    postgres, reference, make_listing, make_request, provider, attempt
):
    listing = make_listing(gpu_count=16)
    make_request(gpus_per_replica=8, replicas=2, latency_class="batch")
    plan = solve(selectors.engine_problem(gpu_model_code="h20", now=market_now()).problem)
    outcomes = race(
        lambda: match_plan_apply(plan=plan, run_id=None, now=market_now()),
        lambda: services.listing_withdraw(listing_id=listing.pk, provider=provider),
    )
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    listing.refresh_from_db()
    live = Match.objects.filter(listing=listing, status__in=Match.LIVE_STATUSES)
    assert listing.status == "withdrawn"
    assert not live.exists()
    held = Match.objects.filter(listing=listing).exclude(status="failed").aggregate(total=Sum("gpus"))["total"]
    assert listing.allocated_gpus == (held or 0) == 0


def test_the_tick_fails_over_what_a_crashed_withdrawal_left_behind(placed):
    listing, request, match = placed
    Listing.objects.filter(pk=listing.pk).update(status="withdrawn")  # died before its failover step
    services.lifecycle_tick(now=match.starts_at + timedelta(minutes=5))
    match.refresh_from_db()
    request.refresh_from_db()
    assert (match.status, request.status, request.priority) == ("failed", "open", 1)
