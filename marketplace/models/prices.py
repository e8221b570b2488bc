"""Clearing prices recorded by each round (``matching.prices``; docs/economics.md)."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from marketplace.models.reference import GpuModel, Region
from marketplace.models.runs import MatchingRun


class ClearingPrice(models.Model):
    """The market's clearing price of one GPU model in one region after one round.

    ``price_per_gpu_hour`` is the lowest (ask + scarcity rent) among the region's priced listings of
    the model; ``rent_per_gpu_hour`` the highest rent (0: capacity left over). Both are null when no
    listing there could be priced within the round's re-solve budget. History is pruned after
    ``PRICE_HISTORY_DAYS`` (``services.prices.clearing_prices_prune``).
    """

    run = models.ForeignKey(MatchingRun, on_delete=models.CASCADE, related_name="clearing_prices")
    recorded_at = models.DateTimeField()
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="clearing_prices")
    gpu_model = models.ForeignKey(GpuModel, on_delete=models.PROTECT, related_name="clearing_prices")
    price_per_gpu_hour = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    rent_per_gpu_hour = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    free_gpus = models.PositiveIntegerField()
    listings = models.PositiveIntegerField()
    saturated_listings = models.PositiveIntegerField()
    unavailable_listings = models.PositiveIntegerField()

    class Meta:
        ordering = ["-recorded_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "region", "gpu_model"], name="clearing_price_once_per_run"),
            models.CheckConstraint(
                condition=Q(price_per_gpu_hour__isnull=True) | Q(price_per_gpu_hour__gte=0),
                name="clearing_price_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(rent_per_gpu_hour__isnull=True) | Q(rent_per_gpu_hour__gte=0),
                name="clearing_rent_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(saturated_listings__lte=F("listings")) & Q(unavailable_listings__lte=F("listings")),
                name="clearing_price_counts_within_listings",
            ),
        ]
        indexes = [models.Index(fields=["gpu_model", "region", "-recorded_at"], name="clearing_price_series")]

    def __str__(self) -> str:
        return f"{self.gpu_model_id}@{self.region_id} run #{self.run_id}: {self.price_per_gpu_hour}"
