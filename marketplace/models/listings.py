"""Listings: a provider's idle capacity in one region."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Mod
from django.db.models.lookups import Exact

from marketplace.bounds import CALENDAR, GPU_COUNT, PRICE
from marketplace.models.organisations import Organisation
from marketplace.models.reference import GpuModel, LlmModel, Region
from marketplace.money import MONEY

NODE_SIZES = (1, 2, 4, 8)
NODE_SIZE_CHOICES = [(size, str(size)) for size in NODE_SIZES]


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
    #: The lowest price at which idle GPUs are sold as interruptible (pre-empted by on-demand
    #: demand, with notice); null: the listing does not offer the tier (matching.interruptible).
    interruptible_floor_price_per_gpu_hour = models.DecimalField(**MONEY, null=True, blank=True)
    available_from = models.DateTimeField()
    available_until = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    #: When (real time) a provider agent first sent a heartbeat for it: from then on the listing is
    #: agent-driven (its matches run when the agent says ready, its nodes fail when heartbeats stop);
    #: null: clock-driven, as every listing was before agents (matches run at their planned start).
    agent_since = models.DateTimeField(null=True, blank=True)
    #: Why the latest round left this listing out ("" when it did not): shown to its provider.
    left_out_reason = models.CharField(max_length=300, blank=True)
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
            # The tier sells idle GPUs below list: its floor is above 0 and at most the listing's price.
            models.CheckConstraint(
                condition=Q(interruptible_floor_price_per_gpu_hour__isnull=True)
                | Q(interruptible_floor_price_per_gpu_hour__gt=0)
                & Q(interruptible_floor_price_per_gpu_hour__lte=F("price_per_gpu_hour")),
                name="listing_interruptible_floor_within_price",
            ),
            models.CheckConstraint(condition=Q(allocated_gpus__lte=F("gpu_count")), name="listing_allocated_lte_count"),
            # The domains of marketplace.bounds, for every listing on offer (a closed or withdrawn
            # row keeps what it had): no row past the API can put year 9999 or a slipped decimal
            # point into a round.
            models.CheckConstraint(
                condition=~Q(status="active")
                | Q(
                    gpu_count__lte=GPU_COUNT.maximum,
                    price_per_gpu_hour__lte=PRICE.maximum,
                    available_from__gte=CALENDAR.first,
                    available_until__lt=CALENDAR.end,
                ),
                name="listing_on_offer_in_domain",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.gpu_count}×{self.gpu_model_id} @ {self.region_id}"

    @property
    def node_count(self) -> int:
        return self.gpu_count // self.gpus_per_node

    @property
    def driven_by(self) -> str:
        return driven_by(self.agent_since)


def driven_by(agent_since) -> str:
    """What moves a listing's matches, from its ``agent_since``: ``agent`` once a provider agent
    has sent a heartbeat for it, else ``clock``."""
    return "clock" if agent_since is None else "agent"


class NodeHeartbeat(models.Model):
    """The last heartbeat a provider agent sent for one node of a listing (one row per node).

    Times are real (wall-clock) UTC, not market time: a heartbeat measures a live process, and the
    market clock can be advanced or frozen by simulations and demos.
    """

    class Health(models.TextChoices):
        OK = "ok"
        FAILED = "failed"
        #: Written by the sweep when it fails the node for its silence (agents send ok or failed).
        SILENT = "silent"

    #: What an agent may report.
    REPORTED = (Health.OK, Health.FAILED)

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="node_heartbeats")
    node = models.PositiveSmallIntegerField()
    health = models.CharField(max_length=6, choices=Health.choices)
    #: When the latest heartbeat for the node arrived, whatever it said.
    seen_at = models.DateTimeField()
    #: When the latest heartbeat saying ``ok`` arrived (null: never): where the SLA's lost time starts.
    ok_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["listing", "node"]
        constraints = [models.UniqueConstraint(fields=["listing", "node"], name="node_heartbeat_one_per_node")]

    def __str__(self) -> str:
        return f"listing {self.listing_id} node {self.node}: {self.health} at {self.seen_at:%H:%M:%S}"


class MeasuredProfile(models.Model):
    """A provider's measurement of serving an LLM on its listing: one replica of
    ``gpus_per_replica`` GPUs at ``precision``, ``concurrency`` sequences of ``prompt_tokens``,
    giving ``output_tokens_per_second`` (the replica's) and ``ttft_ms``. Measured beats modelled
    (``matching.inference.profile_for``)."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="measured_profiles")
    llm_model = models.ForeignKey(LlmModel, on_delete=models.PROTECT, related_name="measured_profiles")
    precision = models.CharField(max_length=16)
    gpus_per_replica = models.PositiveSmallIntegerField()
    prompt_tokens = models.PositiveIntegerField()
    concurrency = models.PositiveIntegerField()
    output_tokens_per_second = models.DecimalField(max_digits=10, decimal_places=1)
    ttft_ms = models.DecimalField(max_digits=9, decimal_places=1)
    measured_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(gpus_per_replica__in=NODE_SIZES), name="profile_replica_size_valid"),
            models.CheckConstraint(condition=Q(prompt_tokens__gt=0), name="profile_prompt_tokens_gt_0"),
            models.CheckConstraint(condition=Q(concurrency__gt=0), name="profile_concurrency_gt_0"),
            models.CheckConstraint(condition=Q(output_tokens_per_second__gt=0), name="profile_tokens_per_second_gt_0"),
            models.CheckConstraint(condition=Q(ttft_ms__gt=0), name="profile_ttft_gt_0"),
        ]

    def __str__(self) -> str:
        return f"listing {self.listing_id}: {self.llm_model_id} {self.precision} × {self.gpus_per_replica}"
