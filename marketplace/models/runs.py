"""Matching runs: one execution of the engine over one shard."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q


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
    #: The GPU model it covered ("h20"), or the component of GPU models inference demand coupled,
    #: their codes joined ("h100+h20", ``selectors.shard_name``): room for every GPU model at once.
    shard = models.CharField(max_length=400, blank=True)
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
    #: Rows the round left out, each ``{"kind": "request"|"listing", "id", "reason"}``: a row that
    #: breaks the market's rules or that the engine or the database could not handle, so that it
    #: costs only its owner the round (``services.rounds``).
    left_out = models.JSONField(default=list, blank=True)
    #: Milliseconds per phase: snapshot, solve, prices (engine rounds), apply.
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
