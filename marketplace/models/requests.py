"""Buyer requests: demand for GPUs near an origin city."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from marketplace.bounds import (
    CALENDAR,
    DURATION_HOURS,
    GPUS_PER_REQUEST,
    LATENCY_WEIGHT,
    MAX_RTT_MS,
    MIN_RELIABILITY,
    PRICE,
)
from marketplace.models.listings import NODE_SIZES
from marketplace.models.organisations import Organisation
from marketplace.models.reference import GpuModel, LlmModel, Region
from marketplace.money import MONEY, SETTLED_AMOUNT
from matching.latency import LatencyClass, rtt_bound_ms


class BuyerRequest(models.Model):
    """Demand: ``replicas`` × ``gpus_per_replica`` GPUs of one model, near ``origin``.

    ``kind`` ``inference`` (docs/inference.md): the buyer asked for output tokens/s of an LLM under a
    TTFT target (:class:`RequestInference`, ``inference``); the engine may serve it with replicas of
    any fitting GPU model. Its ``gpu_model``, ``gpus_per_replica``, ``replicas`` and
    ``max_price_per_gpu_hour`` are then those of its first-choice alternative at submission (the
    shard it is filed under and the bounds its row is checked against); its matches say what served it.
    Its ``matched_replicas`` is its placed share of the target in those first-choice replicas,
    ⌊replicas × min(placed, asked) ÷ asked⌋ tokens/s (``services.plans.inference_placed_state``):
    at most ``replicas``, equal to it exactly when the target is placed; its matches' own replicas,
    of whatever GPU model and size, are not counted in it.
    """

    class Kind(models.TextChoices):
        GPUS = "gpus"
        INFERENCE = "inference"

    class Status(models.TextChoices):
        OPEN = "open"
        PARTIALLY_MATCHED = "partially_matched"
        MATCHED = "matched"
        CANCELLED = "cancelled"
        EXPIRED = "expired"

    OPEN_STATUSES = (Status.OPEN, Status.PARTIALLY_MATCHED)

    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="requests")
    gpu_model = models.ForeignKey(GpuModel, on_delete=models.PROTECT, related_name="requests")
    gpus_per_replica = models.PositiveSmallIntegerField()
    replicas = models.PositiveIntegerField()
    origin = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="requests")
    latency_class = models.CharField(max_length=12, choices=[(c.value, c.value) for c in LatencyClass])
    #: An explicit RTT bound; when null the latency class's bound applies.
    max_rtt_ms = models.DecimalField(max_digits=7, decimal_places=1, null=True, blank=True)
    #: CNY per ms of RTT per GPU-hour; null means the latency class's default.
    latency_weight = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    max_price_per_gpu_hour = models.DecimalField(**MONEY)
    #: The least 30-day reliability (0–1, ``marketplace.reliability``) of a listing it may use; null
    #: for no bound. Any bound rules out listings with too little history.
    min_reliability = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    duration_hours = models.PositiveIntegerField()
    start_by = models.DateTimeField()
    priority = models.SmallIntegerField(default=0)
    #: Interruptible demand: placed after all on-demand demand, on listings offering the tier at a
    #: floor within ``max_price_per_gpu_hour`` (its bid), paying the floor; pre-emptable with notice.
    interruptible = models.BooleanField(default=False)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GPUS)
    voucher = models.ForeignKey("Voucher", on_delete=models.PROTECT, null=True, blank=True, related_name="requests")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    #: What the buyer will run on the GPUs, for the provider's agent to provision ("" when not said).
    workload = models.TextField(blank=True, default="", max_length=2000)
    #: Why the latest round left this request out ("" when it did not): shown to its buyer.
    left_out_reason = models.CharField(max_length=300, blank=True)
    matched_replicas = models.PositiveIntegerField(default=0)
    #: The API key that submitted it (null: a session, a legacy token, or a key since deleted).
    api_key = models.ForeignKey("ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="requests")
    #: The first day of the (UTC, market-time) month whose spend caps it counts against; null for
    #: requests from before spend caps, which count against none.
    spend_month = models.DateField(null=True, blank=True)
    #: CNY it counts against its month's caps: its worst case (``money.worst_case_charge``) while it
    #: may still be matched; once closed, its charges and its live matches' worst cases.
    spend_committed = models.DecimalField(**SETTLED_AMOUNT, default=0)
    #: When it was submitted, in market time (``created_at`` is wall-clock): the look-ahead's holding
    #: counts its call period from it (``matching.lookahead.held``). Null for requests from before
    #: it, which are never held.
    submitted_at = models.DateTimeField(null=True, blank=True)
    #: When the look-ahead last held it for its call (``matching.lookahead.held_until``): the market
    #: time it re-enters the rounds; shown to its buyer while it is open and this is still ahead.
    held_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "buyer request"
        indexes = [
            models.Index(fields=["status", "gpu_model"]),
            models.Index(fields=["buyer", "spend_month"], name="request_buyer_spend_month"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(spend_committed__gte=0), name="request_spend_committed_gte_0"),
            models.CheckConstraint(condition=Q(gpus_per_replica__in=NODE_SIZES), name="request_replica_size_valid"),
            models.CheckConstraint(condition=Q(replicas__gt=0), name="request_replicas_gt_0"),
            models.CheckConstraint(condition=Q(max_price_per_gpu_hour__gt=0), name="request_price_cap_gt_0"),
            models.CheckConstraint(condition=Q(duration_hours__gt=0), name="request_duration_gt_0"),
            models.CheckConstraint(
                condition=Q(max_rtt_ms__isnull=True) | Q(max_rtt_ms__gt=0), name="request_max_rtt_gt_0"
            ),
            models.CheckConstraint(
                condition=Q(latency_weight__isnull=True) | Q(latency_weight__gte=0),
                name="request_latency_weight_gte_0",
            ),
            models.CheckConstraint(
                condition=Q(matched_replicas__lte=F("replicas")), name="request_matched_lte_replicas"
            ),
            models.CheckConstraint(
                condition=Q(min_reliability__isnull=True)
                | Q(min_reliability__gte=MIN_RELIABILITY.minimum, min_reliability__lte=MIN_RELIABILITY.maximum),
                name="request_min_reliability_in_0_1",
            ),
            models.CheckConstraint(
                condition=Q(latency_class__in=[c.value for c in LatencyClass]), name="request_latency_class_valid"
            ),
            models.CheckConstraint(condition=Q(kind__in=["gpus", "inference"]), name="request_kind_valid"),
            # The domains of marketplace.bounds, for every request not yet cancelled or expired.
            models.CheckConstraint(
                condition=Q(status__in=["cancelled", "expired"])
                | (
                    Q(
                        replicas__lte=GPUS_PER_REQUEST.maximum,
                        duration_hours__lte=DURATION_HOURS.maximum,
                        max_price_per_gpu_hour__lte=PRICE.maximum,
                        start_by__gte=CALENDAR.first,
                        start_by__lt=CALENDAR.end,
                    )
                    & (Q(max_rtt_ms__isnull=True) | Q(max_rtt_ms__lte=MAX_RTT_MS.maximum))
                    & (Q(latency_weight__isnull=True) | Q(latency_weight__lte=LATENCY_WEIGHT.maximum))
                ),
                name="request_live_in_domain",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.replicas}×{self.gpus_per_replica} {self.gpu_model_id} from {self.origin_id}"

    @property
    def rtt_bound_ms(self) -> Decimal | None:
        """The RTT bound the engine enforces: the explicit one, else the class's (None: batch)."""
        return rtt_bound_ms(self.max_rtt_ms, self.latency_class)

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def gross_at_cap(self) -> Decimal:
        """The most this request can cost before subsidy: every GPU-hour at its price cap."""
        return self.gpus * self.duration_hours * self.max_price_per_gpu_hour


