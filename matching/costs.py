"""The cost model and edge feasibility: what one request pays on one listing, and why it cannot.

Money is ``Decimal`` CNY at a resolution of :data:`MONEY_QUANTUM` (0.0001 CNY); every term of an edge
cost is quantized on its own, so the vectorised solver (which works in integer units of 0.0001 CNY)
and these scalar functions agree to the last unit.

An edge (request i, listing j) costs, per GPU-hour::

    price_j − subsidy_ij + latency_weight_i × RTT(origin_i, region_j)

Feasibility reasons are plain words so that explanations and unserved reasons can quote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from matching.latency import LatencyClass, latency_class_of
from matching.problem import ListingSpec, RequestSpec, VoucherTerms

MONEY_QUANTUM = Decimal("0.0001")
#: Integer money units per CNY used by the solver (1 unit = 0.0001 CNY).
UNITS_PER_CNY = 10_000

#: Default value of latency, CNY per ms of RTT per GPU-hour, by latency class.
#:
#: Why these numbers: an H100 rents for about 13 CNY/GPU-h and an A100 for about 6, and moving work
#: from an eastern city to a western hub saves roughly 10–30 % of that (1–4 CNY/GPU-h) while adding
#: 20–35 ms. A realtime buyer (weight 0.05) therefore pays ~1.5 CNY/GPU-h for 30 ms: latency
#: dominates, so realtime work stays as close as its bound allows. Interactive (0.02) values 30 ms at
#: ~0.6 CNY: it goes west only for a clear saving. Standard (0.005) and batch (0.001) value 30 ms at
#: 0.15 and 0.03 CNY: price decides, RTT only breaks near-ties, so they flow to cheap western power.
DEFAULT_LATENCY_WEIGHT: dict[LatencyClass, Decimal] = {
    LatencyClass.REALTIME: Decimal("0.05"),
    LatencyClass.INTERACTIVE: Decimal("0.02"),
    LatencyClass.STANDARD: Decimal("0.005"),
    LatencyClass.BATCH: Decimal("0.001"),
}


def money(value: Decimal | int | float | str) -> Decimal:
    """``value`` as CNY quantized to 0.0001 (floats go through ``str`` so 7.2 stays 7.2)."""
    if isinstance(value, float):
        value = str(value)
    return Decimal(value).quantize(MONEY_QUANTUM)


def money_units(value: Decimal) -> int:
    """``value`` in integer units of 0.0001 CNY (quantized first)."""
    return int(money(value).scaleb(4))


def from_units(units: int) -> Decimal:
    """Integer units of 0.0001 CNY back to a quantized ``Decimal``."""
    return Decimal(int(units)).scaleb(-4).quantize(MONEY_QUANTUM)


def default_latency_weight(latency_class: LatencyClass | str) -> Decimal:
    """The default latency weight (CNY per ms per GPU-hour) of a latency class."""
    return DEFAULT_LATENCY_WEIGHT[LatencyClass(latency_class)]


def energy_cost_per_gpu_hour(tdp_w: int | float, pue: float | Decimal, tariff_cny_kwh: float | Decimal) -> Decimal:
    """Power bill of one GPU for one hour: TDP (kW) × PUE × tariff, quantized to 0.0001 CNY."""
    kw = Decimal(str(tdp_w)) / 1000
    return money(kw * Decimal(str(pue)) * Decimal(str(tariff_cny_kwh)))


def rtt_between(rtt_ms: dict[tuple[str, str], float], a: str, b: str) -> float | None:
    """RTT between two regions from the problem's matrix (either order); ``None`` when unknown."""
    rtt = rtt_ms.get((a, b))
    return rtt_ms.get((b, a)) if rtt is None else rtt


def voucher_eligible(voucher: VoucherTerms, listing: ListingSpec) -> bool:
    """Whether ``voucher`` subsidises ``listing``: every non-empty eligibility tuple must admit it."""
    return (
        (not voucher.eligible_regions or listing.region in voucher.eligible_regions)
        and (not voucher.eligible_providers or listing.provider_id in voucher.eligible_providers)
        and (not voucher.eligible_gpu_models or listing.gpu_model in voucher.eligible_gpu_models)
    )


def subsidy_of(percent: Decimal, price: Decimal) -> Decimal:
    """``percent`` (0–100) of ``price``, rounded down so a sponsor never pays more than promised."""
    return (money(price) * Decimal(percent) / 100).quantize(MONEY_QUANTUM, rounding=ROUND_DOWN)


