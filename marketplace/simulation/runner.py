"""Playing a script against the real system: services for every write, the real round for matching.

A step is what ``manage.py advance_clock`` does, plus the market's own actions: move the market
clock, run the lifecycle tick, let providers list and withdraw and buyers submit (through
``marketplace.services``), run one round per GPU model with open work under the chosen policy
(``marketplace.services.rounds.round_run``), and sample capacity. After the last step the run drains — time
moves on hour by hour with no new events until every match has ended and settled — so prices
and voucher spend come from real settlements.

At ``speed`` 0 the market clock is frozen (``services.market_clock.market_time_frozen``): the run
is exactly repeatable. At ``speed`` N a step of M simulated minutes takes M / N real seconds
(rounds still run inline, so the policy holds), which lets the admin monitor move during a demo.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.test.utils import override_settings
from django.utils import timezone

from marketplace import demo, selectors, services
from marketplace.errors import DomainError, InvalidInput
from marketplace.market_time import market_now
from marketplace.models import (
    BuyerRequest,
    GpuModel,
    LlmModel,
    Match,
    MatchingRun,
    Organisation,
    Region,
    Voucher,
    VoucherProgram,
)
from marketplace.selectors.inference import gpu_spec, llm_spec
from marketplace.services.market_clock import market_clock_advance, market_time_frozen
from marketplace.services.rounds import round_run
from marketplace.simulation import measure
from marketplace.simulation.inference_demand import SubmitInference
from marketplace.simulation.providers import listing_floor_offer, providers_follow_guidance, reprice_due
from marketplace.simulation.scenario import (
    CST,
    DEFAULT_SCENARIO,
    INFERENCE,
    SCENARIOS,
    Catalogue,
    ListCapacity,
    Script,
    Submit,
    Withdraw,
    buyers_of_cities,
    script_build,
)
from marketplace.simulation.variants import Variant, variant_of
from matching.policies import ENGINE

logger = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]
#: A run drains for at most this long after its last step (longest request: 24 h + start window).
DRAIN_LIMIT = timedelta(days=3)


@dataclass(frozen=True)
class SimulationConfig:
    """What to run. ``policy`` names a variant (``variants.VARIANTS``: a placement policy and the
    market features on); ``scenario`` one of ``scenario.SCENARIOS``. ``start`` is where the market
    clock is frozen at ``speed`` 0 (default: the real now)."""

    seed: int = 2026
    days: float = 1.0
    step_minutes: int = 30
    scale: float = 1.0
    policy: str = ENGINE
    speed: float = 0.0
    start: datetime | None = None
    scenario: str = DEFAULT_SCENARIO

    def __post_init__(self):
        variant_of(self.policy)  # ValueError for an unknown policy
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; choose one of {', '.join(SCENARIOS)}")
        if self.days <= 0 or self.step_minutes <= 0 or self.scale <= 0 or self.speed < 0:
            raise ValueError("days, step_minutes and scale must be positive and speed at least 0")


@dataclass
class World:
    """The run's organisations and model rows by name, the voucher codes its buyers hold, the
    listings the script created (script key → id), and counters of what happened. ``policy`` is the
    rounds' placement policy; ``variant`` adds the market features."""

    policy: str
    regions: dict[str, Region]
    models: dict[str, GpuModel]
    providers: dict[str, Organisation]
    buyers: dict[str, Organisation]
    codes: dict[tuple[str, str], str] = field(default_factory=dict)
    listing_ids: dict[int, int] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    variant: Variant | None = None
    repriced_on: date | None = None


def simulation_run(config: SimulationConfig, progress: Progress | None = None) -> dict:
    """Run ``config`` against the current database and return its figures (``measure``).

    Precondition: migrated. Reference data, organisations and voucher programmes are created when
    missing; on a database that already has a market, only this run's rows are measured.
    """
    variant = variant_of(config.policy)
    # Django's own way to switch settings for a stretch of code (it also tells the cached readers
    # of a setting that it changed); the variant's settings hold for the whole run, then revert.
    frozen = market_time_frozen(config.start or timezone.now()) if config.speed == 0 else nullcontext()
    with frozen, override_settings(**variant.settings):
        world = world_setup(policy=variant.policy)
        world.variant = variant
        floors = measure.Floors.now()
        script = script_build(
            seed=config.seed,
            start=market_now(),
            days=config.days,
            step_minutes=config.step_minutes,
            scale=config.scale,
            catalogue=catalogue_of(world),
            providers=demo.PROVIDERS,
            scenario=SCENARIOS[config.scenario],
        )
        samples = _play(world, script, config, floors, progress or (lambda *_: None))
        return _figures(world, script, config, floors, samples)


