"""Voucher programmes, codes and claims; subsidies reserved by rounds and released on cancel."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from marketplace import selectors, services
from marketplace.errors import InvalidInput
from marketplace.models import (
    BuyerRequest,
    GpuModel,
    Match,
    MatchingRun,
    Region,
    Voucher,
    VoucherLedgerEntry,
    VoucherProgram,
)
from marketplace.services.plans import match_plan_apply
from marketplace.services.rounds import round_run
from matching.latency import LatencyClass
from matching.problem import Assignment, Plan


@pytest.fixture
def make_program(reference, now):
    def make(**overrides):
        fields = {
            "name": "Qingyang compute voucher",
            "sponsor": "Qingyang government",
            "percent": Decimal("30"),
            "budget": Decimal("100000"),
            "valid_from": now - timedelta(days=1),
            "valid_until": now + timedelta(days=365),
            "eligible_regions": [Region.objects.get(code="gansu-qingyang")],
        }
        fields.update(overrides)
        return services.voucher_program_create(**fields)

    return make


def code_for(program, buyer=None, **extra) -> str:
    return services.vouchers_issue(program_id=program.pk, sponsor_provider=None, buyer=buyer, **extra)[0].code


# --- programmes, codes and claims ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"percent": None}, "percent"),
        ({"percent": Decimal("120")}, "percent"),
        ({"kind": "free_gpu_hours", "free_gpu_hours": None}, "free_gpu_hours"),
        ({"budget": Decimal("0")}, "budget"),
    ],
)
def test_programme_terms_are_checked(make_program, overrides, field):
    with pytest.raises(InvalidInput) as error:
        make_program(**overrides)
    assert error.value.field == field
    assert not VoucherProgram.objects.exists()


def test_codes_are_unguessable_and_unique(make_program):
    vouchers = services.vouchers_issue(program_id=make_program().pk, sponsor_provider=None, count=50)
    codes = {voucher.code for voucher in vouchers}
    assert len(codes) == 50
    assert all(len(code) >= 22 for code in codes)  # ≥ 128 bits of URL-safe base64


def test_claiming_twice_is_idempotent(make_program, buyer):
    code = code_for(make_program())
    first = services.voucher_claim(code=code, buyer=buyer)
    second = services.voucher_claim(code=code, buyer=buyer)
    assert first.pk == second.pk
    assert second.buyer_id == buyer.pk


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unknown", "Unknown voucher code."),
        ("foreign", "This voucher belongs to another buyer."),
        ("expired", "This voucher expired on"),
        ("not_yet", "This voucher is not valid before"),
        ("exhausted", "This voucher has no value left."),
        ("ineligible", "This programme is for buyers registered in Beijing."),
        ("revoked", "This voucher was revoked."),
    ],
)
def test_bad_codes_get_a_400_saying_which(clients, make_program, other_buyer, now, setup, message):
    program = make_program(eligible_buyer_provinces=["Beijing"] if setup == "ineligible" else [])
    code = code_for(program, buyer=other_buyer if setup == "foreign" else None)
    if setup == "expired":
        VoucherProgram.objects.filter(pk=program.pk).update(valid_until=now - timedelta(hours=1))
    if setup == "not_yet":
        VoucherProgram.objects.filter(pk=program.pk).update(valid_from=now + timedelta(days=1))
    if setup == "exhausted":
        VoucherProgram.objects.filter(pk=program.pk).update(remaining_budget=0)
    if setup == "revoked":
        Voucher.objects.filter(code=code).update(status="revoked")
    response = clients["buyer"].post("/api/v1/vouchers/claim/", {"code": "nope" if setup == "unknown" else code})
    assert response.status_code == 400
    assert response.data["code"][0].startswith(message)


def test_buyers_list_only_their_own_vouchers_with_remaining_value(clients, make_program, buyer, other_buyer):
    program = make_program(cap_per_buyer=Decimal("2000"))
    mine = code_for(program, buyer=buyer)
    code_for(program, buyer=other_buyer)
    rows = clients["buyer"].get("/api/v1/vouchers/").data["results"]
    assert [(row["code"], row["remaining_value"]) for row in rows] == [(mine, "2000.0000")]
    assert clients["other_buyer"].get("/api/v1/vouchers/").data["count"] == 1
    assert clients["provider"].get("/api/v1/vouchers/").status_code == 403


# --- programme management -----------------------------------------------------------------------


def test_staff_create_programmes_and_issue_codes_through_rest(clients, reference):
    body = {
        "name": "Chengdu compute voucher",
        "sponsor": "Chengdu government",
        "kind": "percent",
        "percent": "60",
        "cap_per_buyer": "5000000",
        "budget": "100000000",
        "valid_until": "2030-01-01T00:00:00Z",
        "eligible_regions": ["chengdu", "sichuan-tianfu"],
        "eligible_gpu_models": ["h20"],
    }
    created = clients["staff"].post("/api/v1/voucher-programs/", body, format="json")
    assert created.status_code == 201, created.data
    assert created.data["remaining_budget"] == "100000000.0000"
    issued = clients["staff"].post(f"/api/v1/voucher-programs/{created.data['id']}/vouchers/", {"count": 3})
    assert issued.status_code == 201
    assert len(issued.data) == 3
    assert clients["buyer"].post("/api/v1/voucher-programs/", body, format="json").status_code == 403
    assert clients["anonymous"].get("/api/v1/voucher-programs/").status_code == 401


def test_providers_manage_only_their_own_promotions(clients, provider, reference):
    body = {
        "name": "First 50 GPU-hours free",
        "kind": "free_gpu_hours",
        "free_gpu_hours": "50",
        "budget": "20000",
        "valid_until": "2030-01-01T00:00:00Z",
    }
    created = clients["provider"].post("/api/v1/voucher-programs/", body, format="json")
    assert created.status_code == 201, created.data
    assert (created.data["sponsor_provider"], created.data["eligible_providers"]) == (provider.name, [provider.name])
    program_id = created.data["id"]
    assert clients["other_provider"].get(f"/api/v1/voucher-programs/{program_id}/").status_code == 404
    assert clients["other_provider"].post(f"/api/v1/voucher-programs/{program_id}/vouchers/", {}).status_code == 404
    assert clients["staff"].get(f"/api/v1/voucher-programs/{program_id}/").status_code == 200


def test_budget_cannot_be_cut_below_what_is_reserved(make_program):
    program = make_program(budget=Decimal("1000"))
    VoucherProgram.objects.filter(pk=program.pk).update(remaining_budget=Decimal("400"))
    with pytest.raises(InvalidInput) as error:
        services.voucher_program_update(program_id=program.pk, sponsor_provider=None, changes={"budget": Decimal(500)})
    assert error.value.field == "budget"
    program = services.voucher_program_update(
        program_id=program.pk, sponsor_provider=None, changes={"budget": Decimal(700)}
    )
    assert program.remaining_budget == Decimal("100")


# --- requests, rounds and the ledger ------------------------------------------------------------


def test_a_request_with_an_ineligible_voucher_writes_nothing(clients, make_program):
    code = code_for(make_program(eligible_gpu_models=[GpuModel.objects.get(code="h100")]))
    body = {
        "gpu_model": "h20",
        "gpus_per_replica": 1,
        "replicas": 1,
        "origin": "shanghai",
        "max_price_per_gpu_hour": "9",
        "duration_hours": 24,
        "voucher_code": code,
    }
    response = clients["buyer"].post("/api/v1/requests/", body)
    assert response.status_code == 400
    assert response.data == {"voucher_code": ["This programme covers only h100."]}
    assert not BuyerRequest.objects.exists()
    assert Voucher.objects.get(code=code).buyer_id is None


def test_minimum_spend_is_enforced(clients, make_program):
    code = code_for(make_program(min_spend=Decimal("5000")))
    body = {
        "gpu_model": "h20",
        "gpus_per_replica": 1,
        "replicas": 1,
        "origin": "shanghai",
        "max_price_per_gpu_hour": "9",
        "duration_hours": 24,
        "voucher_code": code,
    }
    response = clients["buyer"].post("/api/v1/requests/", body)
    assert response.data == {"voucher_code": ["This programme needs a request worth at least 5000.00 CNY."]}


def qingyang_and_east(make_listing):
    """Qingyang at 5.59 (30.6 ms from Shanghai) and the YRD hub at 8.96 (2.8 ms)."""
    west = make_listing(region="gansu-qingyang", price_per_gpu_hour=Decimal("5.59"))
    east = make_listing(region="yrd-qingpu-wujiang-jiashan", price_per_gpu_hour=Decimal("8.96"))
    return west, east


def test_a_voucher_moves_the_quote_west(clients, make_listing, make_program, buyer):
    qingyang_and_east(make_listing)
    code = code_for(make_program(), buyer=buyer)
    body = {
        "gpu_model": "h20",
        "gpus_per_replica": 1,
        "replicas": 2,
        "origin": "shanghai",
        "max_rtt_ms": "31",
        "latency_weight": "0.15",
        "max_price_per_gpu_hour": "10",
        "duration_hours": 24,
    }
    plain = clients["buyer"].post("/api/v1/quotes/", body).json()
    with_voucher = clients["buyer"].post("/api/v1/quotes/", {**body, "voucher_code": code}).json()
    assert [p["region"] for p in plain["placement"]] == ["yrd-qingpu-wujiang-jiashan"]
    assert [p["region"] for p in with_voucher["placement"]] == ["gansu-qingyang"]
    assert with_voucher["placement"][0]["subsidy_per_gpu_hour"] == "1.6770"
    assert Decimal(with_voucher["total_cost"]) < Decimal(plain["total_cost"])
    assert not VoucherLedgerEntry.objects.exists()


def test_a_round_reserves_the_subsidy_in_the_ledger_and_cancel_releases_it(
    clients, make_listing, make_request, make_program, buyer
):
    west, _ = qingyang_and_east(make_listing)
    program = make_program()
    request = make_request(
        voucher_code=code_for(program, buyer=buyer),
        latency_class=None,
        max_rtt_ms=Decimal("31"),
        latency_weight=Decimal("0.15"),
        replicas=2,
    )
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    assert (match.listing_id, match.subsidy_per_gpu_hour, match.voucher.program_id) == (
        west.pk,
        Decimal("1.677"),
        program.pk,
    )
    reserved = Decimal("1.677") * 2 * 24
    assert list(VoucherLedgerEntry.objects.values_list("kind", "amount")) == [("reserve", reserved)]
    program.refresh_from_db()
    assert program.remaining_budget == Decimal("100000") - reserved
    shown = clients["buyer"].get("/api/v1/matches/").data["results"][0]
    assert (shown["voucher_program"], Decimal(shown["subsidy_total"])) == ("Qingyang compute voucher", reserved)
    services.request_cancel(request_id=request.pk, buyer=buyer)
    program.refresh_from_db()
    assert program.remaining_budget == Decimal("100000")
    assert list(VoucherLedgerEntry.objects.values_list("kind", flat=True)) == ["reserve", "release"]
    assert selectors.voucher_ledger_reconciles(program)


def test_a_subsidy_the_budget_cannot_cover_is_cut_not_overspent(make_listing, make_request, make_program, buyer):
    west, _ = qingyang_and_east(make_listing)
    program = make_program(budget=Decimal("50"))
    make_request(voucher_code=code_for(program, buyer=buyer), latency_class="batch", replicas=2)
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    program.refresh_from_db()
    assert match.listing_id == west.pk
    assert match.subsidy_per_gpu_hour * 48 <= Decimal("50")
    assert program.remaining_budget >= 0
    assert selectors.voucher_ledger_reconciles(program)
    assert match.cost_per_gpu_hour > match.price_per_gpu_hour - Decimal("1.677")


@pytest.mark.parametrize("codes", [2, 48])
def test_many_codes_of_one_programme_share_its_last_budget_in_one_round(
    make_listing, make_request, make_program, buyer, other_buyer, codes
):
    """Each code's plan sees the programme's whole remaining budget; the round reserves against the
    one locked balance as it goes, so together they never overdraw it and the round succeeds."""
    qingyang_and_east(make_listing)
    make_listing(region="gansu-qingyang", gpu_count=8 * codes, price_per_gpu_hour=Decimal("5.59"))
    program = make_program(budget=Decimal("1.00") if codes > 2 else Decimal("0.20"))
    for _ in range(codes):
        make_request(voucher_code=code_for(program, buyer=buyer), latency_class="batch", replicas=1)
    bystander = make_request(buyer=other_buyer, latency_class="batch", replicas=1)

    run = MatchingRun.objects.get(pk=round_run(shard="h20", trigger="manual"))

    program.refresh_from_db()
    assert run.status == MatchingRun.Status.SUCCEEDED
    assert Match.objects.filter(request=bystander).exists()
    assert Match.objects.filter(voucher__isnull=False).count() >= 1
    assert Match.objects.filter(request__voucher__program=program).count() == codes
    assert program.remaining_budget >= 0
    reserved = sum(m.subsidy_per_gpu_hour * m.gpus * m.request.duration_hours for m in Match.objects.all())
    assert reserved == program.budget - program.remaining_budget <= program.budget
    assert selectors.voucher_ledger_reconciles(program)


def test_cap_per_buyer_bounds_a_years_subsidy(make_listing, make_request, make_program, buyer):
    qingyang_and_east(make_listing)
    program = make_program(cap_per_buyer=Decimal("20"))
    code = code_for(program, buyer=buyer)
    make_request(voucher_code=code, latency_class="batch", replicas=1)
    make_request(voucher_code=code, latency_class="batch", replicas=1)
    round_run(shard="h20", trigger="manual")
    total = sum(m.subsidy_per_gpu_hour * m.gpus * 24 for m in Match.objects.all())
    assert Decimal("19.99") < total <= Decimal("20")


def test_free_gpu_hours_promotion_pays_for_the_first_hours(make_listing, make_request, provider, buyer, now):
    listing = make_listing(region="zhengzhou", price_per_gpu_hour=Decimal("7.00"))
    program = services.voucher_program_create(
        name="First 50 GPU-hours free in Zhengzhou",
        sponsor=provider.name,
        sponsor_provider=provider,
        kind="free_gpu_hours",
        free_gpu_hours=Decimal("50"),
        budget=Decimal("10000"),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
    )
    code = services.vouchers_issue(program_id=program.pk, sponsor_provider=provider)[0].code
    make_request(voucher_code=code, latency_class="batch", gpus_per_replica=8, replicas=1, duration_hours=24)
    round_run(shard="h20", trigger="manual")
    match = Match.objects.get()
    assert match.listing_id == listing.pk
    # 50 of its 192 GPU-hours are free: 350 CNY spread over 192 GPU-hours, rounded down to 0.0001.
    assert match.subsidy_per_gpu_hour == Decimal("1.8229")
    entry = VoucherLedgerEntry.objects.get()
    assert (entry.gpu_hours, entry.amount) == (Decimal("50"), Decimal("1.8229") * 192)


def test_programme_report_shows_spend_buyers_and_western_share(
    clients, make_listing, make_request, make_program, buyer
):
    qingyang_and_east(make_listing)
    program = make_program()
    make_request(voucher_code=code_for(program, buyer=buyer), latency_class="batch", replicas=2)
    round_run(shard="h20", trigger="manual")
    report = clients["staff"].get(f"/api/v1/voucher-programs/{program.pk}/report/").json()
    assert report["buyers_served"] == 1
    assert report["matches_subsidised"] == 1
    assert report["gpu_hours_by_region"] == {"gansu-qingyang": "48.0000"}
    assert report["west_share"] == 1.0
    assert Decimal(report["spent"]) == Decimal("1.677") * 48


# --- concurrency (PostgreSQL) -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_200_concurrent_redemptions_against_a_budget_for_100(
    postgres, reference, make_listing, make_request, make_program, buyer, now
):
    """Each redemption is a round applying one subsidised match on its own listing, so that only the
    programme's row lock stands between them; the budget covers exactly 100."""
    listings = [
        make_listing(region="gansu-qingyang", gpu_count=8, price_per_gpu_hour=Decimal("10")) for _ in range(200)
    ]
    program = make_program(budget=Decimal("2400"))  # 100 × (30% of 10 CNY × 8 GPUs × 1 h)
    requests = [
        make_request(
            voucher_code=code_for(program, buyer=buyer),
            gpus_per_replica=8,
            replicas=1,
            duration_hours=1,
            latency_class="batch",
            max_price_per_gpu_hour=Decimal("12"),
        )
        for _ in range(200)
    ]
    start = threading.Barrier(50, timeout=60)

    def redeem(k: int) -> Decimal:
        assignment = Assignment(
            request_id=requests[k].pk,
            listing_id=listings[k].pk,
            region="gansu-qingyang",
            replicas=1,
            gpus_per_replica=8,
            nodes=(0,),
            price_per_gpu_hour=Decimal("10"),
            subsidy_per_gpu_hour=Decimal("3"),
            energy_cost_per_gpu_hour=Decimal("0.1"),
            rtt_ms=30.6,
            latency_class=LatencyClass.STANDARD,
            cost_per_gpu_hour=Decimal("7"),
            starts_at=timezone.now(),
        )
        if k < 50:
            start.wait()  # the first fifty start at the same instant
        try:
            plan = Plan((assignment,), (), "test", Decimal(0), Decimal(0), 0.0, 1)
            return match_plan_apply(plan=plan, run_id=None, now=timezone.now()).matches[0].subsidy_per_gpu_hour
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        subsidies = list(pool.map(redeem, range(200)))
    program.refresh_from_db()
    assert subsidies.count(Decimal("3")) == 100
    assert subsidies.count(Decimal("0")) == 100
    assert program.remaining_budget == 0
    assert VoucherLedgerEntry.objects.filter(kind="reserve").count() == 100
    assert selectors.voucher_ledger_reconciles(program)
    assert Match.objects.filter(subsidy_per_gpu_hour__gt=0).count() == 100
