"""Reads of vouchers: ledger balances, a buyer's vouchers, programme reports, engine terms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet, Sum

from marketplace.eligibility import voucher_pays
from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, Organisation, Voucher, VoucherLedgerEntry, VoucherProgram
from matching.problem import VoucherTerms

ZERO = Decimal("0")


def buyer_year_net(pairs: set[tuple[int, int]], year: int) -> dict[tuple[int, int], Decimal]:
    """Net subsidy (reserved − released) per (programme, buyer) in calendar ``year``, one query."""
    if not pairs:
        return {}
    rows = (
        VoucherLedgerEntry.objects.filter(
            program_id__in={p for p, _ in pairs}, buyer_id__in={b for _, b in pairs}, created_at__year=year
        )
        .values("program_id", "buyer_id", "kind")
        .annotate(total=Sum("amount"))
    )
    net: dict[tuple[int, int], Decimal] = {}
    for row in rows:
        sign = 1 if row["kind"] == VoucherLedgerEntry.Kind.RESERVE else -1
        key = (row["program_id"], row["buyer_id"])
        net[key] = net.get(key, ZERO) + sign * row["total"]
    return net


def free_hours_used(voucher_ids: set[int]) -> dict[int, Decimal]:
    """Net GPU-hours each voucher has covered so far, one query."""
    rows = (
        VoucherLedgerEntry.objects.filter(voucher_id__in=voucher_ids)
        .values("voucher_id", "kind")
        .annotate(hours=Sum("gpu_hours"))
    )
    used: dict[int, Decimal] = {}
    for row in rows:
        sign = 1 if row["kind"] == VoucherLedgerEntry.Kind.RESERVE else -1
        used[row["voucher_id"]] = used.get(row["voucher_id"], ZERO) + sign * row["hours"]
    return used


def voucher_available(voucher: Voucher, year_net: dict) -> Decimal:
    """What ``voucher`` can still pay, in CNY: the least of its programme's remaining budget, its own
    cap less what it spent, and its buyer's yearly cap less this year's net subsidy (``year_net``
    from :func:`buyer_year_net`). Never negative."""
    program = voucher.program
    limits = [program.remaining_budget]
    if voucher.cap is not None:
        limits.append(voucher.cap - voucher.spent)
    if program.cap_per_buyer is not None:
        limits.append(program.cap_per_buyer - year_net.get((program.pk, voucher.buyer_id), ZERO))
    return max(ZERO, min(limits))


def percent_of_rent(program: VoucherProgram) -> Decimal:
    """The share of the rent ``program`` subsidises: its ``percent``, or all of it for free
    GPU-hours (as far as the hours go)."""
    if program.kind == VoucherProgram.Kind.FREE_GPU_HOURS:
        return Decimal(100)
    if program.percent is None:
        # Never for a saved programme: the constraint program_terms_match_kind gives every
        # percent programme its percent.
        raise ValueError(f"voucher programme {program.pk} is a percent programme without a percent")
    return program.percent


def voucher_terms(request: BuyerRequest, year_net: dict, hours_used: dict, *, now: datetime) -> VoucherTerms | None:
    """What the engine may plan as subsidy for ``request`` at ``now``: the programme's percent on
    eligible listings, bounded by every balance that could run out (programme budget, voucher cap,
    the buyer's yearly cap, the per-request spend ceiling, free GPU-hours left at the request's
    price cap). Needs ``voucher__program`` and its eligibility prefetched. Apply re-checks under
    locks.

    None when the voucher cannot pay at ``now`` (``voucher_pays``: e.g. its programme's window has
    closed): the round would reserve nothing, so a planned subsidy would only steer the request to
    where the dead subsidy looked cheapest, at full price."""
    voucher = request.voucher
    if voucher is None or not voucher_pays(voucher, voucher.program, now):
        return None
    program = voucher.program
    percent = percent_of_rent(program)
    limits = [voucher_available(voucher, year_net)]
    if program.kind == VoucherProgram.Kind.FREE_GPU_HOURS:
        hours_left = program.free_gpu_hours - hours_used.get(voucher.pk, ZERO)
        limits.append(hours_left * request.max_price_per_gpu_hour)
    elif program.max_spend is not None:
        limits.append(program.max_spend * percent / 100)
    return VoucherTerms(
        code=voucher.code,
        percent=percent,
        remaining_value=max(ZERO, min(limits)),
        program=program.name,
        eligible_regions=tuple(region.code for region in program.eligible_regions.all()),
        eligible_providers=tuple(provider.pk for provider in program.eligible_providers.all()),
        eligible_gpu_models=tuple(model.code for model in program.eligible_gpu_models.all()),
    )


def vouchers_of(buyer: Organisation, *, voucher_id: int | None = None) -> list[Voucher]:
    """The buyer's vouchers (or just ``voucher_id``, if the buyer's) with ``remaining_value`` set
    (what they can still pay), in four queries."""
    theirs = Voucher.objects.filter(buyer=buyer)
    if voucher_id is not None:
        theirs = theirs.filter(pk=voucher_id)
    vouchers = list(
        theirs.select_related("program")
        .prefetch_related("program__eligible_regions", "program__eligible_gpu_models")
        .order_by("-id")
    )
    year_net = buyer_year_net({(v.program_id, buyer.pk) for v in vouchers}, market_now().year)
    for voucher in vouchers:
        # Not a column: what the API's and the pages' voucher rows show beside the voucher's own.
        voucher.remaining_value = voucher_available(voucher, year_net)  # type: ignore[attr-defined]
    return vouchers


def voucher_programs_for(user, provider) -> QuerySet:
    """Programmes ``user`` manages: staff all, a provider its own promotions, others none."""
    programs = VoucherProgram.objects.select_related("sponsor_provider").prefetch_related(
        "eligible_regions", "eligible_gpu_models", "eligible_providers"
    )
    if user.is_staff:
        return programs
    return programs.filter(sponsor_provider=provider) if provider else programs.none()


@dataclass(frozen=True)
class ProgramReport:
    program: str
    budget: Decimal
    spent: Decimal
    remaining_budget: Decimal
    buyers_served: int
    matches_subsidised: int
    gpu_hours_by_region: dict[str, Decimal]
    west_gpu_hours: Decimal
    west_share: float


def voucher_program_report(program: VoucherProgram) -> ProgramReport:
    """Spend against budget, buyers served, subsidised GPU-hours by region and the western share,
    from the ledger (net of releases), in two queries."""
    rows = (
        VoucherLedgerEntry.objects.filter(program=program)
        .values("kind", "buyer_id", "match_id", "match__listing__region__code", "match__listing__region__is_west")
        .annotate(amount=Sum("amount"), hours=Sum("gpu_hours"))
    )
    net_by_match: dict[int, list] = {}
    for row in rows:
        sign = 1 if row["kind"] == VoucherLedgerEntry.Kind.RESERVE else -1
        entry = net_by_match.setdefault(
            row["match_id"],
            [row["buyer_id"], row["match__listing__region__code"], row["match__listing__region__is_west"], ZERO, ZERO],
        )
        entry[3] += sign * row["amount"]
        entry[4] += sign * row["hours"]
    held = [entry for entry in net_by_match.values() if entry[3] > 0]
    by_region: dict[str, Decimal] = {}
    for _, region, _, _, hours in held:
        by_region[region] = by_region.get(region, ZERO) + hours
    west = sum((hours for _, _, is_west, _, hours in held if is_west), ZERO)
    total = sum(by_region.values(), ZERO)
    return ProgramReport(
        program=program.name,
        budget=program.budget,
        spent=program.budget - program.remaining_budget,
        remaining_budget=program.remaining_budget,
        buyers_served=len({entry[0] for entry in held}),
        matches_subsidised=len(held),
        gpu_hours_by_region=dict(sorted(by_region.items())),
        west_gpu_hours=west,
        west_share=float(west / total) if total else 0.0,
    )


def voucher_ledger_reconciles(program: VoucherProgram) -> bool:
    """The programme's balance equals its budget less the ledger's net reservations."""
    totals = dict(VoucherLedgerEntry.objects.filter(program=program).values_list("kind").annotate(total=Sum("amount")))
    net = totals.get(VoucherLedgerEntry.Kind.RESERVE, ZERO) - totals.get(VoucherLedgerEntry.Kind.RELEASE, ZERO)
    return program.budget - net == program.remaining_budget


def net_reserved_by_match(match_ids: list[int]) -> dict[int, tuple[Decimal, Decimal]]:
    """``{match_id: (amount, gpu_hours)}`` still reserved, for matches holding anything."""
    rows = (
        VoucherLedgerEntry.objects.filter(match_id__in=match_ids)
        .values("match_id", "kind")
        .annotate(amount=Sum("amount"), hours=Sum("gpu_hours"))
    )
    held: dict[int, list[Decimal]] = {}
    for row in rows:
        sign = 1 if row["kind"] == VoucherLedgerEntry.Kind.RESERVE else -1
        entry = held.setdefault(row["match_id"], [ZERO, ZERO])
        entry[0] += sign * row["amount"]
        entry[1] += sign * row["hours"]
    return {match_id: (amount, hours) for match_id, (amount, hours) in held.items() if amount > 0}
