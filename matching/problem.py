"""The engine's input and output types: plain frozen data, no Django.

Money is ``Decimal`` CNY per GPU-hour; times are aware UTC ``datetime``; RTTs are float ms.
The marketplace builds a :class:`Problem` from a database snapshot (``marketplace.selectors``) and
applies a :class:`Plan` through a service; the engine never touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TypedDict

from matching.latency import LatencyClass


@dataclass(frozen=True)
class VoucherTerms:
    """A voucher attached to a request, as the engine sees it.

    ``percent`` of the listing price is subsidised on eligible listings (empty eligibility tuples
    mean "any"), bounded by ``remaining_value`` CNY for the whole round: the engine never plans a
    subsidy that the remaining value cannot pay.
    """

    code: str
    percent: Decimal
    remaining_value: Decimal
    program: str = ""
    eligible_regions: tuple[str, ...] = ()
    eligible_providers: tuple[int, ...] = ()
    eligible_gpu_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestSpec:
    """Open demand: ``replicas`` still to place, each of ``gpus_per_replica`` GPUs on one node.

    ``max_rtt_ms`` is ``None`` for batch (unbounded). ``latency_weight`` is CNY per ms of RTT per
    GPU-hour: the buyer's value of latency, added to the edge cost. Higher ``priority`` is served
    first; a match must start (``max(now, listing.available_from)``) no later than ``start_by`` and
    run ``duration_hours`` inside the listing's window. ``min_reliability`` (0–1, ``None`` = no
    bound) admits only listings whose 30-day reliability is at least it; a listing without a score
    (too little history) never meets a bound.
    """

    id: int
    gpu_model: str
    gpus_per_replica: int
    replicas: int
    origin: str
    max_rtt_ms: float | None
    max_price_per_gpu_hour: Decimal
    duration_hours: int
    start_by: datetime
    latency_weight: Decimal = Decimal("0")
    priority: int = 0
    voucher: VoucherTerms | None = None
    min_reliability: float | None = None
    #: Interruptible demand (:mod:`matching.interruptible`): served after all on-demand demand, only
    #: on listings offering the tier at a floor within ``max_price_per_gpu_hour`` (its bid), at the floor.
    interruptible: bool = False


@dataclass(frozen=True)
class ListingSpec:
    """Free capacity: ``node_free[k]`` GPUs are free on node ``k`` (each node has ``gpus_per_node``).

    ``reliability`` is the listing's 30-day availability (0–1, see ``marketplace.reliability``), or
    ``None`` when it has too little history to have one.
    """

    id: int
    provider_id: int
    region: str
    gpu_model: str
    gpus_per_node: int
    node_free: tuple[int, ...]
    price_per_gpu_hour: Decimal
    energy_cost_per_gpu_hour: Decimal
    available_from: datetime
    available_until: datetime
    reliability: float | None = None
    #: The lowest price at which the listing sells its idle GPUs as interruptible; ``None``: it does
    #: not offer the tier (:mod:`matching.interruptible`).
    interruptible_floor_price_per_gpu_hour: Decimal | None = None
    #: An engine cost per GPU-hour on top of the price, never charged and outside the price cap:
    #: the interruptible work a placement here would stop (set only on the virtual listings of
    #: :mod:`matching.interruptible`; 0 on every real listing).
    preemption_penalty_per_gpu_hour: Decimal = Decimal(0)

    @property
    def free_gpus(self) -> int:
        return sum(self.node_free)


@dataclass(frozen=True)
class RunningInterruptible:
    """A live interruptible match, as capacity that on-demand demand may take by pre-empting it.

    ``listing`` is its listing (``node_free`` as everywhere: the GPUs free now, which do not include
    this match's); the match holds ``gpus_per_replica`` GPUs on each node of ``nodes`` (one entry per
    replica) and pays ``price_per_gpu_hour``. Pre-empted now, its GPUs are free at ``free_at`` (its
    notice's end, or its own end if sooner). ``notice_given``: it was pre-empted in an earlier round
    and serves its notice; its GPUs are already promised to on-demand demand and cost nothing more.
    """

    match_id: int
    listing: ListingSpec
    gpus_per_replica: int
    nodes: tuple[int, ...]
    price_per_gpu_hour: Decimal
    free_at: datetime
    notice_given: bool = False

    @property
    def gpus(self) -> int:
        return self.gpus_per_replica * len(self.nodes)


@dataclass(frozen=True)
class Problem:
    """One round's input. ``rtt_ms[(a, b)]`` is the RTT between region codes a and b (both orders).

    ``reservations`` (listing id → CNY per GPU-hour, absent = 0) is the look-ahead's opportunity
    cost of a listing's capacity: :mod:`matching.lookahead` defines which requests pay it, and how
    much, in the engine's cost (never in a buyer's price). Empty (the default): today's myopic round.

    ``running_interruptible``: the live interruptible matches of the round's listings, which
    on-demand requests may pre-empt (:mod:`matching.interruptible`); empty when nobody uses the tier.
    """

    requests: tuple[RequestSpec, ...]
    listings: tuple[ListingSpec, ...]
    rtt_ms: dict[tuple[str, str], float]
    now: datetime
    reservations: dict[int, Decimal] = field(default_factory=dict)
    running_interruptible: tuple[RunningInterruptible, ...] = ()
    #: Inference demand (:class:`InferenceDemand`): a throughput target that any of its
    #: alternatives' replicas may serve (:mod:`matching.substitution`); empty: a GPU-form round.
    inference: tuple[InferenceDemand, ...] = ()


class Rejected(TypedDict):
    """A cheaper listing an assignment's request did not use, and why (see :mod:`matching.explain`)."""

    region: str
    listing_id: int
    price_per_gpu_hour: str
    rtt_ms: float | None
    reason: str


