"""Reading a run's figures back from the database: utilisation, service, prices, latency, vouchers.

An analysis tool, so it queries the models directly (aggregates only; nothing here writes). A run
is scoped by the ids it created: everything above the :class:`Floors` taken before it began, so a
run on a database that already has a market measures only its own listings and requests.

Figures are floats rounded for the report; the money they come from stays ``Decimal`` until the
final division.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Max, Sum

from marketplace.models import BuyerRequest, Listing, Match, MatchingRun, Settlement
from marketplace.simulation.scenario import CST, Catalogue
from matching.inference import BYTES_PER_PARAM, prefill_seconds
from matching.inference_quote import MTOK_PER_TOKEN_PER_SECOND_HOUR, QUEUEING_MARGIN_MS
from matching.latency import rtt_bound_ms

ZERO = Decimal(0)


@dataclass(frozen=True)
class Floors:
    """The highest listing, request and matching-run ids before the run: its rows are above them."""

    listing: int
    request: int
    run: int

    @classmethod
    def now(cls) -> Floors:
        def top(model) -> int:
            return model.objects.aggregate(top=Max("pk"))["top"] or 0

        return cls(listing=top(Listing), request=top(BuyerRequest), run=top(MatchingRun))


@dataclass(frozen=True)
class Sample:
    """GPUs listed and held per region at one instant (``held``: live matches already started)."""

    at: datetime
    listed: dict[str, int]
    held: dict[str, int]


def capacity_sample(floors: Floors, now: datetime) -> Sample:
    """Listed and held GPUs per region of the run's listings at ``now``: two queries."""
    listed = (
        Listing.objects.filter(pk__gt=floors.listing, status=Listing.Status.ACTIVE)
        .filter(available_from__lte=now, available_until__gt=now)
        .values_list("region__code")
        .annotate(gpus=Sum("gpu_count"))
    )
    held = (
        Match.objects.filter(listing_id__gt=floors.listing, status__in=Match.LIVE_STATUSES)
        .filter(starts_at__lte=now, ends_at__gt=now)
        .values_list("listing__region__code")
        .annotate(gpus=Sum("gpus"))
    )
    return Sample(at=now, listed=dict(listed), held=dict(held))


def utilisation(samples: list[Sample], step_hours: float, catalogue: Catalogue) -> dict:
    """GPU-hours held / GPU-hours listed: western hubs, eastern ones, all, per region, per CST hour."""
    listed: dict[str, float] = {}
    held: dict[str, float] = {}
    by_hour: dict[str, list[list[float]]] = {}
    for sample in samples:
        hour = sample.at.astimezone(CST).hour
        for region, gpus in sample.listed.items():
            listed[region] = listed.get(region, 0) + gpus * step_hours
            held[region] = held.get(region, 0) + sample.held.get(region, 0) * step_hours
            cell = by_hour.setdefault(region, [[0.0, 0.0] for _ in range(24)])[hour]
            cell[0] += gpus
            cell[1] += sample.held.get(region, 0)

    def share(regions) -> float:
        total = sum(listed[r] for r in regions)
        return round(sum(held[r] for r in regions) / total, 4) if total else 0.0

    west = [r for r in listed if catalogue.is_west[r]]
    east = [r for r in listed if not catalogue.is_west[r]]
    return {
        "west": share(west),
        "east": share(east),
        "all": share(west + east),
        "gpu_hours_listed": {"west": round(sum(listed[r] for r in west)), "east": round(sum(listed[r] for r in east))},
        "by_region": {r: {"is_west": catalogue.is_west[r], "utilisation": share([r])} for r in sorted(listed)},
        "by_hour": {r: [round(h / n, 4) if n else None for n, h in cells] for r, cells in sorted(by_hour.items())},
    }


def demand_served(floors: Floors) -> dict:
    """Replicas and GPU-hours asked for and served, in total and per latency class.

    Served replicas are those placed on matches that did not fail (``matched_replicas``); served
    GPU-hours are what settlements metered, so a failed-over match counts the hours it ran.
    """
    asked: dict[str, dict] = {}
    requests = BuyerRequest.objects.filter(pk__gt=floors.request).values_list(
        "latency_class", "replicas", "gpus_per_replica", "duration_hours", "matched_replicas"
    )
    for latency_class, replicas, size, hours, matched in requests:
        row = asked.setdefault(latency_class, {"requests": 0, "replicas": 0, "served_replicas": 0, "gpu_hours": 0})
        row["requests"] += 1
        row["replicas"] += replicas
        row["served_replicas"] += matched
        row["gpu_hours"] += replicas * size * hours
    metered = (
        Settlement.objects.filter(match__request_id__gt=floors.request)
        .values_list("match__request__latency_class")
        .annotate(hours=Sum("gpu_hours"))
    )
    for latency_class, hours in metered:
        asked[latency_class]["served_gpu_hours"] = float(hours)
    for row in asked.values():
        row.setdefault("served_gpu_hours", 0.0)
    return {"by_class": dict(sorted(asked.items())), **_totals(asked)}


