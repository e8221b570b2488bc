"""An inference quote: serve an LLM at a throughput under a TTFT target, priced per GPU model.

Pure Python, no Django. The buyer asks for ``tokens_per_second`` output tokens/s of an LLM under a
p95 time-to-first-token (TTFT) target from an origin, at most ``max_price_per_million_tokens``.
Each **alternative** is one way to serve it: (GPU model, GPUs per replica, precision), with

* its tokens/s per replica and prefill time: a provider's measurement where one applies to a
  listing (``matching.inference.profile_for``: measured beats modelled), else the roofline model;
  the listings of a GPU model that carry a measurement form their own alternative;
* its **RTT bound** = TTFT target − prefill − :data:`QUEUEING_MARGIN_MS` (the first token needs
  one round trip: the prompt goes out, the token comes back);
* its **replicas needed** = ⌈target ÷ tokens/s per replica⌉;
* its **price cap per GPU-hour** = cap per million tokens × the million tokens the *target* makes in
  an hour ÷ (replicas needed × GPUs per replica), rounded down to the money quantum: what the buyer
  pays for the replicas it needs stays within the cap per million tokens it asked for, however much
  the last replica rounds up.

Each alternative is quoted by the GPU-form machinery (:func:`matching.quote.plan_alone`: the
solver's plan for one request alone against the free capacity), as a request of that GPU model,
replica size, replica count, RTT bound and price cap, latency weight 0 (the TTFT target is the
buyer's whole latency value). The placement is the cheapest alternative per million tokens among
those that place the whole target (else the one that places most); the frontier keeps, per GPU
model, its cheapest placement or what blocked it, in words.

Money per million tokens is what the buyer pays (price − subsidy) per million output tokens it
gets: the tokens/s placed (replicas placed × tokens/s per replica) up to the tokens/s asked. A
placement that over-provisions pays for its idle share, so among whole placements the cheapest per
million tokens is the cheapest per hour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from matching import costs
from matching.inference import (
    BYTES_PER_PARAM,
    DEFAULT_ITL_TARGET_MS,
    GpuSpec,
    LlmSpec,
    MeasuredPoint,
    Source,
    profile_for,
)
from matching.problem import Assignment, ListingSpec, Plan, Problem, RequestSpec, VoucherTerms
from matching.quote import assignment_dict, plan_alone

#: Added to prefill and RTT in every TTFT: the p95 wait of a new prompt for its turn in a running
#: continuous batch, about two decode steps at the default ITL target (an estimate, not calibrated).
QUEUEING_MARGIN_MS = 2 * DEFAULT_ITL_TARGET_MS
#: Replica sizes a listing's node holds (a replica lives on one node).
GPUS_PER_REPLICA = (1, 2, 4, 8)
#: Output tokens per second held an hour, in millions: one token/s for an hour is 0.0036 Mtok.
MTOK_PER_TOKEN_PER_SECOND_HOUR = Decimal("0.0036")


@dataclass(frozen=True)
class InferenceTerms:
    """What an inference buyer asks for (validated by the caller: every figure positive)."""

    llm: LlmSpec
    origin: str
    tokens_per_second: Decimal
    prompt_tokens: int
    output_tokens: int
    ttft_ms: Decimal
    max_price_per_million_tokens: Decimal
    duration_hours: int
    start_by: datetime
    precision: str | None = None


@dataclass(frozen=True)
class Alternative:
    """One way to serve the terms: ``gpus_per_replica`` GPUs of ``gpu_model`` at ``precision``.

    ``listing_ids`` None: every listing of the GPU model without a measurement of this setup (the
    modelled alternative); a tuple: the listings whose measurement gives these figures. ``blocked``
    says in words why it cannot serve at all ("" when it may)."""

    gpu_model: str
    gpus_per_replica: int
    precision: str
    source: Source
    tokens_per_second_per_replica: float
    prefill_ms: float
    rtt_bound_ms: float
    max_price_per_gpu_hour: Decimal
    replicas_needed: int
    listing_ids: tuple[int, ...] | None = None
    blocked: str = ""

    @property
    def fits(self) -> bool:
        """The model fits this setup (its TTFT or price may still block it)."""
        return self.tokens_per_second_per_replica > 0

    def ttft_ms(self, rtt_ms: float) -> float:
        """TTFT served from a region ``rtt_ms`` away: RTT + queueing margin + prefill."""
        return rtt_ms + QUEUEING_MARGIN_MS + self.prefill_ms


@dataclass(frozen=True)
class AlternativeQuote:
    """An alternative and the GPU-form plan for it (None when it was blocked before solving)."""

    alternative: Alternative
    plan: Plan | None
    buyer_pays_per_hour: Decimal = Decimal(0)
    blocked: str = ""
    tokens_per_second_asked: float = 0.0

    @property
    def assignments(self) -> tuple[Assignment, ...]:
        return () if self.plan is None else self.plan.assignments

    @property
    def replicas_placed(self) -> int:
        return sum(a.replicas for a in self.assignments)

    @property
    def tokens_per_second(self) -> float:
        return self.replicas_placed * self.alternative.tokens_per_second_per_replica

    @property
    def ttft_ms(self) -> float | None:
        """The worst line's TTFT (None when nothing is placed)."""
        if not self.assignments:
            return None
        return self.alternative.ttft_ms(max(a.rtt_ms for a in self.assignments))

    @property
    def tokens_per_second_served(self) -> float:
        """Tokens/s placed, up to the tokens/s asked: what the buyer gets out of it."""
        return min(self.tokens_per_second, self.tokens_per_second_asked)

    @property
    def price_per_million_tokens(self) -> Decimal | None:
        """What the buyer pays per million output tokens served (None: nothing placed)."""
        if not self.assignments:
            return None
        return per_million_tokens(self.buyer_pays_per_hour, self.tokens_per_second_served)

    def rank(self) -> tuple[float, Decimal, int, int]:
        """Sort key, best first: more tokens/s served, cheaper per million tokens, fewer GPUs."""
        price = self.price_per_million_tokens
        return (
            -self.tokens_per_second_served,
            Decimal("Infinity") if price is None else price,
            self.alternative.gpus_per_replica * self.replicas_placed,
            self.alternative.gpus_per_replica,
        )