class AlternativeCost(TypedDict, total=False):
    """Another way an inference demand could have been served (:mod:`matching.substitution_explain`):
    its cost per million output tokens at its cheapest listing (text, ``None`` when blocked), or
    what blocked it in words (``""`` when it could serve)."""

    gpu_model: str
    gpus_per_replica: int
    precision: str
    source: str
    price_per_million_tokens: str | None
    blocked: str


class Explanation(TypedDict, total=False):
    """Why an assignment was chosen, JSON-ready (:func:`matching.explain.explain_assignment`).

    Empty until :func:`matching.assemble.assemble` explains the assignment; then every key is set.
    """

    region: str
    listing_id: int
    replicas: int
    gpus: int
    price_per_gpu_hour: str
    energy_cost_per_gpu_hour: str
    subsidy_per_gpu_hour: str
    voucher_program: str
    latency_cost_per_gpu_hour: str
    cost_per_gpu_hour: str
    rtt_ms: float
    latency_class: str
    bound_ms: float | None
    starts_at: str
    rejected: list[Rejected]
    #: Set only on an inference demand's assignment (:mod:`matching.substitution_explain`).
    gpu_model: str
    precision: str
    ttft_ms: float
    price_per_million_tokens: str
    why: str
    alternatives: list[AlternativeCost]


@dataclass(frozen=True)
class Assignment:
    """``replicas`` of one request placed on one listing; ``nodes[r]`` is the node of replica r."""

    request_id: int
    listing_id: int
    region: str
    replicas: int
    gpus_per_replica: int
    nodes: tuple[int, ...]
    price_per_gpu_hour: Decimal
    subsidy_per_gpu_hour: Decimal
    energy_cost_per_gpu_hour: Decimal
    rtt_ms: float
    latency_class: LatencyClass
    cost_per_gpu_hour: Decimal
    starts_at: datetime
    explanation: Explanation = field(default_factory=Explanation)
    #: The look-ahead's reservation premium the engine charged itself for this placement (CNY per
    #: GPU-hour, :func:`matching.lookahead.premium_units`); not in ``cost_per_gpu_hour``, never billed.
    reservation_per_gpu_hour: Decimal = Decimal("0.0000")
    #: An inference demand's assignment (:mod:`matching.substitution`): the alternative's precision,
    #: one replica's output tokens/s and the TTFT served (RTT + queueing margin + prefill, ms).
    #: "" / 0 / None on a GPU-form request's.
    precision: str = ""
    tokens_per_second_per_replica: float = 0.0
    ttft_ms: float | None = None

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def tokens_per_second(self) -> float:
        """Output tokens/s all its replicas make (0 on a GPU-form request's)."""
        return self.replicas * self.tokens_per_second_per_replica


class Blocked(TypedDict, total=False):
    """What blocked unplaced replicas, as data (:func:`matching.explain.unserved_reason` writes it
    beside its sentence, so readers never parse the words).

    ``kind`` is always set: ``none_listed`` (no such GPU listed), ``node_size`` (no node that
    large), ``too_far`` (none within the bound; ``region`` is the nearest at ``rtt_ms``), ``price``
    (all within the bound cost more; ``cheapest`` is the lowest price there, CNY per GPU-hour as
    text), ``reliability``, ``window`` (none free in time), ``node_free`` (no node with that many
    free GPUs), ``capacity`` (taken by other requests) or ``other``.
    """

    kind: str
    region: str
    rtt_ms: float
    cheapest: str


def blocked_other() -> Blocked:
    """The :class:`Blocked` of a reason the engine did not classify."""
    return Blocked(kind="other")


@dataclass(frozen=True)
class Unserved:
    """Replicas of a request the round could not place, and what blocked them, in words
    (``reason``) and as data (``blocked``)."""

    request_id: int
    replicas: int
    reason: str
    blocked: Blocked = field(default_factory=blocked_other)