def _totals(by_class: dict) -> dict:
    total = {key: sum(row[key] for row in by_class.values()) for key in ("requests", "replicas", "served_replicas")}
    hours = sum(row["gpu_hours"] for row in by_class.values())
    served_hours = sum(row["served_gpu_hours"] for row in by_class.values())
    return {
        **total,
        "gpu_hours": hours,
        "served_gpu_hours": round(served_hours, 2),
        "served_replica_share": round(total["served_replicas"] / total["replicas"], 4) if total["replicas"] else 0.0,
        "served_gpu_hour_share": round(served_hours / hours, 4) if hours else 0.0,
    }


MATCH_FIELDS = (
    "rtt_ms",
    "request__latency_class",
    "request__max_rtt_ms",
    "listing__region__code",
    "listing__gpu_model__code",
    "energy_cost_per_gpu_hour",
    "settlement__gpu_hours",
    "settlement__gross",
    "settlement__subsidy",
    "settlement__buyer_pays",
    "request__kind",
)


def matches_measured(floors: Floors, catalogue: Catalogue) -> dict:
    """Latency-bound violations, prices, energy, voucher spend and where the GPU-hours went.

    Every GPU-form match of the run's requests is checked against its request's bound (the explicit
    ``max_rtt_ms``, else its class's); an inference match's bound is its alternative's (TTFT less
    prefill and margin), which :func:`inference_measured` checks as a TTFT instead. Money comes
    from the settlements (every match is settled once the run has drained).
    """
    sums = {"hours": ZERO, "gross": ZERO, "subsidy": ZERO, "pays": ZERO, "energy": ZERO, "indicative": ZERO}
    west_hours, violations, points, count = ZERO, 0, [], 0
    for row in Match.objects.filter(request_id__gt=floors.request).values_list(*MATCH_FIELDS).order_by("pk"):
        rtt, latency_class, explicit, region, model, energy, hours, gross, subsidy, pays, kind = row
        count += 1
        bound = rtt_bound_ms(explicit, latency_class) if kind == BuyerRequest.Kind.GPUS else None
        violations += bound is not None and rtt > bound
        if hours is None:  # not settled: the run did not drain
            continue
        indicative = catalogue.indicative_price[model]
        for key, value in zip(sums, (hours, gross, subsidy, pays, energy * hours, indicative * hours), strict=True):
            sums[key] += value
        west_hours += hours if catalogue.is_west[region] else ZERO
        if hours:
            points.append([float(rtt), round(float(pays / hours / indicative), 4), latency_class, model])
    return {"matches": count, "latency_violations": violations, "points": points, **_money(sums, west_hours)}


def _money(sums: dict, west_hours: Decimal) -> dict:
    hours = sums["hours"]

    def per_hour(value: Decimal) -> float:
        return round(float(value / hours), 4) if hours else 0.0

    return {
        "settled_gpu_hours": round(float(hours), 2),
        "avg_price_paid": per_hour(sums["pays"]),
        "avg_list_price": per_hour(sums["gross"]),
        "price_index": round(float(sums["pays"] / sums["indicative"]), 4) if sums["indicative"] else 0.0,
        "energy_cost_per_gpu_hour": per_hour(sums["energy"]),
        "voucher_spend": round(float(sums["subsidy"]), 2),
        "buyer_pays": round(float(sums["pays"]), 2),
        "west_share_of_gpu_hours": round(float(west_hours / hours), 4) if hours else 0.0,
    }


def rounds_measured(floors: Floors) -> dict:
    """How many rounds ran and how long their plan builders took (wall time: not deterministic)."""
    runs = MatchingRun.objects.filter(pk__gt=floors.run)
    solve_ms = sum((timings or {}).get("solve", 0) for timings in runs.values_list("timings_ms", flat=True))
    return {"rounds": runs.count(), "solve_seconds": round(solve_ms / 1000, 2)}


# --- inference demand (issue 15) -------------------------------------------------------------------

#: A recorded TTFT and its recomputation may differ by the rounding of the stored figures (0.1 ms)
#: and of the RTT table's; beyond this the recomputation is counted as a disagreement.
TTFT_TOLERANCE_MS = 1.0

INFERENCE_MATCH_FIELDS = (
    "request_id",
    "tokens_per_second",
    "ttft_ms",
    "gpus",
    "gpus_per_replica",
    "precision",
    "listing__region__code",
    "listing__gpu_model__code",
    "request__origin__code",
    "request__inference__ttft_p95_ms",
    "request__inference__prompt_tokens",
    "request__inference__llm_model__code",
    "settlement__gpu_hours",
    "settlement__buyer_pays",
)


