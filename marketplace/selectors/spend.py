"""What a request has used of its spend reservation (``services.spend``): the reads shared by the
service that shrinks reservations and the snapshot that keeps a round inside them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from marketplace.models import BuyerRequest, Match, Settlement
from marketplace.money import worst_case_charge

ZERO = Decimal("0")


@dataclass(frozen=True)
class SpendUsed:
    """CNY a request was charged plus the worst case of its live matches (at their prices), and
    whether one of its matches failed (its replicas were put back for their full duration)."""

    amount: Decimal = ZERO
    failed_over: bool = False


def requests_spend_used(request_ids: Collection[int]) -> dict[int, SpendUsed]:
    """``{request_id: SpendUsed}`` for every id, in three queries whatever their number."""
    ids = list(request_ids)
    if not ids:
        return {}
    amount = dict.fromkeys(ids, ZERO)
    charged = (
        Settlement.objects.filter(match__request_id__in=ids)
        .values("match__request_id")
        .annotate(total=Sum("buyer_pays"))
        .values_list("match__request_id", "total")
    )
    for request_id, total in charged:
        amount[request_id] += total
    live = Match.objects.filter(request_id__in=ids, status__in=Match.LIVE_STATUSES).values_list(
        "request_id", "price_per_gpu_hour", "gpus", "starts_at", "ends_at"
    )
    for request_id, price, gpus, starts_at, ends_at in live:
        hours = Decimal(gpus) * Decimal(str((ends_at - starts_at).total_seconds())) / 3600
        amount[request_id] += worst_case_charge(price_per_gpu_hour=price, gpu_hours=hours, lines=1)
    failed = set(
        Match.objects.filter(request_id__in=ids, status=Match.Status.FAILED).values_list("request_id", flat=True)
    )
    return {request_id: SpendUsed(amount[request_id], request_id in failed) for request_id in ids}


def spend_placeable_replicas(request: BuyerRequest, used: SpendUsed, open_replicas: int) -> int:
    """How many of ``open_replicas`` a round may still place inside ``request``'s reservation.

    A request's reservation is the worst case of all its replicas, checked against the caps when it
    was accepted, so a round placing its open replicas stays inside it — except after a fail-over:
    the failed match's hours were charged and its replicas are open again for their full duration.
    Then only as many replicas as the rest of the reservation covers at the request's price cap are
    offered (matching stops at the cap); the others stay open, unplaced. Requests without a spend
    reservation, or that never failed over, keep all their open replicas.
    """
    if request.spend_month is None or not used.failed_over or open_replicas <= 0:
        return open_replicas
    headroom = request.spend_committed - used.amount
    placeable = open_replicas
    while placeable > 0 and replicas_worst_case(request, placeable) > headroom:
        placeable -= 1
    return placeable


def replicas_worst_case(request: BuyerRequest, replicas: int) -> Decimal:
    """The most ``replicas`` of ``request`` placed afresh can be charged: their GPU-hours at its
    price cap, one settlement line each at most (``money.worst_case_charge``)."""
    return worst_case_charge(
        price_per_gpu_hour=request.max_price_per_gpu_hour,
        gpu_hours=Decimal(request.gpus_per_replica * request.duration_hours * replicas),
        lines=replicas,
    )
