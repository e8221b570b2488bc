"""Builders for engine tests: small hand-made problems on a toy RTT map (no Django, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from matching.problem import ListingSpec, Problem, RequestSpec

NOW = datetime(2025, 6, 1, tzinfo=UTC)

#: A toy map: shanghai (demand), a near eastern hub, a far western hub.
RTT = {
    ("shanghai", "shanghai"): 1.0,
    ("shanghai", "yrd"): 2.8,
    ("shanghai", "ningxia-zhongwei"): 35.8,
    ("shanghai", "guian"): 25.0,
    ("yrd", "yrd"): 1.0,
    ("ningxia-zhongwei", "ningxia-zhongwei"): 1.0,
    ("guian", "guian"): 1.0,
    ("yrd", "ningxia-zhongwei"): 35.1,
    ("yrd", "guian"): 33.0,
    ("guian", "ningxia-zhongwei"): 14.0,
}


def req(
    id=1,
    *,
    model="h100",
    size=1,
    replicas=1,
    origin="shanghai",
    bound=30.0,
    cap="20",
    hours=24,
    start_by=None,
    weight="0",
    priority=0,
    voucher=None,
    min_reliability=None,
) -> RequestSpec:
    return RequestSpec(
        id=id,
        gpu_model=model,
        gpus_per_replica=size,
        replicas=replicas,
        origin=origin,
        max_rtt_ms=bound,
        max_price_per_gpu_hour=Decimal(cap),
        duration_hours=hours,
        start_by=start_by or NOW + timedelta(hours=1),
        latency_weight=Decimal(weight),
        priority=priority,
        voucher=voucher,
        min_reliability=min_reliability,
    )


def lst(
    id=1,
    *,
    region="yrd",
    model="h100",
    gpn=8,
    nodes=(8,),
    price="10",
    provider=1,
    opens=None,
    days=30,
    reliability=None,
) -> ListingSpec:
    start = opens or NOW - timedelta(hours=1)
    return ListingSpec(
        id=id,
        provider_id=provider,
        region=region,
        gpu_model=model,
        gpus_per_node=gpn,
        node_free=tuple(nodes),
        price_per_gpu_hour=Decimal(price),
        energy_cost_per_gpu_hour=Decimal("0.3000"),
        available_from=start,
        available_until=start + timedelta(days=days),
        reliability=reliability,
    )


def problem(requests, listings) -> Problem:
    return Problem(requests=tuple(requests), listings=tuple(listings), rtt_ms=RTT, now=NOW)
