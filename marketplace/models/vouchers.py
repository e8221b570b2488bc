"""Voucher programmes, their codes, and the ledger that reserves and releases subsidy."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from marketplace.bounds import CALENDAR, FREE_GPU_HOURS, VOUCHER_AMOUNT, VOUCHER_SPEND
from marketplace.models.organisations import Organisation
from marketplace.models.reference import GpuModel, Region


class VoucherProgram(models.Model):
    """A sponsor's subsidy scheme: a city's 算力券 or a provider's own promotion.

    ``remaining_budget`` is the programme's balance, changed only under its row lock together with
    a ledger row; ``voucher_reconcile`` checks it against the ledger. Empty eligibility means "any".
    """

    class Kind(models.TextChoices):
        PERCENT = "percent", "percent of rent"
        FREE_GPU_HOURS = "free_gpu_hours", "free GPU-hours"

    name = models.CharField(max_length=200, unique=True)
    sponsor = models.CharField(max_length=200, help_text="who pays: a city government or a provider")
    sponsor_provider = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, null=True, blank=True, related_name="promotions"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PERCENT)
    percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    free_gpu_hours = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    #: CNY one buyer may receive from this programme per calendar year; null: no cap.
    cap_per_buyer = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    budget = models.DecimalField(max_digits=16, decimal_places=4)
    remaining_budget = models.DecimalField(max_digits=16, decimal_places=4)
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    #: Its sponsor paused it: no new subsidy is reserved until it resumes; what is reserved stays.
    paused = models.BooleanField(default=False)
    eligible_regions = models.ManyToManyField(Region, blank=True, related_name="voucher_programs")
    eligible_providers = models.ManyToManyField(Organisation, blank=True, related_name="eligible_programs")
    eligible_gpu_models = models.ManyToManyField(GpuModel, blank=True, related_name="voucher_programs")
    #: Buyers registered in these provinces only; empty: any.
    eligible_buyer_provinces = models.JSONField(default=list, blank=True)
    #: A request must be worth at least this much (gross, at its price cap) to use the programme.
    min_spend = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    #: The subsidy of one request covers at most this much of its gross spend.
    max_spend = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(budget__gt=0), name="program_budget_gt_0"),
            models.CheckConstraint(
                condition=Q(remaining_budget__gte=0) & Q(remaining_budget__lte=F("budget")),
                name="program_balance_within_budget",
            ),
            models.CheckConstraint(
                condition=(Q(kind="percent") & Q(percent__gt=0) & Q(percent__lte=100))
                | (Q(kind="free_gpu_hours") & Q(free_gpu_hours__gt=0)),
                name="program_terms_match_kind",
            ),
            models.CheckConstraint(condition=Q(valid_until__gt=F("valid_from")), name="program_window_ordered"),
            models.CheckConstraint(
                condition=Q(cap_per_buyer__isnull=True) | Q(cap_per_buyer__gt=0), name="program_cap_gt_0"
            ),
            # The domains of marketplace.bounds.
            models.CheckConstraint(
                condition=Q(budget__lte=VOUCHER_AMOUNT.maximum)
                & (Q(cap_per_buyer__isnull=True) | Q(cap_per_buyer__lte=VOUCHER_AMOUNT.maximum))
                & (Q(free_gpu_hours__isnull=True) | Q(free_gpu_hours__lte=FREE_GPU_HOURS.maximum))
                & (Q(min_spend__isnull=True) | Q(min_spend__gte=0, min_spend__lte=VOUCHER_SPEND.maximum))
                & (Q(max_spend__isnull=True) | Q(max_spend__gte=0, max_spend__lte=VOUCHER_SPEND.maximum))
                & Q(valid_from__gte=CALENDAR.first, valid_until__lt=CALENDAR.end),
                name="program_terms_in_domain",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Voucher(models.Model):
    """A code in one programme: issued to one buyer, or claimable once by any eligible buyer.

    ``spent`` is what its matches hold (reserved, less released); ``cap`` bounds it when set.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        REVOKED = "revoked"

    program = models.ForeignKey(VoucherProgram, on_delete=models.PROTECT, related_name="vouchers")
    code = models.CharField(max_length=64, unique=True)
    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, null=True, blank=True, related_name="vouchers")
    cap = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    spent = models.DecimalField(max_digits=16, decimal_places=4, default=Decimal("0"))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(spent__gte=0), name="voucher_spent_gte_0"),
            models.CheckConstraint(
                condition=Q(cap__isnull=True) | Q(spent__lte=F("cap")), name="voucher_balance_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return f"voucher #{self.pk} of {self.program_id}"


class VoucherLedgerEntry(models.Model):
    """One reservation or release of subsidy: the ledger budgets and balances reconcile against."""

    class Kind(models.TextChoices):
        RESERVE = "reserve"
        RELEASE = "release"

    program = models.ForeignKey(VoucherProgram, on_delete=models.PROTECT, related_name="ledger")
    voucher = models.ForeignKey(Voucher, on_delete=models.PROTECT, related_name="ledger")
    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="voucher_ledger")
    match = models.ForeignKey("Match", on_delete=models.PROTECT, null=True, blank=True, related_name="voucher_ledger")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    amount = models.DecimalField(max_digits=16, decimal_places=4)
    #: GPU-hours the amount covers (what free-GPU-hour programmes count down).
    gpu_hours = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "voucher ledger entries"
        indexes = [models.Index(fields=["program", "buyer", "created_at"])]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_amount_gt_0")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} on voucher {self.voucher_id}"
