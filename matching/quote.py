"""A quote: what the engine would do for one request now, and what relaxing its bound would save.

The placement is the solver's plan for this request alone against the current free capacity (other
open requests ignored, nothing committed), in its own tier (:mod:`matching.interruptible`); the
quote also prices it in both tiers, on-demand and interruptible. The price–latency frontier solves the same request once
per latency class, its RTT bound replaced by the class bound (batch: unbounded).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from matching import costs
from matching.interruptible import with_tiers
from matching.latency import LatencyClass, bound_of
from matching.problem import Assignment, Blocked, Plan, Problem, RequestSpec
from matching.solver import solve


@dataclass(frozen=True)
class FrontierPoint:
    """The cheapest placement if the request's bound were ``latency_class``'s."""

    latency_class: LatencyClass
    bound_ms: float | None
    replicas_placed: int
    region: str | None = None
    rtt_ms: float | None = None
    price_per_gpu_hour: Decimal | None = None
    subsidy_per_gpu_hour: Decimal | None = None
    cost_per_gpu_hour: Decimal | None = None
    total_cost: Decimal = Decimal(0)
    blocked: str = ""
    #: ``blocked`` as data (``None`` when nothing blocked).
    blocked_detail: Blocked | None = None
    #: The whole placement under this class's bound (``region`` etc. describe its cheapest line);
    #: not in ``to_dict``: callers price it (what the buyer would pay).
    assignments: tuple[Assignment, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "latency_class": str(self.latency_class),
            "bound_ms": self.bound_ms,
            "replicas_placed": self.replicas_placed,
            "region": self.region,
            "rtt_ms": self.rtt_ms,
            "price_per_gpu_hour": _str(self.price_per_gpu_hour),
            "subsidy_per_gpu_hour": _str(self.subsidy_per_gpu_hour),
            "cost_per_gpu_hour": _str(self.cost_per_gpu_hour),
            "total_cost": costs.money_text(self.total_cost),
            "blocked": self.blocked,
            "blocked_detail": self.blocked_detail,
        }


@dataclass(frozen=True)
class TierPrice:
    """What the request would get in one tier now: replicas placed and the average price per GPU-hour
    over the placement (``None`` when nothing is placed, with why in ``blocked``)."""

    replicas_placed: int
    price_per_gpu_hour: Decimal | None
    blocked: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "replicas_placed": self.replicas_placed,
            "price_per_gpu_hour": _str(self.price_per_gpu_hour),
            "blocked": self.blocked,
        }

    @classmethod
    def of(cls, plan: Plan) -> TierPrice:
        blocked = _reason(plan)
        gpus = sum(a.gpus for a in plan.assignments)
        if not gpus:
            return cls(0, None, blocked)
        paid = sum(a.price_per_gpu_hour * a.gpus for a in plan.assignments)
        return cls(plan.served_replicas, costs.money(paid / gpus), blocked)


@dataclass(frozen=True)
class Quote:
    """The placement for ``request_id`` now, its cost, and the frontier (tightest class first)."""

    request_id: int
    replicas_requested: int
    replicas_placed: int
    assignments: tuple[Assignment, ...]
    total_cost: Decimal
    unserved_reason: str
    #: ``unserved_reason`` as data (``None`` when every replica is placed).
    unserved_detail: Blocked | None = None
    frontier: tuple[FrontierPoint, ...] = field(default_factory=tuple)
    #: The request in each tier: ``{"on_demand": …, "interruptible": …}``.
    tiers: dict[str, TierPrice] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly: Decimals as strings, enums as their values."""
        return {
            "request_id": self.request_id,
            "replicas_requested": self.replicas_requested,
            "replicas_placed": self.replicas_placed,
            "total_cost": costs.money_text(self.total_cost),
            "unserved_reason": self.unserved_reason,
            "unserved_detail": self.unserved_detail,
            "placement": [assignment_dict(a) for a in self.assignments],
            "frontier": [p.to_dict() for p in self.frontier],
            "tiers": {name: tier.to_dict() for name, tier in self.tiers.items()},
        }