def catalogue_of(world: World) -> Catalogue:
    return catalogue_read(models=world.models, regions=world.regions)


def catalogue_read(*, models: dict[str, GpuModel] | None = None, regions: dict[str, Region] | None = None) -> Catalogue:
    """The script's view of the reference data in the database (``models`` and ``regions`` by code
    when the caller has them already): prices, west, RTTs and the throughput model's specs."""
    models = models if models is not None else {m.code: m for m in GpuModel.objects.all()}
    regions = regions if regions is not None else {r.code: r for r in Region.objects.all()}
    return Catalogue(
        indicative_price={code: m.indicative_price_per_gpu_hour for code, m in models.items()},
        is_west={code: r.is_west for code, r in regions.items()},
        rtt_ms={(a, b): float(rtt) for (a, b), rtt in selectors.rtt_map().items()},
        llms={row.code: llm_spec(row) for row in LlmModel.objects.all()},
        gpus={code: spec for code, m in models.items() if (spec := gpu_spec(m)) is not None},
    )


# --- setting up -----------------------------------------------------------------------------------


def world_setup(*, policy: str) -> World:
    """Reference data, the demo providers, the simulated buyers, the city voucher programmes, and
    each buyer's claimed codes (``voucher_claim``). Idempotent."""
    if not Region.objects.exists():
        services.reference_load(data=services.reference_read())
    regions = {r.code: r for r in Region.objects.all()}
    models = {m.code: m for m in GpuModel.objects.all()}
    providers = {name: _organisation(name, "provider", regions[region].province) for name, region, *_ in demo.PROVIDERS}
    buyers = {b.name: _organisation(b.name, "buyer", regions[b.origin].province) for b in buyers_of_cities()}
    demo.demo_vouchers_seed(regions=regions, models=models)
    world = World(policy=policy, regions=regions, models=models, providers=providers, buyers=buyers)
    for buyer in buyers_of_cities():
        for program in buyer.programs:
            _claim(world, buyer.name, program)
    return world


def _organisation(name: str, kind: str, province: str) -> Organisation:
    """As ``marketplace.demo`` seeds its organisations (no service creates one without a user)."""
    org, _ = Organisation.objects.get_or_create(name=name, defaults={"kind": kind, "province": province})
    return org


def _claim(world: World, buyer_name: str, program_name: str) -> None:
    """Give the buyer a code of the programme: one it holds already, else the first unclaimed one
    (more are issued when none is left), claimed through ``voucher_claim``."""
    buyer = world.buyers[buyer_name]
    program = VoucherProgram.objects.get(name=program_name)
    code = _code_for(program, buyer)
    try:
        services.voucher_claim(code=code, buyer=buyer)
    except DomainError as exc:
        world.counts["claims_refused"] += 1
        logger.info("%s cannot claim %s: %s", buyer_name, program_name, exc.message)
        return
    world.codes[buyer_name, program_name] = code
    world.counts["vouchers_claimed"] += 1


def _code_for(program: VoucherProgram, buyer: Organisation) -> str:
    mine = program.vouchers.filter(buyer=buyer).order_by("pk").first()
    if mine is not None:
        return mine.code
    free = program.vouchers.filter(buyer=None, status=Voucher.Status.ACTIVE).order_by("pk").first()
    if free is None:
        sponsor = program.sponsor_provider
        free = services.vouchers_issue(program_id=program.pk, sponsor_provider=sponsor, count=5)[0]
    return free.code


# --- playing --------------------------------------------------------------------------------------


def _play(
    world: World, script: Script, config: SimulationConfig, floors: measure.Floors, progress: Progress
) -> list[measure.Sample]:
    """Every step of the script, then the drain; returns one capacity sample per scripted step."""
    steps, samples = len(script.steps), []
    paced_from = time.monotonic()
    for k, events in enumerate(script.steps):
        now = _clock_to(script.start + k * script.step)
        services.lifecycle_tick(now=now)
        for event in events:
            _act(world, event, now)
        _rounds(world)
        _providers_reprice(world, now)
        samples.append(measure.capacity_sample(floors, market_now()))
        progress(k + 1, steps, _note(world, now))
        _pace(config, paced_from, k + 1, script.step)
    _drain(world, script, floors, progress)
    return samples