@dataclass(frozen=True)
class InferenceQuote:
    """The placement (the best alternative's, None when nothing places) and the frontier by GPU model."""

    terms: InferenceTerms
    best: AlternativeQuote | None
    frontier: dict[str, AlternativeQuote] = field(default_factory=dict)
    alternatives: tuple[AlternativeQuote, ...] = ()


def per_million_tokens(cny_per_hour: Decimal, tokens_per_second: float) -> Decimal:
    """CNY per hour ÷ million tokens made per hour at ``tokens_per_second``, to the money quantum."""
    mtok_per_hour = Decimal(str(tokens_per_second)) * MTOK_PER_TOKEN_PER_SECOND_HOUR
    return costs.money(cny_per_hour / mtok_per_hour)


def budget_per_hour(cap_per_million_tokens: Decimal, target: Decimal) -> Decimal:
    """CNY an hour of ``target`` output tokens/s may cost at the cap per million tokens (exact): an
    inference demand's ``budget_per_hour``, and its spend reservation's rate."""
    return cap_per_million_tokens * target * MTOK_PER_TOKEN_PER_SECOND_HOUR


def price_cap_per_gpu_hour(cap_per_million_tokens: Decimal, target: Decimal, replicas: int, gpus: int) -> Decimal:
    """The most a GPU-hour may cost so ``replicas`` of ``gpus`` GPUs making ``target`` tokens/s cost
    at most the cap per million tokens (rounded down to the money quantum)."""
    per_hour = budget_per_hour(cap_per_million_tokens, target)
    return (per_hour / (replicas * gpus)).quantize(costs.MONEY_QUANTUM, rounding=ROUND_DOWN)


def replicas_for(target: Decimal, tokens_per_second: float) -> int:
    """Replicas of ``tokens_per_second`` each that reach ``target`` (at least one)."""
    return max(1, math.ceil(float(target) / tokens_per_second))