def subsidy_per_gpu_hour(voucher: VoucherTerms | None, listing: ListingSpec) -> Decimal:
    """Subsidy per GPU-hour of ``voucher`` on ``listing``: percent × price if eligible, else 0.

    ``VoucherTerms.percent`` is a percentage (30 means 30 %). The round-wide budget
    (``remaining_value``) is enforced by the solver, not here.
    """
    if voucher is None or not voucher_eligible(voucher, listing):
        return money(0)
    return subsidy_of(voucher.percent, listing.price_per_gpu_hour)


def latency_cost_per_gpu_hour(weight: Decimal, rtt_ms: float) -> Decimal:
    """``weight`` × RTT, CNY per GPU-hour (RTT goes through ``str`` so 35.8 ms stays 35.8)."""
    return money(Decimal(weight) * Decimal(str(rtt_ms)))


@dataclass(frozen=True)
class EdgeCost:
    """The per-GPU-hour cost terms of one (request, listing) edge."""

    price: Decimal
    subsidy: Decimal
    latency_cost: Decimal
    rtt_ms: float
    preemption_penalty: Decimal = Decimal(0)

    @property
    def cost(self) -> Decimal:
        return self.price - self.subsidy + self.latency_cost + self.preemption_penalty

    @property
    def latency_class(self) -> LatencyClass:
        return latency_class_of(self.rtt_ms)


def edge_cost(request: RequestSpec, listing: ListingSpec, rtt_ms: float) -> EdgeCost:
    """Cost terms of placing ``request`` on ``listing`` at the given RTT (full voucher subsidy)."""
    return EdgeCost(
        price=money(listing.price_per_gpu_hour),
        subsidy=subsidy_per_gpu_hour(request.voucher, listing),
        latency_cost=latency_cost_per_gpu_hour(request.latency_weight, rtt_ms),
        rtt_ms=rtt_ms,
        preemption_penalty=money(listing.preemption_penalty_per_gpu_hour),
    )


def start_on(listing: ListingSpec, now: datetime) -> datetime:
    """When a match on ``listing`` would start: now, or when the listing opens if later."""
    return max(now, listing.available_from)