@dataclass(frozen=True)
class InferenceAlternative:
    """One way to serve an inference demand: replicas of ``gpus_per_replica`` GPUs of ``gpu_model``
    at ``precision``, each making ``tokens_per_second_per_replica`` output tokens/s with ``prefill_ms``
    of prefill. A replica may sit only within ``rtt_bound_ms`` of the origin (the TTFT target less
    prefill and queueing margin) on a listing priced at most ``max_price_per_gpu_hour`` (the cap per
    million tokens at this alternative's tokens per GPU). ``listing_ids`` None: any listing of the
    GPU model (modelled figures); a tuple: only those listings (their measured figures).
    """

    gpu_model: str
    gpus_per_replica: int
    precision: str
    source: str  # "measured" or "modelled"
    tokens_per_second_per_replica: float
    prefill_ms: float
    rtt_bound_ms: float
    max_price_per_gpu_hour: Decimal
    listing_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class InferenceDemand:
    """Open inference demand: ``tokens_per_second`` still to place, by any of ``alternatives``.

    Served by whole replicas; a replica is placed only while the demand's placed tokens/s are below
    its target (so the last may overshoot it, by less than one replica). Together its placements
    cost at most ``budget_per_hour`` CNY per hour (the cap per million tokens × the target's million
    tokens per hour), and each replica's price is within its alternative's cap. Window, start,
    reliability, voucher and priority mean what they mean on :class:`RequestSpec`.
    """

    id: int
    origin: str
    tokens_per_second: float
    budget_per_hour: Decimal
    duration_hours: int
    start_by: datetime
    alternatives: tuple[InferenceAlternative, ...]
    priority: int = 0
    voucher: VoucherTerms | None = None
    min_reliability: float | None = None


@dataclass(frozen=True)
class InferenceUnserved:
    """Output tokens/s of an inference demand the round could not place, and why."""

    request_id: int
    tokens_per_second: float
    reason: str
    blocked: Blocked = field(default_factory=blocked_other)


@dataclass(frozen=True)
class ListingPrice:
    """One listing's price after a round (:mod:`matching.prices` defines it).

    ``rent`` is ``None`` when it could not be computed within the round's re-solve budget.
    """

    listing_id: int
    region: str
    gpu_model: str
    ask: Decimal  # the listing's own price, CNY per GPU-hour
    rent: Decimal | None  # scarcity rent, CNY per GPU-hour; 0 when spare
    free_gpus: int  # free after the round
    unit_gpus: int  # the size of the unit priced (0: no request can use this listing)

    @property
    def clearing_price(self) -> Decimal | None:
        """Ask + rent, CNY per GPU-hour; ``None`` when the rent is unavailable."""
        return None if self.rent is None else self.ask + self.rent


@dataclass(frozen=True)
class Preemption:
    """A running interruptible match the round pre-empts: on-demand ``request_ids`` need its GPUs,
    which are free at ``free_at`` (its notice's end). Those requests are placed on them by the
    first round after ``free_at``; until then the plan lists their replicas as unserved, waiting."""

    match_id: int
    listing_id: int
    request_ids: tuple[int, ...]
    free_at: datetime


@dataclass(frozen=True)
class Plan:
    """A round's output. ``objective`` is the total cost (CNY) of the assignments over their
    durations, reservation premiums included (``stats["reservation_cny"]`` says how much of it
    they are; 0 without look-ahead); ``lower_bound`` a proven bound on it at the same served
    replicas (equal when exact); ``gap`` = objective / lower_bound − 1 (0 when exact). ``stats`` holds solver counters
    (components, edges, served GPUs and the relaxation's upper bound on them, voucher cuts)."""

    assignments: tuple[Assignment, ...]
    unserved: tuple[Unserved, ...]
    solver: str
    objective: Decimal
    lower_bound: Decimal
    gap: float
    served_replicas: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    stats: dict[str, int | str] = field(default_factory=dict)
    #: Per-listing clearing prices; empty until :func:`matching.prices.with_prices` fills them.
    prices: tuple[ListingPrice, ...] = ()
    #: Interruptible matches to pre-empt (:mod:`matching.interruptible`); never an on-demand match.
    preempted: tuple[Preemption, ...] = ()
    #: The inference demands' assignments and what was left unserved (:mod:`matching.substitution`),
    #: kept apart from the GPU-form ``assignments``/``unserved`` whose counts are replicas of one shape.
    inference_assignments: tuple[Assignment, ...] = ()
    inference_unserved: tuple[InferenceUnserved, ...] = ()


def sold_gpu_hours(problem: Problem, plan: Plan, listing_id: int) -> int:
    """GPU-hours ``plan`` sells on one listing: Σ GPUs × the request's duration over its assignments."""
    hours = {r.id: r.duration_hours for r in problem.requests}
    return sum(a.gpus * hours[a.request_id] for a in plan.assignments if a.listing_id == listing_id)