def _alternative(
    terms: InferenceTerms,
    gpu: GpuSpec,
    gpus: int,
    precision: str,
    source: Source,
    tps: float,
    prefill_ms: float,
    *,
    reason: str = "",
    listing_ids: tuple[int, ...] | None = None,
) -> Alternative:
    if reason:
        blocked = f"{gpu.code}: {reason}"
        return Alternative(gpu.code, gpus, precision, source, 0.0, 0.0, 0.0, Decimal(0), 0, listing_ids, blocked)
    bound = float(terms.ttft_ms) - prefill_ms - QUEUEING_MARGIN_MS
    blocked = ""
    if bound < 0:
        blocked = (
            f"{gpu.code}: prefill of {terms.prompt_tokens:,} tokens takes {prefill_ms:,.0f} ms on {gpus}, "
            f"+ {QUEUEING_MARGIN_MS:,.0f} ms queueing: over the {terms.ttft_ms:,.0f} ms TTFT before any network"
        )
    replicas = replicas_for(terms.tokens_per_second, tps)
    return Alternative(
        gpu_model=gpu.code,
        gpus_per_replica=gpus,
        precision=precision,
        source=source,
        tokens_per_second_per_replica=tps,
        prefill_ms=prefill_ms,
        rtt_bound_ms=max(bound, 0.0),
        max_price_per_gpu_hour=price_cap_per_gpu_hour(
            terms.max_price_per_million_tokens, terms.tokens_per_second, replicas, gpus
        ),
        replicas_needed=replicas,
        listing_ids=listing_ids,
        blocked=blocked,
    )


def alternatives_of(
    terms: InferenceTerms,
    gpus: Iterable[GpuSpec],
    listings: Sequence[ListingSpec],
    measured: dict[int, list[MeasuredPoint]],
) -> list[Alternative]:
    """Every (GPU model, GPUs per replica, precision) for ``terms``, modelled, plus one per group of
    ``listings`` (by id in ``measured``) whose measurement of that setup gives the same figures."""
    precisions = (terms.precision,) if terms.precision else terms.llm.precisions
    found: list[Alternative] = []
    for gpu in gpus:
        own = [listing for listing in listings if listing.gpu_model == gpu.code]
        for precision in precisions:
            for size in GPUS_PER_REPLICA:
                groups: dict[tuple[float, float], list[int]] = {}
                for listing in (listing for listing in own if listing.id in measured):
                    profile = profile_for(
                        terms.llm,
                        gpu,
                        size,
                        precision,
                        prompt_tokens=terms.prompt_tokens,
                        output_tokens=terms.output_tokens,
                        measured=measured.get(listing.id, ()),
                    )
                    if profile.source == "measured":
                        groups.setdefault((profile.tokens_per_second, profile.ttft_ms), []).append(listing.id)
                for (tps, ttft), ids in groups.items():
                    found.append(
                        _alternative(terms, gpu, size, precision, "measured", tps, ttft, listing_ids=tuple(ids))
                    )
                modelled = profile_for(
                    terms.llm,
                    gpu,
                    size,
                    precision,
                    prompt_tokens=terms.prompt_tokens,
                    output_tokens=terms.output_tokens,
                )
                found.append(
                    _alternative(
                        terms,
                        gpu,
                        size,
                        precision,
                        "modelled",
                        modelled.tokens_per_second,
                        modelled.ttft_ms,
                        reason=modelled.reason,
                    )
                )
    return found


def best_ttft_ms(alternatives: Iterable[Alternative], nearest_rtt_ms: float) -> float | None:
    """The least TTFT any fitting alternative reaches from a region ``nearest_rtt_ms`` away (None: none fits)."""
    ttfts = [a.ttft_ms(nearest_rtt_ms) for a in alternatives if a.fits]
    return min(ttfts) if ttfts else None