def _clock_to(target: datetime) -> datetime:
    """Move the market clock forward to ``target`` (never back), in whole seconds; returns now."""
    behind = int((target - market_now()).total_seconds())
    if behind > 0:
        market_clock_advance(by=timedelta(seconds=behind))
    return market_now()


def _pace(config: SimulationConfig, since: float, steps_done: int, step: timedelta) -> None:
    """At ``speed`` N, sleep until ``steps_done`` steps have taken their share of real time."""
    if config.speed > 0:
        due = since + steps_done * step.total_seconds() / 60 / config.speed
        time.sleep(max(0.0, due - time.monotonic()))


def _rounds(world: World) -> None:
    """One round per GPU model with open work, under the run's policy, as the sweep would."""
    for shard in selectors.shards_with_open_work(now=market_now()):
        if round_run(shard=shard, trigger=MatchingRun.Trigger.MANUAL, policy=world.policy) is None:
            world.counts["rounds_busy"] += 1  # a Celery worker held the shard; the next step retries


def _providers_reprice(world: World, now: datetime) -> None:
    """Once a CST day, if the variant's providers follow the guidance: reprice (``providers``)."""
    if world.variant is None or not world.variant.follows_guidance or not reprice_due(now, world.repriced_on):
        return
    providers_follow_guidance(
        listing_ids=list(world.listing_ids.values()),
        now=now,
        counts=world.counts,
        floor_share=world.variant.interruptible_floor_share,
    )
    world.repriced_on = now.astimezone(CST).date()


def _note(world: World, now: datetime) -> str:
    return f"{now.astimezone(CST):%a %H:%M} CST  {world.policy}: {world.counts['requests']} requests"


def _drain(world: World, script: Script, floors: measure.Floors, progress: Progress) -> None:
    """Hour by hour, no new events, until the run's requests are closed and its matches ended."""
    limit = market_now() + DRAIN_LIMIT
    hours = 0
    while _unsettled(floors) and market_now() < limit:
        now = _clock_to(market_now() + timedelta(hours=1))
        services.lifecycle_tick(now=now)
        _rounds(world)
        hours += 1
        progress(len(script.steps), len(script.steps), f"settling: +{hours} h")


def _unsettled(floors: measure.Floors) -> bool:
    return (
        Match.objects.filter(request_id__gt=floors.request, status__in=Match.LIVE_STATUSES).exists()
        or BuyerRequest.objects.filter(pk__gt=floors.request, status__in=BuyerRequest.OPEN_STATUSES).exists()
    )


# --- the market's actions -------------------------------------------------------------------------


def _act(world: World, event, now: datetime) -> None:
    if isinstance(event, ListCapacity):
        _list(world, event, now)
    elif isinstance(event, Withdraw):
        _withdraw(world, event, now)
    elif isinstance(event, Submit):
        _submit(world, event, now)
    elif isinstance(event, SubmitInference):
        _submit_inference(world, event, now)


def _list(world: World, event: ListCapacity, now: datetime) -> None:
    listing = services.listing_create(
        provider=world.providers[event.provider],
        region=world.regions[event.region],
        gpu_model=world.models[event.gpu_model],
        gpu_count=event.gpu_count,
        gpus_per_node=event.gpus_per_node,
        price_per_gpu_hour=event.price_per_gpu_hour,
        available_from=now,
        available_until=now + timedelta(hours=event.open_hours),
    )
    world.listing_ids[event.key] = listing.pk
    world.counts["listings"] += 1
    share = world.variant.interruptible_floor_share if world.variant is not None else None
    if share is not None:
        listing_floor_offer(listing=listing, share=share)


def _withdraw(world: World, event: Withdraw, now: datetime) -> None:
    """Withdraw a listing; its live matches fail over (the service's rules). A listing already
    closed by its window is left alone."""
    try:
        services.listing_withdraw(
            listing_id=world.listing_ids[event.listing_key], provider=world.providers[event.provider], now=now
        )
        world.counts["withdrawals"] += 1
    except DomainError:
        world.counts["withdrawals_skipped"] += 1


