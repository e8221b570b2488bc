"""The simulated market's script: who lists, withdraws and asks for what, step by step. Pure Python.

Everything is drawn up front from one seeded generator and never from the state of the system, so
every policy replays exactly the same supply and demand. Supply: the demo providers
(``marketplace.demo.PROVIDERS``), the western hubs holding most of the GPUs at below-indicative
prices and the eastern ones a little at above it; they list more capacity now and then and withdraw
some. Demand: two buyers in each eastern city, with a daily rhythm in China Standard Time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np

from marketplace.money import to_fen
from marketplace.simulation.inference_demand import InferenceDemand, SubmitInference
from matching.inference import GpuSpec, LlmSpec
from matching.latency import LATENCY_CLASS_BOUND_MS

CST = timezone(timedelta(hours=8), "CST")
LATENCY_BOUND_MS = {cls.value: bound for cls, bound in LATENCY_CLASS_BOUND_MS.items()}


@dataclass(frozen=True)
class Workload:
    """A kind of demand: its rhythm (relative arrivals per CST hour), mix and terms.

    ``cap`` is the price cap as a multiple of the GPU model's indicative price; ``start_within`` the
    hours the buyer gives the market to start it; weights need not sum to 1.
    """

    name: str
    buyer: str  # which of a city's buyers sends it: "apps" or "labs"
    per_day: float  # requests per day, all cities together, at scale 1
    hourly: tuple[float, ...]
    latency_classes: tuple[tuple[str, float], ...]
    models: tuple[tuple[str, float], ...]
    sizes: tuple[tuple[int, float], ...]
    replicas: tuple[int, int]
    hours: tuple[int, ...]
    cap: tuple[float, float]
    start_within: tuple[int, int]
    voucher_rate: float


#: Real-time chat peaks in the evening; agents work office hours; RAG/embedding pipelines run by
#: day; batch (fine-tuning, evaluation, offline inference) is submitted in the evening to run at night.
WORKLOADS = (
    Workload(
        name="chat",
        buyer="apps",
        per_day=150,
        hourly=(5, 3, 2, 1.5, 1, 1, 1.5, 3, 6, 8, 9, 10, 11, 10, 9, 9, 9, 10, 13, 17, 20, 21, 18, 10),
        latency_classes=(("realtime", 0.75), ("interactive", 0.25)),
        models=(("h20", 0.45), ("l40s", 0.25), ("h100", 0.2), ("rtx4090", 0.1)),
        sizes=((1, 0.5), (2, 0.35), (4, 0.15)),
        replicas=(1, 6),
        hours=(2, 3, 4, 6),
        cap=(1.15, 1.6),
        start_within=(1, 2),
        voucher_rate=0.3,
    ),
    Workload(
        name="agents",
        buyer="apps",
        per_day=110,
        hourly=(2, 1, 1, 1, 1, 1, 2, 5, 10, 16, 18, 18, 14, 16, 18, 18, 16, 13, 10, 9, 8, 7, 5, 3),
        latency_classes=(("interactive", 0.8), ("standard", 0.2)),
        models=(("h20", 0.4), ("h100", 0.2), ("a800", 0.15), ("ascend-910b", 0.15), ("l40s", 0.1)),
        sizes=((1, 0.3), (2, 0.4), (4, 0.2), (8, 0.1)),
        replicas=(1, 4),
        hours=(4, 6, 8, 12),
        cap=(1.0, 1.4),
        start_within=(1, 4),
        voucher_rate=0.4,
    ),
    Workload(
        name="rag",
        buyer="labs",
        per_day=50,
        hourly=(4, 4, 4, 4, 4, 4, 4, 8, 12, 14, 14, 13, 12, 13, 14, 14, 13, 11, 9, 8, 7, 6, 5, 4),
        latency_classes=(("standard", 0.8), ("interactive", 0.2)),
        models=(("h20", 0.35), ("a100", 0.2), ("a800", 0.2), ("ascend-910b", 0.15), ("l40s", 0.1)),
        sizes=((2, 0.3), (4, 0.4), (8, 0.3)),
        replicas=(1, 3),
        hours=(6, 12, 24),
        cap=(0.9, 1.25),
        start_within=(2, 8),
        voucher_rate=0.4,
    ),
    Workload(
        name="batch",
        buyer="labs",
        per_day=45,
        hourly=(16, 18, 16, 12, 8, 5, 3, 2, 2, 2, 2, 2, 2, 2, 2, 3, 4, 6, 9, 12, 15, 18, 20, 18),
        latency_classes=(("batch", 1.0),),
        models=(("h20", 0.3), ("h800", 0.15), ("h100", 0.15), ("a100", 0.15), ("a800", 0.1), ("ascend-910b", 0.15)),
        sizes=((4, 0.3), (8, 0.7)),
        replicas=(1, 4),
        hours=(6, 8, 12, 24),
        cap=(0.8, 1.05),
        start_within=(2, 10),
        voucher_rate=0.5,
    ),
)

#: Eastern demand cities and their share of the demand.
CITIES = (
    ("beijing", 0.22),
    ("shanghai", 0.22),
    ("shenzhen", 0.13),
    ("guangzhou", 0.1),
    ("hangzhou", 0.1),
    ("nanjing", 0.08),
    ("wuhan", 0.08),
    ("zhengzhou", 0.07),
)

#: Voucher programmes (``marketplace.demo`` names) a city's buyers claim: the city's own, open to
#: buyers registered there, and for the labs the western Qingyang cluster and Chengdu's
#: programme. Hangzhou's programme only pays inside Hangzhou, where nobody lists: not claimed.
CITY_PROGRAMS = {
    "beijing": ("Beijing compute voucher",),
    "shanghai": ("Shanghai compute voucher",),
    "shenzhen": ("Shenzhen compute voucher",),
    "guangzhou": ("Shenzhen compute voucher",),
    "zhengzhou": ("Henan (Zhengzhou) compute voucher", "First 50 GPU-hours free in Zhengzhou"),
    "wuhan": ("First 50 GPU-hours free in Zhengzhou",),
}
LAB_PROGRAMS = ("Qingyang (Gansu) compute voucher", "Chengdu compute voucher")

#: Per listing and day, the chance its provider withdraws it; per provider and day, the chance it
#: lists a new batch of capacity.
WITHDRAW_PER_DAY = 0.06
RELIST_PER_DAY = 0.4


@dataclass(frozen=True)
class Scenario:
    """A market's shape: how many times the nodes it draws each listing offers, in the western hubs
    and elsewhere. Demand is the same in every scenario (same seed, same requests)."""

    name: str
    summary: str
    capacity_west: float = 1.0
    capacity_east: float = 1.0
    #: ``gpus``: the GPU-form demand of :data:`WORKLOADS`; ``inference``: the inference form's
    #: (``inference_demand``) instead, on the same supply.
    demand: str = "gpus"
    #: What ``--policy all`` runs (``variants.VARIANTS`` names), in the report's order.
    variants: tuple[str, ...] = ("engine", "nearest", "cheapest", "market")

    def capacity(self, west: bool) -> float:
        return self.capacity_west if west else self.capacity_east


DEFAULT_SCENARIO = "default"
INFERENCE = "inference"
#: ``idle80`` is the news: capacity far above demand, most of it new capacity in the western hubs,
#: about 80 % of the GPU-hours listed idle under nearest-region-first.
SCENARIOS = {
    s.name: s
    for s in (
        Scenario(DEFAULT_SCENARIO, "the demo providers' capacity"),
        Scenario(
            "idle80",
            "capacity far above demand: the western hubs list 5 times the nodes, the others 2 times",
            capacity_west=5.0,
            capacity_east=2.0,
        ),
        #: Issue 15: the same supply as ``default``, and inference demand instead of GPU counts,
        #: under the engine with substitution across GPU models, the engine held to each buyer's
        #: first-choice GPU model, and nearest-region-first (the buyer's first choice, by hand).
        Scenario(
            INFERENCE,
            "the demo providers' capacity; demand in the inference form "
            "(an LLM at a tokens/s target under a TTFT target)",
            demand=INFERENCE,
            variants=("engine", "engine-first-choice", "nearest"),
        ),
    )
}


@dataclass(frozen=True)
class Catalogue:
    """What the script needs from the reference data: indicative prices and which regions are west."""

    indicative_price: dict[str, Decimal]
    is_west: dict[str, bool]
    rtt_ms: dict[tuple[str, str], float]  # both orders
    #: The throughput model's specs by code, for the inference scenario (empty otherwise).
    llms: dict[str, LlmSpec] = field(default_factory=dict)
    gpus: dict[str, GpuSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class Buyer:
    name: str
    origin: str
    kind: str  # "apps" or "labs" (``Workload.buyer``)
    programs: tuple[str, ...]


@dataclass(frozen=True)
class ListCapacity:
    key: int  # the k-th listing of the script
    provider: str
    region: str
    gpu_model: str
    gpu_count: int
    gpus_per_node: int
    price_per_gpu_hour: Decimal
    open_hours: int


@dataclass(frozen=True)
class Withdraw:
    listing_key: int
    provider: str


@dataclass(frozen=True)
class Submit:
    buyer: str
    origin: str
    workload: str
    gpu_model: str
    gpus_per_replica: int
    replicas: int
    latency_class: str
    max_price_per_gpu_hour: Decimal
    duration_hours: int
    start_within_hours: int
    program: str | None  # the voucher programme whose code the buyer attaches, if any


@dataclass
class Script:
    """The whole run: events per step (index = step), in the order they happen within a step."""

    start: datetime
    step: timedelta
    buyers: tuple[Buyer, ...]
    steps: list[list[ListCapacity | Withdraw | Submit | SubmitInference]] = field(default_factory=list)

    def count(self, kind: type) -> int:
        return sum(isinstance(event, kind) for events in self.steps for event in events)


def buyers_of_cities() -> tuple[Buyer, ...]:
    """Two buyers per eastern city: an app company (chat, agents) and a model lab (RAG, batch)."""
    out = []
    for city, _ in CITIES:
        own = CITY_PROGRAMS.get(city, ())
        title = city.title()
        out.append(Buyer(name=f"{title} Apps (simulated)", origin=city, kind="apps", programs=own))
        out.append(Buyer(name=f"{title} Labs (simulated)", origin=city, kind="labs", programs=own + LAB_PROGRAMS))
    return tuple(out)


def buyer_of(buyers: tuple[Buyer, ...], city: str, kind: str) -> Buyer:
    return next(b for b in buyers if b.origin == city and b.kind == kind)


class _Draw:
    """The one seeded generator and the weighted choices built on it."""

    def __init__(self, seed: int | list[int]):
        self.rng = np.random.default_rng(seed)

    def pick(self, weighted):
        values = [v for v, _ in weighted]
        weights = np.array([w for _, w in weighted], dtype=float)
        return values[int(self.rng.choice(len(values), p=weights / weights.sum()))]

    def one_of(self, values):
        return values[int(self.rng.integers(len(values)))]

    def between(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))

    def uniform(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)


class _Supply:
    """Listings the script has made and not withdrawn (key → provider), and the next key."""

    def __init__(self):
        self.live: dict[int, str] = {}
        self.next_key = 0

    def add(self, event: ListCapacity) -> ListCapacity:
        self.live[event.key] = event.provider
        self.next_key = event.key + 1
        return event


def script_build(
    *,
    seed: int,
    start: datetime,
    days: float,
    step_minutes: int,
    scale: float,
    catalogue: Catalogue,
    providers,
    scenario: Scenario = SCENARIOS[DEFAULT_SCENARIO],
) -> Script:
    """The seeded script of a run of ``days`` from ``start`` in steps of ``step_minutes``.

    ``providers`` are ``(name, region, GPU models, most nodes per listing)`` rows
    (``marketplace.demo.PROVIDERS``); ``scale`` multiplies both capacity and demand (a listing
    keeps at least one node), ``scenario`` capacity on top. The draws do not depend on the
    scenario: every scenario of a seed and scale has the same events, only listings sized differently.
    An inference scenario (``scenario.demand``) still draws the GPU-form requests, so that its supply
    is the default scenario's to the listing, but drops them: its requests come from
    ``inference_demand`` on a generator of their own (``catalogue`` must carry the specs).
    """
    draw = _Draw(seed)
    step = timedelta(minutes=step_minutes)
    script = Script(start=start, step=step, buyers=buyers_of_cities())
    supply = _Supply()
    inference = None
    if scenario.demand == INFERENCE:
        inference = InferenceDemand(
            _Draw([seed, 15]), script.buyers, providers, catalogue.rtt_ms, catalogue.llms, catalogue.gpus
        )
    for k in range(max(1, round(days * 24 * 60 / step_minutes))):
        if k == 0:
            events = [
                supply.add(_listing(draw, row, model, catalogue, scale, scenario, supply.next_key, initial=True))
                for row in providers
                for model in row[2]
            ]
        else:
            events = _churn(draw, providers, supply, catalogue, scale, scenario, step_minutes / 60 / 24)
        at = start + k * step
        gpu_form = _demand(draw, script.buyers, at, step_minutes / 60, scale, catalogue, providers)
        if inference is None:
            events += gpu_form
        else:
            events += inference.step(at, step_minutes / 60, scale, CITIES, at.astimezone(CST).hour)
        script.steps.append(events)
    return script


def _listing(
    draw: _Draw, row, model: str, catalogue: Catalogue, scale: float, scenario: Scenario, key: int, *, initial: bool
):
    """One listing of provider ``row``: west below the indicative price, east above (as the demo)."""
    name, region, _, max_nodes = row
    markup = draw.uniform(0.72, 0.9) if catalogue.is_west[region] else draw.uniform(1.02, 1.3)
    node_size = 8 if model != "rtx4090" else draw.one_of([4, 8])
    nodes = draw.between(max(1, max_nodes // 3), max_nodes) if initial else draw.between(1, max(1, max_nodes // 3))
    price = to_fen(catalogue.indicative_price[model] * Decimal(str(round(markup, 4))))
    return ListCapacity(
        key=key,
        provider=name,
        region=region,
        gpu_model=model,
        gpu_count=max(1, round(nodes * scale * scenario.capacity(catalogue.is_west[region]))) * node_size,
        gpus_per_node=node_size,
        price_per_gpu_hour=price,
        open_hours=24 * (draw.between(14, 60) if initial else draw.between(2, 10)),
    )


def _churn(
    draw: _Draw, providers, supply: _Supply, catalogue: Catalogue, scale: float, scenario: Scenario, day_fraction: float
) -> list:
    """Withdrawals of live listings, then new listings, each with its per-day chance."""
    events: list = []
    for key in sorted(supply.live):
        if draw.chance(WITHDRAW_PER_DAY * day_fraction):
            events.append(Withdraw(listing_key=key, provider=supply.live.pop(key)))
    for row in providers:
        if draw.chance(RELIST_PER_DAY * day_fraction):
            model = draw.one_of(row[2])
            listing = _listing(draw, row, model, catalogue, scale, scenario, supply.next_key, initial=False)
            events.append(supply.add(listing))
    return events


def models_near(catalogue: Catalogue, providers, origin: str, latency_class: str) -> set[str]:
    """GPU models some provider offers within ``latency_class``'s bound of ``origin``."""
    bound = LATENCY_BOUND_MS[latency_class]
    return {
        model
        for _, region, models, _ in providers
        for model in models
        if bound is None or catalogue.rtt_ms[origin, region] <= bound
    }


