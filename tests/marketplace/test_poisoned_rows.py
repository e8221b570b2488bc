"""A round survives a poisoned row: the row is left out, recorded with why, and the rest matched.

Issue 14, finding 2: a listing available from 9999-12-30 and a request to start by 9999-12-31 for
8,784 hours made every later round of H20 fail with an OverflowError. The API and the database now
refuse such rows; these tests put them in anyway (past both) and check that a bystander's ordinary
request of the same GPU model is still matched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from marketplace.models import BuyerRequest, GpuModel, Listing, Match, MatchingRun, Region
from marketplace.services import rounds
from marketplace.services.rounds import round_run
from tests.services_helpers import refuse_matches_of, request_terms
from tests.web.conftest import signed_in
from tests.web.test_pages import text

FAR = datetime(9999, 12, 30, tzinfo=UTC)


def without_constraint(model, name):
    """No check constraint for the rest of the test's transaction: a database restored without its
    guard (PostgreSQL drops the one constraint, rolled back with the test; SQLite ignores checks
    until the connection's pragma is reset at the end of the test)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA ignore_check_constraints = ON")
        return
    constraint = next(c for c in model._meta.constraints if c.name == name)
    with connection.schema_editor() as editor:
        editor.remove_constraint(model, constraint)


@pytest.fixture
def checks_restored():
    yield
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA ignore_check_constraints = OFF")


@pytest.fixture
def far_future_rows(reference, provider, buyer, now, checks_restored):
    """The attack's two rows, written past the API and past the constraints that now refuse them."""
    without_constraint(Listing, "listing_on_offer_in_domain")
    without_constraint(BuyerRequest, "request_live_in_domain")
    h20, shanghai = GpuModel.objects.get(code="h20"), Region.objects.get(code="shanghai")
    listing = Listing.objects.create(
        provider=provider,
        region=Region.objects.get(code="ningxia-zhongwei"),
        gpu_model=h20,
        gpu_count=8,
        gpus_per_node=8,
        price_per_gpu_hour=Decimal("1.00"),
        available_from=FAR,
        available_until=FAR + timedelta(days=1),
    )
    request = BuyerRequest.objects.create(
        buyer=buyer,
        gpu_model=h20,
        gpus_per_replica=1,
        replicas=1,
        origin=shanghai,
        latency_class="batch",
        max_price_per_gpu_hour=Decimal("9.00"),
        duration_hours=8784,
        start_by=FAR + timedelta(days=1),
    )
    return listing, request


def test_the_database_refuses_the_far_future_rows(reference, provider):
    with pytest.raises(IntegrityError), transaction.atomic():
        Listing.objects.create(
            provider=provider,
            region=Region.objects.get(code="ningxia-zhongwei"),
            gpu_model=GpuModel.objects.get(code="h20"),
            gpu_count=8,
            gpus_per_node=8,
            price_per_gpu_hour=Decimal("1.00"),
            available_from=FAR,
            available_until=FAR + timedelta(days=1),
        )


def test_far_future_rows_past_every_guard_are_left_out_and_a_bystander_is_matched(
    far_future_rows, make_listing, make_request
):
    poisoned_listing, poisoned_request = far_future_rows
    make_listing(gpu_count=16)
    bystander = make_request(latency_class="batch", replicas=2)

    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))

    assert run.status == MatchingRun.Status.SUCCEEDED
    assert Match.objects.filter(request=bystander).count() == 1
    assert {(row["kind"], row["id"]) for row in run.left_out} == {
        ("request", poisoned_request.pk),
        ("listing", poisoned_listing.pk),
    }
    reasons = {row["kind"]: row["reason"] for row in run.left_out}
    assert reasons["request"] == "start_by: Must be in the years 2000–2199."
    assert reasons["listing"] == "available_from: Must be in the years 2000–2199."
    poisoned_request.refresh_from_db()
    poisoned_listing.refresh_from_db()
    assert poisoned_request.left_out_reason == reasons["request"]
    assert poisoned_listing.left_out_reason == reasons["listing"]


def test_a_row_the_engine_cannot_plan_costs_only_itself(make_listing, make_request, monkeypatch):
    make_listing(gpu_count=16)
    poisoned = make_request(latency_class="batch", replicas=1)
    bystander = make_request(latency_class="batch", replicas=1)
    real = rounds.planner

    def planner(policy):
        def plan_of(problem):
            if any(r.id == poisoned.pk for r in problem.requests):
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
    assert Match.objects.filter(request=bystander).exists()
    assert not Match.objects.filter(request=poisoned).exists()


def test_a_match_the_database_refuses_costs_only_its_request(make_listing, make_request, monkeypatch):
    make_listing(gpu_count=16)
    poisoned = make_request(latency_class="batch", replicas=1)
    bystander = make_request(latency_class="batch", replicas=1)
    refuse_matches_of(monkeypatch, poisoned.pk)
    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))

    assert run.status == MatchingRun.Status.SUCCEEDED
    assert [(row["kind"], row["id"]) for row in run.left_out] == [("request", poisoned.pk)]
    assert "the database refused its match" in run.left_out[0]["reason"]
    assert Match.objects.filter(request=bystander).exists()
    poisoned.refresh_from_db()
    assert poisoned.status == "open"
    assert "program_balance_within_budget" in poisoned.left_out_reason


def test_a_row_no_longer_left_out_loses_its_reason(make_listing, make_request):
    make_listing(gpu_count=16)
    request = make_request(latency_class="batch", replicas=1)
    BuyerRequest.objects.filter(pk=request.pk).update(left_out_reason="start_by: an earlier problem")
    round_run(shard="h20", trigger="manual")
    request.refresh_from_db()
    assert request.left_out_reason == ""


def test_owners_and_the_monitor_see_why_a_row_was_left_out(far_future_rows, make_listing, clients):
    poisoned_listing, poisoned_request = far_future_rows
    round_run(shard="h20", trigger="manual")

    shown = clients["buyer"].get(f"/api/v1/requests/{poisoned_request.pk}/").json()
    assert shown["left_out_reason"] == "start_by: Must be in the years 2000–2199."
    listed = clients["provider"].get(f"/api/v1/listings/{poisoned_listing.pk}/").json()
    assert listed["left_out_reason"] == "available_from: Must be in the years 2000–2199."
    staff = get_user_model().objects.get(username="staff")
    monitor = text(signed_in(staff).get("/monitor/"))
    assert "Left out of rounds" in monitor
    assert f"request #{poisoned_request.pk}" in monitor
    assert "Must be in the years 2000–2199." in monitor
    buyer_page = text(signed_in(get_user_model().objects.get(username="buy")).get("/buyer/"))
    assert "left this request out: start_by: Must be in the years 2000–2199." in buyer_page


def test_quotes_refuse_the_attack_terms_and_ignore_poisoned_listings(far_future_rows, make_listing, clients):
    make_listing(gpu_count=16)
    terms = request_terms(duration_hours=8784)
    attack = clients["buyer"].post("/api/v1/quotes/", {**terms, "start_by": "9999-12-31T00:00:00Z"}, format="json")
    assert attack.status_code == 400
    assert "start_by" in attack.json()
    ordinary = clients["buyer"].post("/api/v1/quotes/", {**terms, "duration_hours": 24}, format="json")
    assert ordinary.status_code == 200, ordinary.content
    assert [p["region"] for p in ordinary.json()["placement"]] == ["ningxia-zhongwei"]