def request_of(terms: InferenceTerms, alternative: Alternative, voucher: VoucherTerms | None) -> RequestSpec:
    """The GPU-form request an alternative is quoted as (request 0: a quote)."""
    return RequestSpec(
        id=0,
        gpu_model=alternative.gpu_model,
        gpus_per_replica=alternative.gpus_per_replica,
        replicas=alternative.replicas_needed,
        origin=terms.origin,
        max_rtt_ms=alternative.rtt_bound_ms,
        max_price_per_gpu_hour=alternative.max_price_per_gpu_hour,
        duration_hours=terms.duration_hours,
        start_by=terms.start_by,
        latency_weight=Decimal(0),
        voucher=voucher,
    )


def _listings_for(problem: Problem, alternative: Alternative, measured_ids: set[int]) -> tuple[ListingSpec, ...]:
    """The listings an alternative may use: its own measured group, or its GPU model's unmeasured ones."""
    if alternative.listing_ids is not None:
        return tuple(listing for listing in problem.listings if listing.id in alternative.listing_ids)
    return tuple(
        listing
        for listing in problem.listings
        if listing.gpu_model == alternative.gpu_model and listing.id not in measured_ids
    )


def _none_free(
    terms: InferenceTerms, alternative: Alternative, listings: Sequence[ListingSpec], problem: Problem, unserved: str
) -> str:
    """Why an alternative placed nothing, in the buyer's terms."""
    within = f"{alternative.gpu_model} within {terms.ttft_ms:,.0f} ms TTFT"
    if not listings:
        return f"{alternative.gpu_model}: none free"
    near = [
        listing
        for listing in listings
        if (rtt := costs.rtt_between(problem.rtt_ms, terms.origin, listing.region)) is not None
        and rtt <= alternative.rtt_bound_ms
    ]
    if not near:
        return f"{within}: none free within {alternative.rtt_bound_ms:,.0f} ms RTT of {terms.origin}"
    if all(listing.price_per_gpu_hour > alternative.max_price_per_gpu_hour for listing in near):
        return f"{within}: none free under {costs.fmt_cny(terms.max_price_per_million_tokens)} CNY/Mtok"
    return f"{within}: {unserved}" if unserved else f"{within}: none free"


def quote_alternative(
    problem: Problem,
    terms: InferenceTerms,
    alternative: Alternative,
    voucher: VoucherTerms | None,
    measured_ids: set[int],
) -> AlternativeQuote:
    """The GPU-form plan for one alternative against its listings in ``problem``."""
    asked = float(terms.tokens_per_second)
    if alternative.blocked:
        return AlternativeQuote(alternative, None, blocked=alternative.blocked, tokens_per_second_asked=asked)
    listings = _listings_for(problem, alternative, measured_ids)
    plan = plan_alone(replace(problem, requests=(), listings=listings), request_of(terms, alternative, voucher))
    pays = sum(
        ((a.price_per_gpu_hour - a.subsidy_per_gpu_hour) * a.gpus for a in plan.assignments),
        Decimal(0),
    )
    blocked = ""
    if not plan.assignments:
        blocked = _none_free(terms, alternative, listings, problem, plan.unserved[0].reason if plan.unserved else "")
    return AlternativeQuote(alternative, plan, buyer_pays_per_hour=pays, blocked=blocked, tokens_per_second_asked=asked)


def _frontier_point(quotes: list[AlternativeQuote]) -> AlternativeQuote:
    """A GPU model's cheapest placement, or its most telling block: none free beats TTFT beats fit."""
    placed = [q for q in quotes if q.assignments]
    if placed:
        return min(placed, key=AlternativeQuote.rank)
    solved = [q for q in quotes if q.plan is not None]
    if solved:  # fits and reaches in time, but nothing free: the widest RTT bound says the most
        return max(solved, key=lambda q: (q.alternative.rtt_bound_ms, -q.alternative.gpus_per_replica))
    fitting = [q for q in quotes if q.alternative.fits]
    if fitting:  # fits, but its prefill alone is over the TTFT: the fastest prefill says how far off
        return min(fitting, key=lambda q: q.alternative.prefill_ms)
    # Nothing fits: the setup with the most memory per weight (fewest bytes, most GPUs) says how far off.
    return max(quotes, key=lambda q: (-BYTES_PER_PARAM[q.alternative.precision], q.alternative.gpus_per_replica))


