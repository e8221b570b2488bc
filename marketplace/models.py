"""The marketplace's data, in the vocabulary of DESIGN.md.

Models hold fields and database constraints only: every write goes through ``services`` and every
read that a page or the engine needs goes through ``selectors``. Money is ``Decimal`` CNY.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Mod
from django.db.models.lookups import Exact

from marketplace.money import MONEY
from matching.latency import LatencyClass, rtt_bound_ms

NODE_SIZES = (1, 2, 4, 8)
NODE_SIZE_CHOICES = [(size, str(size)) for size in NODE_SIZES]
HALF_FEN = Decimal("0.004")


class Region(models.Model):
    """A data-centre hub or a demand city."""

    class Kind(models.TextChoices):
        HUB = "hub", "data-centre hub"
        CITY = "city", "demand city"
        BOTH = "both", "hub and demand city"

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    name_zh = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    province = models.CharField(max_length=100)
    lat = models.FloatField()
    lon = models.FloatField()
    power_price_cny_kwh = models.DecimalField(max_digits=6, decimal_places=4)
    pue = models.DecimalField(max_digits=4, decimal_places=2)
    #: Western resource-side hubs (cheap power, far from eastern users).
    is_west = models.BooleanField(default=False)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(power_price_cny_kwh__gt=0), name="region_power_price_gt_0"),
            models.CheckConstraint(condition=Q(pue__gte=1), name="region_pue_gte_1"),
            models.CheckConstraint(condition=Q(lat__gte=-90, lat__lte=90), name="region_lat_range"),
            models.CheckConstraint(condition=Q(lon__gte=-180, lon__lte=180), name="region_lon_range"),
        ]

    def __str__(self) -> str:
        return self.code


class Rtt(models.Model):
    """Round-trip latency from one region to another; a measured value overrides the estimate."""

    class Source(models.TextChoices):
        ESTIMATED = "estimated"
        MEASURED = "measured"

    source_region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="rtts_out")
    target_region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="rtts_in")
    rtt_ms = models.DecimalField(max_digits=7, decimal_places=1)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.ESTIMATED)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "RTT"
        ordering = ["source_region", "rtt_ms"]
        constraints = [
            models.UniqueConstraint(fields=["source_region", "target_region"], name="rtt_unique_pair"),
            models.CheckConstraint(condition=Q(rtt_ms__gt=0), name="rtt_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.source_region_id}→{self.target_region_id}: {self.rtt_ms} ms"


class GpuModel(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    vram_gb = models.PositiveIntegerField()
    tdp_w = models.PositiveIntegerField()
    indicative_price_per_gpu_hour = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["code"]
        verbose_name = "GPU model"
        constraints = [
            models.CheckConstraint(condition=Q(vram_gb__gt=0), name="gpumodel_vram_gt_0"),
            models.CheckConstraint(condition=Q(tdp_w__gt=0), name="gpumodel_tdp_gt_0"),
        ]

    def __str__(self) -> str:
        return self.code


class Organisation(models.Model):
    """A provider (data-centre operator) or a buyer (model builder, app company)."""

    class Kind(models.TextChoices):
        PROVIDER = "provider"
        BUYER = "buyer"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    #: Where the organisation is registered: city voucher programmes are for local buyers.
    province = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """Ties a user to the one organisation it acts for."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="members")

    def __str__(self) -> str:
        return f"{self.user} @ {self.organisation}"


