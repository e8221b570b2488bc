"""Voucher programmes, their codes, claims, and the ledger that reserves and releases subsidy.

Balances move only here, each with a ledger row, under row locks taken in one order — programme,
then voucher — so that two rounds or a round and a cancellation never deadlock, and the database
constraints (programme balance ≥ 0, voucher spent ≤ cap) are the last guard against over-spending.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from django.db import transaction
from django.utils.translation import gettext

from marketplace import names, selectors
from marketplace.bounds import FREE_GPU_HOURS, PROGRAMME_TIMES, VOUCHER_AMOUNT, VOUCHER_SPEND
from marketplace.eligibility import voucher_usable
from marketplace.errors import InvalidInput, NotFound
from marketplace.market_time import market_now
from marketplace.models import GpuModel, Organisation, Region, Voucher, VoucherProgram
from marketplace.money import FOUR_PLACES
from marketplace.rule_messages import outside_window

#: 18 random bytes: 144 bits, unguessable; URL-safe so a code can be typed or put in a link.
CODE_BYTES = 18


#: The terms ``program_terms_check`` reads, by field name.
PROGRAM_TERMS = (
    "kind",
    "percent",
    "free_gpu_hours",
    "budget",
    "valid_from",
    "valid_until",
    "cap_per_buyer",
    "min_spend",
    "max_spend",
)


def program_terms_check(
    *,
    kind: str,
    percent: Decimal | None,
    free_gpu_hours: Decimal | None,
    budget: Decimal,
    valid_from: datetime,
    valid_until: datetime,
    cap_per_buyer: Decimal | None = None,
    min_spend: Decimal | None = None,
    max_spend: Decimal | None = None,
    now: datetime | None = None,
) -> None:
    """Raise ``InvalidInput`` naming the field when a programme's terms leave their domains
    (``marketplace.bounds``) or do not hold together."""
    if kind == VoucherProgram.Kind.PERCENT and not (percent is not None and 0 < percent <= 100):
        raise InvalidInput(gettext("A percent programme needs a percent above 0 and at most 100."), field="percent")
    if kind == VoucherProgram.Kind.FREE_GPU_HOURS and not (free_gpu_hours and free_gpu_hours > 0):
        raise InvalidInput(
            gettext("A free GPU-hours programme needs free_gpu_hours above 0."), field="free_gpu_hours"
        )
    if free_gpu_hours is not None and free_gpu_hours > FREE_GPU_HOURS.maximum:
        raise InvalidInput(
            gettext("At most %(max)s GPU-hours.") % {"max": FREE_GPU_HOURS.maximum}, field="free_gpu_hours"
        )
    for field, amount in (("budget", budget), ("cap_per_buyer", cap_per_buyer)):
        if amount is not None and amount <= 0:
            raise InvalidInput(gettext("Must be greater than 0."), field=field)
        if amount is not None and amount > VOUCHER_AMOUNT.maximum:
            raise InvalidInput(gettext("At most %(max)s CNY.") % {"max": VOUCHER_AMOUNT.maximum}, field=field)
    for field, amount in (("min_spend", min_spend), ("max_spend", max_spend)):
        if amount is not None and not VOUCHER_SPEND.minimum <= amount <= VOUCHER_SPEND.maximum:
            raise InvalidInput(
                gettext("Must be between 0 and %(max)s CNY.") % {"max": VOUCHER_SPEND.maximum}, field=field
            )
    if min_spend is not None and max_spend is not None and max_spend < min_spend:
        raise InvalidInput(gettext("Must be at least min_spend."), field="max_spend")
    now = now or market_now()
    for field, value in (("valid_from", valid_from), ("valid_until", valid_until)):
        if value.tzinfo is None:
            raise InvalidInput(gettext("Give the time with its offset, e.g. 2026-12-04T09:00+08:00."), field=field)
        if not PROGRAMME_TIMES.contains(value, now):
            raise InvalidInput(outside_window(PROGRAMME_TIMES, now), field=field)
    if valid_until <= valid_from:
        raise InvalidInput(gettext("Must be after valid_from."), field="valid_until")


@transaction.atomic
def voucher_program_create(
    *,
    name: str,
    sponsor: str | None = None,
    budget: Decimal,
    valid_from: datetime,
    valid_until: datetime,
    kind: str = VoucherProgram.Kind.PERCENT,
    percent: Decimal | None = None,
    free_gpu_hours: Decimal | None = None,
    cap_per_buyer: Decimal | None = None,
    sponsor_provider: Organisation | None = None,
    eligible_regions: Sequence[Region] = (),
    eligible_providers: Sequence[Organisation] = (),
    eligible_gpu_models: Sequence[GpuModel] = (),
    eligible_buyer_provinces: Sequence[str] = (),
    min_spend: Decimal | None = None,
    max_spend: Decimal | None = None,
) -> VoucherProgram:
    """Create a programme with its whole budget remaining.

    A provider's promotion (``sponsor_provider`` set) only ever subsidises that provider's listings,
    and its sponsor is that provider (``program_sponsor``). Its name, sponsor and provinces follow
    ``marketplace.names``, and its name may not look like another programme's.
    """
    name = names.name_check(name, field="name")
    sponsor = program_sponsor(sponsor=sponsor, sponsor_provider=sponsor_provider)
    eligible_buyer_provinces = [
        names.name_check(province, field="eligible_buyer_provinces") for province in eligible_buyer_provinces
    ]
    program_terms_check(
        kind=kind,
        percent=percent,
        free_gpu_hours=free_gpu_hours,
        budget=budget,
        valid_from=valid_from,
        valid_until=valid_until,
        cap_per_buyer=cap_per_buyer,
        min_spend=min_spend,
        max_spend=max_spend,
    )
    if VoucherProgram.objects.filter(name=name).exists():
        raise InvalidInput(gettext("A programme with this name exists."), field="name")
    names.lookalike_check(name, existing=selectors.voucher_program_names_in_use(), field="name")
    if sponsor_provider is not None:
        eligible_providers = [sponsor_provider]
    program = VoucherProgram.objects.create(
        name=name,
        sponsor=sponsor,
        sponsor_provider=sponsor_provider,
        kind=kind,
        percent=percent if kind == VoucherProgram.Kind.PERCENT else None,
        free_gpu_hours=free_gpu_hours if kind == VoucherProgram.Kind.FREE_GPU_HOURS else None,
        cap_per_buyer=cap_per_buyer,
        budget=budget,
        remaining_budget=budget,
        valid_from=valid_from,
        valid_until=valid_until,
        eligible_buyer_provinces=list(eligible_buyer_provinces),
        min_spend=min_spend,
        max_spend=max_spend,
    )
    program.eligible_regions.set(eligible_regions)
    program.eligible_providers.set(eligible_providers)
    program.eligible_gpu_models.set(eligible_gpu_models)
    return program


@transaction.atomic
def voucher_program_update(*, program_id: int, sponsor_provider: Organisation | None, changes: dict) -> VoucherProgram:
    """Rename (under ``marketplace.names``' rules), move the window, top up / cut the budget
    (never below what is already spent), or pause / resume (``paused``: while paused, no round
    reserves new subsidy from it, ``eligibility.voucher_pays``; what is reserved stays)."""
    program = _locked_program(program_id=program_id, sponsor_provider=sponsor_provider)
    if "name" in changes:
        others = selectors.voucher_program_names_in_use(excluding_id=program.pk)
        changes = {**changes, "name": names.distinct_name_check(changes["name"], existing=others, field="name")}
    if "budget" in changes:
        spent = program.budget - program.remaining_budget
        if changes["budget"] < spent:
            raise InvalidInput(
                gettext("%(spent)s CNY is already reserved; the budget cannot go below it.") % {"spent": spent},
                field="budget",
            )
        program.remaining_budget = changes["budget"] - spent
    for field, value in changes.items():
        setattr(program, field, value)
    program_terms_check(**{field: getattr(program, field) for field in PROGRAM_TERMS})
    program.save(update_fields=[*changes, "remaining_budget"])
    return program


def program_sponsor(*, sponsor: str | None, sponsor_provider: Organisation | None) -> str:
    """Who pays for a programme, as its ``sponsor`` will say.

    A provider's promotion is paid by the provider, and says so: ``sponsor`` may be left out or
    name the provider, and any other sponsor is ``InvalidInput`` on ``sponsor`` (a provider claimed
    "Shanghai Municipal Government"). Only staff (no ``sponsor_provider``) name other sponsors.
    """
    if sponsor_provider is None:
        if not sponsor:
            raise InvalidInput(gettext("Name who pays for the programme."), field="sponsor")
        return names.name_check(sponsor, field="sponsor")
    if sponsor is not None and names.name_check(sponsor, field="sponsor") != sponsor_provider.name:
        raise InvalidInput(
            gettext('A promotion is sponsored by its provider: leave sponsor out, or give "%(name)s".')
            % {"name": sponsor_provider.name},
            field="sponsor",
        )
    return sponsor_provider.name


def _locked_program(*, program_id: int, sponsor_provider: Organisation | None) -> VoucherProgram:
    """The programme under its row lock; a provider sees only its own promotions (None: staff)."""
    programs = VoucherProgram.objects.select_for_update(no_key=True)
    if sponsor_provider is not None:
        programs = programs.filter(sponsor_provider=sponsor_provider)
    program = programs.filter(pk=program_id).first()
    if program is None:
        raise NotFound(gettext("No such programme."), field="id")
    return program


@transaction.atomic
def vouchers_issue(
    *,
    program_id: int,
    sponsor_provider: Organisation | None,
    count: int = 1,
    buyer: Organisation | None = None,
    cap: Decimal | None = None,
) -> list[Voucher]:
    """Issue ``count`` codes: to ``buyer``, or (no buyer) each claimable once by any eligible buyer."""
    program = _locked_program(program_id=program_id, sponsor_provider=sponsor_provider)
    if not 1 <= count <= 1000:
        raise InvalidInput(gettext("Issue between 1 and 1000 codes at a time."), field="count")
    if buyer is not None and buyer.kind != Organisation.Kind.BUYER:
        raise InvalidInput(gettext("Vouchers are issued to buyers."), field="buyer")
    if cap is not None and cap <= 0:
        raise InvalidInput(gettext("Must be greater than 0."), field="cap")
    now = market_now() if buyer is not None else None
    vouchers = [
        Voucher(program=program, code=secrets.token_urlsafe(CODE_BYTES), buyer=buyer, cap=cap, claimed_at=now)
        for _ in range(count)
    ]
    return Voucher.objects.bulk_create(vouchers)


@transaction.atomic
def voucher_claim(*, code: str, buyer: Organisation, now: datetime | None = None, field: str = "code") -> Voucher:
    """Make ``code`` the buyer's; claiming one's own voucher again changes nothing.

    Raises ``InvalidInput`` on ``field`` saying which: unknown, revoked, another buyer's, not yet
    valid, expired, exhausted, or the buyer is not eligible (``marketplace.eligibility``).
    """
    now = now or market_now()
    voucher = voucher_usable(code=code, buyer=buyer, now=now, field=field, lock=True)
    if voucher.buyer_id is None:
        voucher.buyer, voucher.claimed_at = buyer, now
        voucher.save(update_fields=["buyer", "claimed_at"])
    return voucher


def quantize_down(value: Decimal) -> Decimal:
    """Money to 0.0001 CNY, rounding down: a subsidy is never rounded up past what was reserved."""
    return value.quantize(FOUR_PLACES, rounding=ROUND_DOWN)
