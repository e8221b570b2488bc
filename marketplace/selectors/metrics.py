"""Reads behind ``/metrics`` (``marketplace.metrics``): the newest matching runs, GPUs by region and
GPU model, and voucher budgets. Each is one query whatever the number of rows, so a scrape costs the
same on a big market as on a small one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import F, Sum

from marketplace.models import Listing, MatchingRun, VoucherProgram


@dataclass(frozen=True)
class RoundRecord:
    """One finished round as the metrics see it; ``timings_ms`` maps a phase to milliseconds."""

    id: int
    shard: str
    status: str
    finished_at: datetime | None  # set on every finished run; the column allows null for running ones
    served_replicas: int
    unserved_replicas: int
    gap: float | None
    timings_ms: dict[str, float]


def rounds_recent(*, limit: int) -> list[RoundRecord]:
    """The ``limit`` newest finished matching runs, newest first. One query, on the primary key's
    index: the runs table only grows, so a scrape reads a window of it, never all of it."""
    rows = (
        MatchingRun.objects.exclude(status=MatchingRun.Status.RUNNING)
        .order_by("-id")
        .values_list(
            "id", "shard", "status", "finished_at", "served_replicas", "unserved_replicas", "gap", "timings_ms"
        )[:limit]
    )
    return [
        RoundRecord(
            id=pk,
            shard=shard,
            status=status,
            finished_at=finished_at,
            served_replicas=served,
            unserved_replicas=unserved,
            gap=gap,
            timings_ms=timings if isinstance(timings, dict) else {},
        )
        for pk, shard, status, finished_at, served, unserved, gap, timings in rows
    ]


@dataclass(frozen=True)
class GpuCount:
    """Idle and matched GPUs of the open listings in one region of one GPU model."""

    region: str
    gpu_model: str
    idle_gpus: int
    matched_gpus: int


def gpus_by_region_and_model(*, now: datetime) -> list[GpuCount]:
    """GPUs of active, unexpired listings (those a round can still fill, as the capacity board counts
    them) by region and GPU model: idle (listed, not allocated) and matched (allocated). One query."""
    rows = (
        Listing.objects.filter(status=Listing.Status.ACTIVE, available_until__gt=now)
        .values_list("region__code", "gpu_model__code")
        .annotate(idle=Sum(F("gpu_count") - F("allocated_gpus")), matched=Sum("allocated_gpus"))
        .order_by("region__code", "gpu_model__code")
    )
    return [
        GpuCount(region=region, gpu_model=model, idle_gpus=idle or 0, matched_gpus=matched or 0)
        for region, model, idle, matched in rows
    ]


@dataclass(frozen=True)
class VoucherBudget:
    program: str
    budget: Decimal
    remaining_budget: Decimal


def voucher_budgets() -> list[VoucherBudget]:
    """Every voucher programme's budget and what is left of it (CNY), by name. One query."""
    rows = VoucherProgram.objects.order_by("name").values_list("name", "budget", "remaining_budget")
    return [VoucherBudget(program=name, budget=budget, remaining_budget=left) for name, budget, left in rows]