def inference_quote(
    problem: Problem,
    terms: InferenceTerms,
    alternatives: Sequence[Alternative],
    voucher_of: Callable[[Alternative], VoucherTerms | None] = lambda alternative: None,
) -> InferenceQuote:
    """Quote every alternative against ``problem``'s listings (its requests are ignored).

    Contract: ``alternatives`` from :func:`alternatives_of` for these ``terms`` and listings.
    ``voucher_of`` gives the voucher an alternative plans with (None: no subsidy on it).
    """
    measured_ids = {i for a in alternatives if a.listing_ids is not None for i in a.listing_ids}
    quotes = [quote_alternative(problem, terms, a, voucher_of(a), measured_ids) for a in alternatives]
    by_model: dict[str, list[AlternativeQuote]] = {}
    for q in quotes:
        by_model.setdefault(q.alternative.gpu_model, []).append(q)
    frontier = {model: _frontier_point(own) for model, own in by_model.items()}
    placed = [q for q in quotes if q.assignments]
    best = min(placed, key=AlternativeQuote.rank) if placed else None
    return InferenceQuote(terms=terms, best=best, frontier=frontier, alternatives=tuple(quotes))


# --- JSON ----------------------------------------------------------------------------------------


def _float(value: float | None, places: int = 1) -> float | None:
    return None if value is None else round(value, places)


def alternative_dict(q: AlternativeQuote) -> dict[str, object]:
    """One alternative as the API shows it: its figures, what it placed and what blocked it."""
    a = q.alternative
    price = q.price_per_million_tokens
    regions = sorted({line.region for line in q.assignments})
    return {
        "gpu_model": a.gpu_model,
        "gpus_per_replica": a.gpus_per_replica,
        "precision": a.precision,
        "source": a.source,
        "tokens_per_second_per_replica": _float(a.tokens_per_second_per_replica),
        "prefill_ms": _float(a.prefill_ms),
        "rtt_bound_ms": _float(a.rtt_bound_ms) if a.fits else None,
        "max_price_per_gpu_hour": costs.money_text(a.max_price_per_gpu_hour) if a.fits else None,
        "replicas_needed": a.replicas_needed if a.fits else None,
        "replicas_placed": q.replicas_placed,
        "tokens_per_second": _float(q.tokens_per_second),
        "tokens_per_second_served": _float(q.tokens_per_second_served),
        "regions": regions,
        "ttft_ms": _float(q.ttft_ms),
        "price_per_million_tokens": None if price is None else costs.money_text(price),
        "blocked": q.blocked,
    }


def quote_dict(quote: InferenceQuote) -> dict[str, object]:
    """JSON-friendly: the placement's figures and lines, the frontier by GPU model, every alternative."""
    best = quote.best
    placed = alternative_dict(best) if best is not None else None
    unserved = ""
    if best is None:
        unserved = "; ".join(q.blocked for q in quote.frontier.values() if q.blocked)
    elif Decimal(str(best.tokens_per_second)) < quote.terms.tokens_per_second:
        unserved = f"only {best.tokens_per_second:,.0f} of {quote.terms.tokens_per_second:,} tokens/s free"
    return {
        "kind": "inference",
        "llm_model": quote.terms.llm.code,
        "tokens_per_second_asked": str(quote.terms.tokens_per_second),
        "tokens_per_second_placed": 0.0 if best is None else _float(best.tokens_per_second),
        "ttft_p95_ms": str(quote.terms.ttft_ms),
        "queueing_margin_ms": QUEUEING_MARGIN_MS,
        "chosen": placed,
        "unserved_reason": unserved,
        "placement": [] if best is None else [assignment_dict(a) for a in best.assignments],
        "frontier": [alternative_dict(q) for _, q in sorted(quote.frontier.items())],
        "alternatives": [alternative_dict(q) for q in quote.alternatives],
    }