@dataclass(frozen=True)
class TtftCheck:
    """One inference match's TTFT against its request's target, checked outside the engine:
    ``violation`` when no TTFT was recorded, the recorded TTFT is over the target, or the TTFT
    recomputed here (RTT from the RTT table + queueing margin + modelled prefill) is over it."""

    recorded: float | None
    recomputed: float | None
    target: float

    @property
    def violation(self) -> bool:
        if self.recorded is None or self.recorded > self.target:
            return True
        return self.recomputed is not None and self.recomputed > self.target + TTFT_TOLERANCE_MS

    @property
    def disagrees(self) -> bool:
        """The recorded and recomputed TTFTs differ by more than the tolerance (or one is missing)."""
        if self.recorded is None or self.recomputed is None:
            return True
        return abs(self.recorded - self.recomputed) > TTFT_TOLERANCE_MS


def ttft_recomputed(
    catalogue: Catalogue, *, llm: str, gpu: str, gpus: int, precision: str, prompt_tokens: int, origin: str, region: str
) -> float | None:
    """A match's TTFT from first principles: the RTT table's origin → region, the quote's queueing
    margin, and the throughput model's prefill of the prompt on that replica (None: the precision
    or a spec is unknown). The simulation publishes no measured profiles, so modelled is what
    every placement used."""
    if llm not in catalogue.llms or gpu not in catalogue.gpus or precision not in BYTES_PER_PARAM:
        return None
    prefill_ms = prefill_seconds(catalogue.llms[llm], catalogue.gpus[gpu], gpus, precision, prompt_tokens) * 1000
    return catalogue.rtt_ms[origin, region] + QUEUEING_MARGIN_MS + prefill_ms


def inference_measured(floors: Floors, catalogue: Catalogue) -> dict:
    """The inference requests' figures: output token-hours (tokens/s × hours) asked and served,
    what buyers paid per million output tokens, TTFT checks and where the tokens were served.

    Served token-hours of a request are its matches' tokens/s × the hours each ran (settled
    GPU-hours ÷ GPUs), at most its target × duration: a replica beyond the target is over-
    provisioning the buyer pays for but does not use. CNY per million output tokens = Σ buyer
    pays ÷ (served token-hours × 0.0036). Every inference match is checked (:class:`TtftCheck`),
    settled or not.
    """
    asked: dict[int, tuple[float, float]] = {}  # request → (target tokens/s, token-hours asked)
    placed_now = ZERO
    requests = BuyerRequest.objects.filter(pk__gt=floors.request, kind=BuyerRequest.Kind.INFERENCE).values_list(
        "pk", "duration_hours", "inference__output_tokens_per_second", "inference__tokens_per_second_placed"
    )
    for pk, hours, target, placed in requests:
        asked[pk] = (float(target), float(target) * hours)
        placed_now += min(placed, target)
    made: dict[int, float] = {}
    pays, by_model, west_tokens = ZERO, {}, 0.0
    checks: list[TtftCheck] = []
    matches = Match.objects.filter(request_id__gt=floors.request, request__kind=BuyerRequest.Kind.INFERENCE)
    for row in matches.values_list(*INFERENCE_MATCH_FIELDS).order_by("pk"):
        request, tps, ttft, gpus, size, precision, region, model, origin, target, prompt, llm, hours, paid = row
        recomputed = ttft_recomputed(
            catalogue,
            llm=llm,
            gpu=model,
            gpus=size,
            precision=precision,
            prompt_tokens=prompt,
            origin=origin,
            region=region,
        )
        checks.append(TtftCheck(None if ttft is None else float(ttft), recomputed, float(target)))
        if hours is None or tps is None:  # not settled (the run did not drain), or no throughput recorded
            continue
        token_hours = float(tps) * float(hours) / gpus
        made[request] = made.get(request, 0.0) + token_hours
        pays += paid
        by_model[model] = by_model.get(model, 0.0) + token_hours
        west_tokens += token_hours if catalogue.is_west[region] else 0.0
    served = sum(min(made.get(pk, 0.0), cap) for pk, (_, cap) in asked.items())
    made_total = sum(made.values())
    asked_total = sum(cap for _, cap in asked.values())
    mtok = served * float(MTOK_PER_TOKEN_PER_SECOND_HOUR)
    shares = {m: round(v / made_total, 4) for m, v in sorted(by_model.items())} if made_total else {}
    return {
        "requests": len(asked),
        "tokens_per_second_asked": round(sum(target for target, _ in asked.values()), 1),
        "tokens_per_second_placed": round(float(placed_now), 1),
        "token_hours_asked": round(asked_total, 1),
        "token_hours_served": round(served, 1),
        "token_hours_made": round(made_total, 1),
        "served_share": round(served / asked_total, 4) if asked_total else 0.0,
        "requests_served": sum(1 for pk in asked if made.get(pk, 0.0) > 0),
        "million_tokens_served": round(mtok, 2),
        "buyer_pays": round(float(pays), 2),
        "cny_per_million_tokens": round(float(pays) / mtok, 4) if mtok else 0.0,
        "matches": len(checks),
        "ttft_violations": sum(check.violation for check in checks),
        "ttft_recomputed_disagreements": sum(check.disagrees for check in checks),
        "west_share_of_tokens": round(west_tokens / made_total, 4) if made_total else 0.0,
        "token_share_by_gpu_model": shares,
    }
