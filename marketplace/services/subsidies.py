"""Reserving voucher subsidy for new matches and releasing it when they are cancelled.

The engine plans subsidies against a snapshot; only what :class:`SubsidyBook` reserves here, under
the programmes' and vouchers' row locks, is ever paid: a subsidy the remaining budget cannot cover
is cut (to zero if need be), so no match carries a subsidy that was not reserved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import F

from marketplace.eligibility import voucher_pays
from marketplace.models import Match, Voucher, VoucherLedgerEntry, VoucherProgram
from marketplace.selectors.vouchers import buyer_year_net, free_hours_used, voucher_available
from marketplace.services.events import programs_budget_low_publish
from marketplace.services.locking import rows_locked
from marketplace.services.vouchers import quantize_down

ZERO = Decimal("0")


@dataclass
class Take:
    """A reservation decided for one match, written once the match has its id."""

    voucher: Voucher
    buyer_id: int
    amount: Decimal
    gpu_hours: Decimal

    @classmethod
    def of(cls, voucher: Voucher, *, amount: Decimal, gpu_hours: Decimal) -> Take:
        """A take from ``voucher`` on behalf of the buyer who claimed it. Only a claimed voucher
        reserves (``voucher_pays``) and a claim is never undone, so a voucher that reserves or
        releases subsidy always has its buyer."""
        if voucher.buyer_id is None:
            raise ValueError(f"voucher #{voucher.pk} is not claimed: it cannot reserve or release subsidy")
        return cls(voucher=voucher, buyer_id=voucher.buyer_id, amount=amount, gpu_hours=gpu_hours)


@dataclass
class SubsidyBook:
    """Balances of the vouchers a plan draws on, locked for the caller's transaction.

    Precondition: called inside a transaction. Locks programmes, then vouchers, each in id order.
    """

    now: datetime
    programs: dict[int, VoucherProgram] = field(default_factory=dict)
    vouchers: dict[int, Voucher] = field(default_factory=dict)
    year_net: dict[tuple[int, int], Decimal] = field(default_factory=dict)
    hours_used: dict[int, Decimal] = field(default_factory=dict)
    by_request: dict[int, Decimal] = field(default_factory=dict)

    @classmethod
    def locked(cls, voucher_ids: set[int], now: datetime) -> SubsidyBook:
        book = cls(now=now)
        if not voucher_ids:
            return book
        program_ids = set(Voucher.objects.filter(pk__in=voucher_ids).values_list("program_id", flat=True))
        book.programs = rows_locked(VoucherProgram, program_ids)
        book.vouchers = rows_locked(Voucher, voucher_ids)
        for voucher in book.vouchers.values():
            # One programme object per programme: every voucher of it sees what the others took in
            # this round (its remaining budget falls with each take), not a copy of its own.
            voucher.program = book.programs[voucher.program_id]
        pairs = {(v.program_id, v.buyer_id) for v in book.vouchers.values() if v.buyer_id}
        book.year_net = buyer_year_net(pairs, now.year)
        book.hours_used = free_hours_used(voucher_ids)
        return book

    def take(
        self, *, voucher_id: int, request_id: int, price: Decimal, planned_per_gpu_hour: Decimal, gpu_hours: int
    ) -> tuple[Decimal, Take | None]:
        """The subsidy per GPU-hour this match may carry (≤ planned), and its reservation."""
        voucher = self.vouchers[voucher_id]
        program = self.programs[voucher.program_id]
        if planned_per_gpu_hour <= 0 or not self._usable(voucher, program):
            return ZERO, None
        hours = Decimal(gpu_hours)
        wanted, covered_hours = self._wanted(voucher, program, price, planned_per_gpu_hour, hours, request_id)
        per_hour = quantize_down(min(wanted, voucher_available(voucher, self.year_net)) / hours)
        amount = per_hour * hours
        if amount <= 0:
            return ZERO, None
        self._spend(voucher, program, request_id, amount, covered_hours)
        return per_hour, Take.of(voucher, amount=amount, gpu_hours=covered_hours)

    def _usable(self, voucher: Voucher, program: VoucherProgram) -> bool:
        return voucher_pays(voucher, program, self.now)

    def _wanted(self, voucher, program, price, planned, hours, request_id) -> tuple[Decimal, Decimal]:
        """What the terms allow for this match before balances: (CNY, GPU-hours covered)."""
        if program.kind == VoucherProgram.Kind.FREE_GPU_HOURS:
            left = max(ZERO, program.free_gpu_hours - self.hours_used.get(voucher.pk, ZERO))
            covered = min(hours, left)
            return min(planned * hours, covered * price), covered
        wanted = min(planned, quantize_down(price * program.percent / 100)) * hours
        if program.max_spend is not None:
            ceiling = program.max_spend * program.percent / 100 - self.by_request.get(request_id, ZERO)
            wanted = min(wanted, max(ZERO, ceiling))
        return wanted, hours

    def _spend(self, voucher, program, request_id, amount, covered_hours) -> None:
        program.remaining_budget -= amount
        voucher.spent += amount
        key = (program.pk, voucher.buyer_id)
        self.year_net[key] = self.year_net.get(key, ZERO) + amount
        self.hours_used[voucher.pk] = self.hours_used.get(voucher.pk, ZERO) + covered_hours
        self.by_request[request_id] = self.by_request.get(request_id, ZERO) + amount

    def write(self, takes: list[tuple[Match, Take]]) -> None:
        """Ledger rows for ``takes`` (matches saved) and the balances, with F() on the locked rows."""
        _ledger_write(takes, VoucherLedgerEntry.Kind.RESERVE)
        programs_budget_low_publish({take.voucher.program_id for _, take in takes}, now=self.now)


def write_releases(releases: list[tuple[Match, Take]]) -> None:
    """Ledger rows giving back ``releases`` and the balances, with F() on the locked rows.

    Precondition: inside a transaction, the programmes and vouchers locked (``SubsidyBook.locked``).
    """
    _ledger_write(releases, VoucherLedgerEntry.Kind.RELEASE)


def _ledger_write(takes: list[tuple[Match, Take]], kind: str) -> None:
    VoucherLedgerEntry.objects.bulk_create(
        VoucherLedgerEntry(
            program_id=take.voucher.program_id,
            voucher=take.voucher,
            buyer_id=take.buyer_id,
            match=match,
            kind=kind,
            amount=take.amount,
            gpu_hours=take.gpu_hours,
        )
        for match, take in takes
    )
    _apply_totals(takes, sign=1 if kind == VoucherLedgerEntry.Kind.RESERVE else -1)


def _apply_totals(takes: list[tuple[Match, Take]], *, sign: int) -> None:
    by_program: dict[int, Decimal] = {}
    by_voucher: dict[int, Decimal] = {}
    for _, take in takes:
        by_program[take.voucher.program_id] = by_program.get(take.voucher.program_id, ZERO) + take.amount
        by_voucher[take.voucher.pk] = by_voucher.get(take.voucher.pk, ZERO) + take.amount
    for program_id, amount in sorted(by_program.items()):
        VoucherProgram.objects.filter(pk=program_id).update(remaining_budget=F("remaining_budget") - sign * amount)
    for voucher_id, amount in sorted(by_voucher.items()):
        Voucher.objects.filter(pk=voucher_id).update(spent=F("spent") + sign * amount)