class RequestInference(models.Model):
    """The inference form of a request (``BuyerRequest.kind`` ``inference``): ``output_tokens_per_second``
    of ``llm_model`` for users at the request's origin, each answer's first token within
    ``ttft_p95_ms`` (network RTT + queueing margin + prefill of ``prompt_tokens``), at most
    ``max_price_per_million_tokens`` CNY per million output tokens (what the buyer pays, subsidy
    deducted). ``gpu_models`` empty: any GPU model; ``precision`` "": any the model is served at.

    ``tokens_per_second_placed`` is what its live and ended matches make (``Match.tokens_per_second``
    summed, at most the target once placed: a replica beyond the target is never placed).
    """

    request = models.OneToOneField(BuyerRequest, on_delete=models.CASCADE, related_name="inference")
    llm_model = models.ForeignKey(LlmModel, on_delete=models.PROTECT, related_name="requests")
    output_tokens_per_second = models.DecimalField(max_digits=10, decimal_places=1)
    prompt_tokens = models.PositiveIntegerField()
    output_tokens = models.PositiveIntegerField()
    ttft_p95_ms = models.DecimalField(max_digits=8, decimal_places=1)
    max_price_per_million_tokens = models.DecimalField(**MONEY)
    precision = models.CharField(max_length=16, blank=True)
    gpu_models = models.ManyToManyField(GpuModel, blank=True, related_name="+")
    tokens_per_second_placed = models.DecimalField(max_digits=12, decimal_places=1, default=Decimal(0))

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(output_tokens_per_second__gt=0), name="inference_tokens_per_second_gt_0"
            ),
            models.CheckConstraint(condition=Q(prompt_tokens__gt=0, output_tokens__gt=0), name="inference_tokens_gt_0"),
            models.CheckConstraint(condition=Q(ttft_p95_ms__gt=0), name="inference_ttft_gt_0"),
            models.CheckConstraint(condition=Q(max_price_per_million_tokens__gt=0), name="inference_price_cap_gt_0"),
            models.CheckConstraint(condition=Q(tokens_per_second_placed__gte=0), name="inference_placed_gte_0"),
        ]

    def __str__(self) -> str:
        return f"request {self.request_id}: {self.llm_model_id} {self.output_tokens_per_second} tokens/s"