def _demand(
    draw: _Draw, buyers, at: datetime, step_hours: float, scale: float, catalogue: Catalogue, providers
) -> list:
    """The requests submitted in the step starting ``at``: Poisson arrivals at each workload's rate
    for that CST hour, from a city drawn by its share of demand."""
    hour = at.astimezone(CST).hour
    events = []
    for workload in WORKLOADS:
        rate = workload.per_day * scale * workload.hourly[hour] / (sum(workload.hourly) / 24) / 24
        for _ in range(int(draw.rng.poisson(rate * step_hours))):
            city = draw.pick(CITIES)
            buyer = buyer_of(buyers, city, workload.buyer)
            events.append(_submit(draw, workload, buyer, catalogue, providers))
    return events


def _submit(draw: _Draw, workload: Workload, buyer: Buyer, catalogue: Catalogue, providers) -> Submit:
    """One request. A buyer asks for a GPU model offered within its latency bound when there is one
    (it has looked at the capacity board); otherwise for its usual mix, and may go unserved."""
    latency_class = draw.pick(workload.latency_classes)
    near = models_near(catalogue, providers, buyer.origin, latency_class)
    model = draw.pick([(m, w) for m, w in workload.models if m in near] or workload.models)
    cap = catalogue.indicative_price[model] * Decimal(str(round(draw.uniform(*workload.cap), 4)))
    wants_voucher = bool(buyer.programs) and draw.chance(workload.voucher_rate)
    return Submit(
        buyer=buyer.name,
        origin=buyer.origin,
        workload=workload.name,
        gpu_model=model,
        gpus_per_replica=draw.pick(workload.sizes),
        replicas=draw.between(*workload.replicas),
        latency_class=latency_class,
        max_price_per_gpu_hour=to_fen(cap),
        duration_hours=draw.one_of(workload.hours),
        start_within_hours=draw.between(*workload.start_within),
        program=draw.one_of(buyer.programs) if wants_voucher else None,
    )