def _str(value: Decimal | None) -> str | None:
    return None if value is None else costs.money_text(value)


def assignment_dict(a: Assignment) -> dict[str, object]:
    """One placement line as the API shows it (Decimals as strings, times in UTC)."""
    return {
        "listing_id": a.listing_id,
        "region": a.region,
        "replicas": a.replicas,
        "gpus": a.gpus,
        "price_per_gpu_hour": costs.money_text(a.price_per_gpu_hour),
        "subsidy_per_gpu_hour": costs.money_text(a.subsidy_per_gpu_hour),
        "energy_cost_per_gpu_hour": costs.money_text(a.energy_cost_per_gpu_hour),
        "cost_per_gpu_hour": costs.money_text(a.cost_per_gpu_hour),
        "rtt_ms": a.rtt_ms,
        "latency_class": str(a.latency_class),
        "starts_at": costs.utc_text(a.starts_at),
        "explanation": a.explanation,
    }


def quote(problem: Problem, request: RequestSpec) -> Quote:
    """Quote ``request`` against ``problem``'s listings (``problem.requests`` are ignored)."""
    plan = plan_alone(problem, request)
    frontier = tuple(_point(problem, request, cls) for cls in LatencyClass)
    other = plan_alone(problem, replace(request, interruptible=not request.interruptible))
    own, other_tier = TierPrice.of(plan), TierPrice.of(other)
    tiers = (
        {"on_demand": other_tier, "interruptible": own}
        if request.interruptible
        else {
            "on_demand": own,
            "interruptible": other_tier,
        }
    )
    return Quote(
        request_id=request.id,
        replicas_requested=request.replicas,
        replicas_placed=plan.served_replicas,
        assignments=plan.assignments,
        total_cost=plan.objective,
        unserved_reason=_reason(plan),
        unserved_detail=_detail(plan),
        frontier=frontier,
        tiers=tiers,
    )


def _reason(plan: Plan) -> str:
    """What blocked the quoted request's unplaced replicas, in words ("" when all are placed)."""
    return plan.unserved[0].reason if plan.unserved else ""


def _detail(plan: Plan) -> Blocked | None:
    """:func:`_reason` as data (``None`` when all are placed)."""
    return plan.unserved[0].blocked if plan.unserved else None


def plan_alone(problem: Problem, request: RequestSpec) -> Plan:
    """The engine's plan for ``request`` alone against ``problem``'s listings (its requests ignored),
    under the tier rules (:func:`matching.interruptible.with_tiers`)."""
    alone = Problem(requests=(request,), listings=problem.listings, rtt_ms=problem.rtt_ms, now=problem.now)
    return with_tiers(alone, solve)


def _point(problem: Problem, request: RequestSpec, cls: LatencyClass) -> FrontierPoint:
    bound = bound_of(cls)
    plan = plan_alone(problem, replace(request, max_rtt_ms=bound))
    if not plan.assignments:
        return FrontierPoint(
            cls,
            bound,
            0,
            blocked=_reason(plan),
            blocked_detail=_detail(plan),
        )
    best = min(plan.assignments, key=lambda a: (a.cost_per_gpu_hour, a.listing_id))
    return FrontierPoint(
        latency_class=cls,
        bound_ms=bound,
        replicas_placed=plan.served_replicas,
        region=best.region,
        rtt_ms=best.rtt_ms,
        price_per_gpu_hour=best.price_per_gpu_hour,
        subsidy_per_gpu_hour=best.subsidy_per_gpu_hour,
        cost_per_gpu_hour=best.cost_per_gpu_hour,
        total_cost=plan.objective,
        blocked=_reason(plan),
        blocked_detail=_detail(plan),
        assignments=plan.assignments,
    )