class Listing(models.Model):
    """A provider's idle capacity: ``gpu_count`` GPUs on nodes of ``gpus_per_node``."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        WITHDRAWN = "withdrawn"
        CLOSED = "closed"

    provider = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="listings")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="listings")
    gpu_model = models.ForeignKey(GpuModel, on_delete=models.PROTECT, related_name="listings")
    gpu_count = models.PositiveIntegerField()
    gpus_per_node = models.PositiveSmallIntegerField()
    #: GPUs held by live matches; changed only with F() under a row lock, never read-modify-write.
    allocated_gpus = models.PositiveIntegerField(default=0)
    #: Node indices the provider marked failed: they hold nothing and are offered to nobody.
    failed_nodes = models.JSONField(default=list, blank=True)
    price_per_gpu_hour = models.DecimalField(**MONEY)
    available_from = models.DateTimeField()
    available_until = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["gpu_model", "status", "region"])]
        constraints = [
            models.CheckConstraint(condition=Q(gpu_count__gt=0), name="listing_gpu_count_gt_0"),
            models.CheckConstraint(condition=Q(gpus_per_node__in=NODE_SIZES), name="listing_node_size_valid"),
            models.CheckConstraint(
                condition=Exact(Mod(F("gpu_count"), F("gpus_per_node")), 0),
                name="listing_nodes_divide_count",
            ),
            models.CheckConstraint(condition=Q(price_per_gpu_hour__gt=0), name="listing_price_gt_0"),
            models.CheckConstraint(condition=Q(available_until__gt=F("available_from")), name="listing_window_ordered"),
            models.CheckConstraint(condition=Q(allocated_gpus__lte=F("gpu_count")), name="listing_allocated_lte_count"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.gpu_count}×{self.gpu_model_id} @ {self.region_id}"

    @property
    def free_gpus(self) -> int:
        return self.gpu_count - self.allocated_gpus

    @property
    def node_count(self) -> int:
        return self.gpu_count // self.gpus_per_node


class BuyerRequest(models.Model):
    """Demand: ``replicas`` × ``gpus_per_replica`` GPUs of one model, near ``origin``."""

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
    duration_hours = models.PositiveIntegerField()
    start_by = models.DateTimeField()
    priority = models.SmallIntegerField(default=0)
    voucher = models.ForeignKey("Voucher", on_delete=models.PROTECT, null=True, blank=True, related_name="requests")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    matched_replicas = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "buyer request"
        indexes = [models.Index(fields=["status", "gpu_model"])]
        constraints = [
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
                condition=Q(latency_class__in=[c.value for c in LatencyClass]), name="request_latency_class_valid"
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


class MatchingRun(models.Model):
    """One execution of the engine over one shard: inputs, solver, objective, timings, outcome."""

    class Trigger(models.TextChoices):
        COMMIT = "commit"
        SWEEP = "sweep"
        MANUAL = "manual"

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    shard = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    solver = models.CharField(max_length=64, blank=True)
    request_count = models.PositiveIntegerField(default=0)
    listing_count = models.PositiveIntegerField(default=0)
    objective = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    lower_bound = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    gap = models.FloatField(null=True, blank=True)
    served_replicas = models.PositiveIntegerField(default=0)
    unserved_replicas = models.PositiveIntegerField(default=0)
    #: [{"request": id, "replicas": n, "reason": "..."}] for what the round could not place.
    unserved = models.JSONField(default=list, blank=True)
    #: Milliseconds per phase: snapshot, solve, apply.
    timings_ms = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("started_at")),
                name="run_finished_after_started",
            ),
        ]
        # Each round looks for its shard's runs left running by a dead worker; only running runs are
        # indexed, so the index stays as small as the number of rounds in flight.
        indexes = [
            models.Index(fields=["shard"], condition=Q(status="running"), name="run_running_by_shard"),
        ]

    def __str__(self) -> str:
        return f"run #{self.pk} ({self.trigger}, {self.status})"


class Match(models.Model):
    """Replicas of one request placed on one listing, with their cost breakdown and reasons."""

    class Status(models.TextChoices):
        RESERVED = "reserved"
        RUNNING = "running"
        COMPLETED = "completed"
        CANCELLED = "cancelled"
        FAILED = "failed"

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


class MarketClock(models.Model):
    """The market's time: real (or frozen) time plus an offset that ``manage.py advance_clock``
    moves forward, so that tests and demos can run a day in seconds. One row."""

    offset_seconds = models.BigIntegerField(default=0)
    #: When set, the market ignores real time and stands at this instant (plus the offset): a
    #: simulation run as fast as possible then repeats to the last digit.
    frozen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(offset_seconds__gte=0), name="clock_never_goes_back")]

    def __str__(self) -> str:
        return f"market clock +{self.offset_seconds} s"


class Settlement(models.Model):
    """What one ended match costs and pays, to the fen: its line in both parties' statements.

    One per match (nothing is billed twice). gross = subsidy + buyer_pays = platform_fee +
    provider_earns; the rounding rules are in ``marketplace.money``.
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

    class Meta:
        ordering = ["settled_at", "id"]
        indexes = [models.Index(fields=["buyer", "settled_at"]), models.Index(fields=["provider", "settled_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(gpu_hours__gte=0), name="settlement_hours_gte_0"),
            models.CheckConstraint(
                condition=Q(subsidy__gte=0, buyer_pays__gte=0, platform_fee__gte=0, provider_earns__gte=0),
                name="settlement_amounts_gte_0",
            ),
            # Sums compared within half a fen: amounts have 2 places, so this is equality, and it
            # also holds on SQLite, which stores decimals as floats.
            models.CheckConstraint(
                condition=Q(buyer_pays__gte=F("gross") - F("subsidy") - HALF_FEN)
                & Q(buyer_pays__lte=F("gross") - F("subsidy") + HALF_FEN),
                name="settlement_buyer_side",
            ),
            models.CheckConstraint(
                condition=Q(provider_earns__gte=F("gross") - F("platform_fee") - HALF_FEN)
                & Q(provider_earns__lte=F("gross") - F("platform_fee") + HALF_FEN),
                name="settlement_provider_side",
            ),
        ]

    def __str__(self) -> str:
        return f"settlement of match {self.match_id}: {self.gross} CNY"


class IdempotencyKey(models.Model):
    """A client's ``Idempotency-Key`` on a creating POST and the response it got, replayed when
    the same key comes again (as Stripe does it). One row per (user, key): the unique constraint
    decides which of many concurrent attempts does the work."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress"
        DONE = "done"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    #: Method, path and a hash of the body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=State.choices, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key} ({self.state})"
