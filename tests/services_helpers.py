"""Helpers shared by service and API tests."""

from decimal import Decimal

from marketplace.services.matching import match_plan_apply
from matching.latency import LatencyClass
from matching.problem import Assignment, Plan


def reserve(listing, request, now, nodes=(0,), gpus_per_replica=None):
    """Apply a one-assignment plan, as a round would."""
    size = gpus_per_replica or request.gpus_per_replica
    assignment = Assignment(
        request_id=request.pk,
        listing_id=listing.pk,
        region=listing.region.code,
        replicas=len(nodes),
        gpus_per_replica=size,
        nodes=tuple(nodes),
        price_per_gpu_hour=listing.price_per_gpu_hour,
        subsidy_per_gpu_hour=Decimal("0"),
        energy_cost_per_gpu_hour=Decimal("0.17"),
        rtt_ms=35.1,
        latency_class=LatencyClass.STANDARD,
        cost_per_gpu_hour=listing.price_per_gpu_hour,
        starts_at=now,
    )
    plan = Plan((assignment,), (), "test", Decimal(0), Decimal(0), 0.0, len(nodes))
    return match_plan_apply(plan=plan, run_id=None, now=now)