def slots_on(listing: ListingSpec, gpus_per_replica: int) -> int:
    """How many replicas of ``gpus_per_replica`` GPUs fit on the listing's free nodes."""
    return sum(free // gpus_per_replica for free in listing.node_free)


def fmt_ms(ms: float) -> str:
    """``35.8`` → ``"35.8 ms"``, ``30.0`` → ``"30 ms"``."""
    return f"{ms:g} ms"


def money_text(value: Decimal) -> str:
    """Money in an explanation's fields, as the API writes its price fields: 4 decimal places
    (``Decimal("6.2")`` → ``"6.2000"``). Sentences use :func:`fmt_cny`."""
    return str(money(value))


def utc_text(when: datetime) -> str:
    """An aware time as the API writes times: ISO 8601 in UTC ending in ``Z``."""
    text = when.astimezone(UTC).isoformat()
    return f"{text[:-6]}Z" if text.endswith("+00:00") else text


def fmt_cny(value: Decimal) -> str:
    """Money for sentences: two decimals, or more when the value needs them."""
    two = value.quantize(Decimal("0.01"))
    return f"{two}" if two == value else f"{value.normalize()}"


#: The rules an edge must pass, as codes, in the order :func:`blocking_rule` checks them.
WRONG_MODEL = "wrong_model"
NODE_SIZE = "node_size"
OUT_OF_REACH = "out_of_reach"
PRICE_ABOVE_CAP = "price_above_cap"
RELIABILITY = "reliability"
OPENS_LATE = "opens_late"
WINDOW_SHORT = "window_short"
NO_FREE_NODE = "no_free_node"


def blocking_rule(
    request: RequestSpec, listing: ListingSpec, rtt_ms: float | None, now: datetime, *, check_price: bool = True
) -> str | None:
    """The first rule that keeps ``request`` off ``listing``, as a code, or ``None`` when the edge is
    feasible. Order: model, node size, RTT, price (unless ``check_price`` is false), reliability,
    window, free capacity. :func:`infeasibility` words it; ``matching.guidance`` sorts demand by it."""
    if listing.gpu_model != request.gpu_model:
        return WRONG_MODEL
    if listing.gpus_per_node < request.gpus_per_replica:
        return NODE_SIZE
    if rtt_ms is None or (request.max_rtt_ms is not None and rtt_ms > request.max_rtt_ms):
        return OUT_OF_REACH
    if check_price and money(listing.price_per_gpu_hour) > money(request.max_price_per_gpu_hour):
        return PRICE_ABOVE_CAP
    if reliability_reason(request, listing) is not None:
        return RELIABILITY
    return window_rule(request, listing, now)


def window_rule(request: RequestSpec, listing: ListingSpec, now: datetime) -> str | None:
    """The last rules of :func:`blocking_rule` (window, then free capacity), as a code."""
    start = start_on(listing, now)
    if start > request.start_by:
        return OPENS_LATE
    if start + timedelta(hours=request.duration_hours) > listing.available_until:
        return WINDOW_SHORT
    if slots_on(listing, request.gpus_per_replica) == 0:
        return NO_FREE_NODE
    return None


def infeasibility(request: RequestSpec, listing: ListingSpec, rtt_ms: float | None, now: datetime) -> str | None:
    """Why ``request`` cannot use ``listing``, in words, or ``None`` when the edge is feasible: the
    first rule :func:`blocking_rule` finds broken, e.g. ``"ningxia-zhongwei: 35.8 ms > 30 ms
    bound"`` or ``"price 14.00 > cap 12.00"``."""
    rule = blocking_rule(request, listing, rtt_ms, now)
    if rule is None:
        return None
    size = request.gpus_per_replica
    if rule == WRONG_MODEL:
        return f"{listing.gpu_model} is not {request.gpu_model}"
    if rule == NODE_SIZE:
        return f"nodes of {listing.gpus_per_node} GPUs < {size} per replica"
    if rule == OUT_OF_REACH:
        if rtt_ms is None:
            return f"{listing.region}: RTT to {request.origin} unknown"
        return f"{listing.region}: {fmt_ms(rtt_ms)} > {fmt_ms(request.max_rtt_ms or 0)} bound"
    if rule == PRICE_ABOVE_CAP:
        price, cap = money(listing.price_per_gpu_hour), money(request.max_price_per_gpu_hour)
        return f"price {fmt_cny(price)} > cap {fmt_cny(cap)}"
    if rule == RELIABILITY:
        return reliability_reason(request, listing)
    return window_or_capacity_reason(request, listing, now)


#: Reliability scores and bounds in integer units of 0.0001 (4 places, as the API writes them).
RELIABILITY_UNITS = 10_000


def reliability_units(value: float | None) -> int:
    """A reliability score or bound (0–1) in integer units of 0.0001; ``None`` → -1.

    -1 sits below every bound (a listing without a score never meets one) and is itself the
    "no bound" of a request (every listing, scored or not, is ≥ -1).
    """
    return -1 if value is None else round(value * RELIABILITY_UNITS)


def reliability_text(value: float) -> str:
    """``0.965`` → ``"0.9650"`` (4 places, as the API writes reliability)."""
    return f"{value:.4f}"


def reliability_reason(request: RequestSpec, listing: ListingSpec) -> str | None:
    """Why ``listing`` misses ``request``'s reliability bound, in words, or ``None`` when it meets it
    (or the request sets none), e.g. ``"ningxia-zhongwei listing 12: reliability 0.9650 < 0.9900
    required"``."""
    if request.min_reliability is None:
        return None
    if listing.reliability is None:
        return f"{listing.region} listing {listing.id}: too little history for a reliability bound"
    if reliability_units(listing.reliability) < reliability_units(request.min_reliability):
        have, need = reliability_text(listing.reliability), reliability_text(request.min_reliability)
        return f"{listing.region} listing {listing.id}: reliability {have} < {need} required"
    return None


def window_or_capacity_reason(request: RequestSpec, listing: ListingSpec, now: datetime) -> str | None:
    """:func:`window_rule` in words, for callers that have already passed the earlier checks."""
    rule = window_rule(request, listing, now)
    if rule == OPENS_LATE:
        start = start_on(listing, now)
        return f"opens {start:%Y-%m-%d %H:%M} UTC, after start-by {request.start_by:%Y-%m-%d %H:%M}"
    if rule == WINDOW_SHORT:
        return f"window ends before {request.duration_hours} h fit"
    if rule == NO_FREE_NODE:
        return f"no node with {request.gpus_per_replica} free GPUs"
    return None
