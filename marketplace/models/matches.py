"""Matches (replicas of a request on a listing) and their one settlement line each."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from marketplace.models.listings import Listing
from marketplace.models.organisations import Organisation
from marketplace.models.requests import BuyerRequest
from marketplace.models.runs import MatchingRun
from marketplace.models.vouchers import VoucherProgram
from marketplace.money import MONEY
from matching.latency import LatencyClass

#: Settlement lines are whole fen, so their sums agree exactly; the constraints below compare within
#: less than half a fen so that no rounding of the comparison itself can trip them.
HALF_FEN = Decimal("0.004")


class Match(models.Model):
    """Replicas of one request placed on one listing, with their cost breakdown and reasons."""

    class Status(models.TextChoices):
        RESERVED = "reserved"
        RUNNING = "running"
        COMPLETED = "completed"
        CANCELLED = "cancelled"
        FAILED = "failed"
        #: An interruptible match stopped, after its notice, for on-demand demand.
        PREEMPTED = "preempted"

    LIVE_STATUSES = (Status.RESERVED, Status.RUNNING)

    request = models.ForeignKey(BuyerRequest, on_delete=models.PROTECT, related_name="matches")
    listing = models.ForeignKey(Listing, on_delete=models.PROTECT, related_name="matches")
    run = models.ForeignKey(MatchingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="matches")
    replicas = models.PositiveIntegerField()
    gpus_per_replica = models.PositiveSmallIntegerField()
    gpus = models.PositiveIntegerField()
    #: Node index of each replica on the listing (a replica lives on one node).
    nodes = models.JSONField(default=list)
    price_per_gpu_hour = models.DecimalField(**MONEY)
    subsidy_per_gpu_hour = models.DecimalField(**MONEY, default=Decimal("0"))
    #: The voucher whose programme paid the subsidy (reserved in the ledger when the match was made).
    voucher = models.ForeignKey("Voucher", on_delete=models.PROTECT, null=True, blank=True, related_name="matches")
    energy_cost_per_gpu_hour = models.DecimalField(**MONEY)
    cost_per_gpu_hour = models.DecimalField(**MONEY)
    rtt_ms = models.DecimalField(max_digits=7, decimal_places=1)
    latency_class = models.CharField(max_length=12, choices=[(c.value, c.value) for c in LatencyClass])
    explanation = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RESERVED)
    #: Why the match ended as it did ("node 3 of listing 12 failed", "cancelled by the buyer").
    status_reason = models.CharField(max_length=300, blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    #: Market time the match began running: when its provider's agent said ready (an agent-driven
    #: listing), or its planned start when the clock started it. Metering starts here (never before
    #: ``starts_at``); null while it has not run.
    ready_at = models.DateTimeField(null=True, blank=True)
    #: Where the buyer reaches the running match: an https URL its provider's agent gave at ready.
    #: Shown to the buyer only.
    endpoint = models.CharField(max_length=500, blank=True)
    #: The agent's note at ready ("vLLM 0.6 on 2×8 H20"), for the record.
    ready_note = models.CharField(max_length=300, blank=True)
    #: Market time an interruptible match's pre-emption notice ends (the round that pre-empted it
    #: set it); the lifecycle tick then ends it as ``preempted``. Null: not pre-empted.
    preempt_at = models.DateTimeField(null=True, blank=True)
    #: An inference request's match (null on a GPU-form request's): what its replicas serve at
    #: ``precision`` — output tokens/s (all replicas), the estimated TTFT (network RTT + queueing
    #: margin + prefill) and what the buyer pays per million output tokens, subsidy deducted.
    precision = models.CharField(max_length=16, blank=True)
    tokens_per_second = models.DecimalField(max_digits=12, decimal_places=1, null=True, blank=True)
    ttft_ms = models.DecimalField(max_digits=8, decimal_places=1, null=True, blank=True)
    price_per_million_tokens = models.DecimalField(**MONEY, null=True, blank=True)
    #: When it actually stopped holding its GPUs (completed, cancelled or failed); null while live.
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "matches"
        indexes = [models.Index(fields=["listing", "status"])]
        constraints = [
            models.CheckConstraint(condition=Q(replicas__gt=0), name="match_replicas_gt_0"),
            models.CheckConstraint(
                condition=Q(gpus=F("replicas") * F("gpus_per_replica")), name="match_gpus_consistent"
            ),
            models.CheckConstraint(condition=Q(price_per_gpu_hour__gt=0), name="match_price_gt_0"),
            models.CheckConstraint(
                condition=Q(subsidy_per_gpu_hour__gte=0) & Q(subsidy_per_gpu_hour__lte=F("price_per_gpu_hour")),
                name="match_subsidy_within_price",
            ),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="match_window_ordered"),
            models.CheckConstraint(
                condition=Q(subsidy_per_gpu_hour=0) | Q(voucher__isnull=False), name="match_subsidy_has_voucher"
            ),
        ]

    def __str__(self) -> str:
        return f"match #{self.pk}: request {self.request_id} → listing {self.listing_id}"


class Settlement(models.Model):
    """What one ended match costs and pays, to the fen: its line in both parties' statements.

    One per match (nothing is billed twice). gross = subsidy + buyer_pays + sla_credit =
    platform_fee + provider_earns + sla_credit; the rounding rules are in ``marketplace.money``.
    """

    match = models.OneToOneField(Match, on_delete=models.PROTECT, related_name="settlement")
    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="buyer_settlements")
    provider = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="provider_settlements")
    program = models.ForeignKey(VoucherProgram, on_delete=models.PROTECT, null=True, blank=True)
    settled_at = models.DateTimeField(help_text="market time the match ended")
    gpu_hours = models.DecimalField(max_digits=14, decimal_places=4)
    price_per_gpu_hour = models.DecimalField(**MONEY)
    gross = models.DecimalField(max_digits=16, decimal_places=2)
    subsidy = models.DecimalField(max_digits=16, decimal_places=2)
    buyer_pays = models.DecimalField(max_digits=16, decimal_places=2)
    platform_fee = models.DecimalField(max_digits=16, decimal_places=2)
    provider_earns = models.DecimalField(max_digits=16, decimal_places=2)
    #: What the buyer gets back because capacity failed under the running match
    #: (``money.sla_credit``): taken off what the buyer pays and off what the provider earns.
    sla_credit = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))

    class Meta:
        ordering = ["settled_at", "id"]
        indexes = [models.Index(fields=["buyer", "settled_at"]), models.Index(fields=["provider", "settled_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(gpu_hours__gte=0), name="settlement_hours_gte_0"),
            models.CheckConstraint(
                condition=Q(
                    subsidy__gte=0, buyer_pays__gte=0, platform_fee__gte=0, provider_earns__gte=0, sla_credit__gte=0
                ),
                name="settlement_amounts_gte_0",
            ),
            # Sums compared within half a fen: amounts have 2 places, so this is equality, and it
            # also holds on SQLite, which stores decimals as floats.
            models.CheckConstraint(
                condition=Q(buyer_pays__gte=F("gross") - F("subsidy") - F("sla_credit") - HALF_FEN)
                & Q(buyer_pays__lte=F("gross") - F("subsidy") - F("sla_credit") + HALF_FEN),
                name="settlement_buyer_side",
            ),
            models.CheckConstraint(
                condition=Q(provider_earns__gte=F("gross") - F("platform_fee") - F("sla_credit") - HALF_FEN)
                & Q(provider_earns__lte=F("gross") - F("platform_fee") - F("sla_credit") + HALF_FEN),
                name="settlement_provider_side",
            ),
        ]

    def __str__(self) -> str:
        return f"settlement of match {self.match_id}: {self.gross} CNY"