def _submit(world: World, event: Submit, now: datetime) -> None:
    """Submit the request, with the buyer's voucher of the scripted programme when it has one; if
    the voucher cannot cover it (spent, minimum spend…), the same request goes in without it."""
    code = world.codes.get((event.buyer, event.program)) if event.program else None
    terms = _terms(world, event, now)
    if code:
        try:
            services.request_submit(buyer=world.buyers[event.buyer], voucher_code=code, now=now, **terms)
            world.counts["requests"] += 1
            world.counts["requests_with_voucher"] += 1
            return
        except DomainError:
            world.counts["voucher_refused"] += 1
    services.request_submit(buyer=world.buyers[event.buyer], now=now, **terms)
    world.counts["requests"] += 1


def _submit_inference(world: World, event: SubmitInference, now: datetime) -> None:
    """Submit an inference request through ``request_submit_inference``: every GPU model allowed,
    or only the buyer's first choice under a variant that holds it there; with the voucher as
    :func:`_submit` (refused with it, the same request goes in without it). Terms the service
    refuses (``InvalidInput``: e.g. a TTFT its quote finds out of reach) are counted in
    ``requests_refused``, not retried."""
    code = world.codes.get((event.buyer, event.program)) if event.program else None
    first_choice_only = world.variant is not None and world.variant.first_choice_only
    terms = {
        "buyer": world.buyers[event.buyer],
        "llm_model": event.llm_model,
        "origin": event.origin,
        "output_tokens_per_second": event.output_tokens_per_second,
        "prompt_tokens": event.prompt_tokens,
        "output_tokens": event.output_tokens,
        "ttft_p95_ms": event.ttft_p95_ms,
        "max_price_per_million_tokens": event.max_price_per_million_tokens,
        "duration_hours": event.duration_hours,
        "gpu_models": [event.first_choice] if first_choice_only else None,
        "start_by": now + timedelta(hours=event.start_within_hours),
        "workload": event.workload,
        "now": now,
    }
    if code:
        try:
            services.request_submit_inference(voucher_code=code, **terms)
            world.counts["requests"] += 1
            world.counts["requests_with_voucher"] += 1
            return
        except DomainError:
            world.counts["voucher_refused"] += 1
    try:
        services.request_submit_inference(**terms)
    except InvalidInput as exc:
        world.counts["requests_refused"] += 1
        logger.info("inference request refused (%s): %s", exc.field, exc.message)
        return
    world.counts["requests"] += 1


def _terms(world: World, event: Submit, now: datetime) -> dict:
    extra = world.variant.request_terms(event.workload) if world.variant is not None else {}
    return {
        **extra,
        "gpu_model": world.models[event.gpu_model],
        "gpus_per_replica": event.gpus_per_replica,
        "replicas": event.replicas,
        "origin": world.regions[event.origin],
        "latency_class": event.latency_class,
        "max_price_per_gpu_hour": event.max_price_per_gpu_hour,
        "duration_hours": event.duration_hours,
        "start_by": now + timedelta(hours=event.start_within_hours),
    }


# --- figures --------------------------------------------------------------------------------------


def _figures(world: World, script: Script, config: SimulationConfig, floors, samples) -> dict:
    """The run's figures. Utilisation leaves out the first day of a run of two days or more: the
    market starts empty, and the ramp-up would say more about the start than about the policy."""
    catalogue = catalogue_of(world)
    step_hours = script.step.total_seconds() / 3600
    warmup = round(24 / step_hours) if config.days >= 2 else 0
    variant = variant_of(config.policy)
    return {
        "policy": config.policy,
        "placement": variant.policy,
        "features": list(variant.features),
        "scenario": config.scenario,
        "seed": config.seed,
        "days": config.days,
        "scale": config.scale,
        "step_minutes": config.step_minutes,
        "start": script.start.isoformat(),
        "events": dict(sorted(world.counts.items())),
        "utilisation_from_hour": round(warmup * step_hours),
        "utilisation": measure.utilisation(samples[warmup:], step_hours, catalogue),
        "demand": measure.demand_served(floors),
        **measure.matches_measured(floors, catalogue),
        "timings": measure.rounds_measured(floors),
        **_inference_figures(config, floors, catalogue),
    }


def _inference_figures(config: SimulationConfig, floors: measure.Floors, catalogue: Catalogue) -> dict:
    """``inference``: issue 15's figures, on an inference scenario only."""
    if SCENARIOS[config.scenario].demand != INFERENCE:
        return {}
    return {"inference": measure.inference_measured(floors, catalogue)}
