"""Why an inference demand's replicas went where they did, and what blocked the rest, in words and data.

An assignment's explanation carries the GPU-form keys (:class:`matching.problem.Explanation`) plus
why this GPU model and region won (``why``) and, under ``alternatives``, every other alternative of
the demand: its cost per million output tokens at its cheapest listing with free capacity before
the round, or what blocked it (one entry per GPU model: its cheapest alternative, or its block).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from matching import costs
from matching.inference_quote import MTOK_PER_TOKEN_PER_SECOND_HOUR, QUEUEING_MARGIN_MS
from matching.problem import (
    AlternativeCost,
    Assignment,
    Blocked,
    Explanation,
    InferenceAlternative,
    InferenceDemand,
)
from matching.substitution_batch import AnyCandidates
from matching.substitution_index import OPEN, STAGES, first_per_token


def label(alt: InferenceAlternative) -> str:
    """``h20 ×2 FP8`` (and ``measured`` when its figures are a provider's measurement)."""
    measured = " measured" if alt.source == "measured" else ""
    return f"{alt.gpu_model} ×{alt.gpus_per_replica} {alt.precision}{measured}"


def per_mtok(cost_units: int, alt: InferenceAlternative) -> Decimal:
    """CNY per million output tokens of one replica costing ``cost_units`` per GPU-hour, to the money
    quantum (float arithmetic: an explanation's figure, never a price charged)."""
    per_hour = cost_units * alt.gpus_per_replica / costs.UNITS_PER_CNY
    mtok = alt.tokens_per_second_per_replica * float(MTOK_PER_TOKEN_PER_SECOND_HOUR)
    return Decimal(f"{per_hour / mtok:.4f}")


def ttft_target_ms(alt: InferenceAlternative) -> float:
    """The TTFT target an alternative's RTT bound came from: bound + prefill + queueing margin."""
    return alt.rtt_bound_ms + alt.prefill_ms + QUEUEING_MARGIN_MS


def blocked_words(demand: InferenceDemand, alt: InferenceAlternative, c: AnyCandidates) -> tuple[str, Blocked]:
    """What keeps alternative ``alt`` (its candidates ``c``, ``c.stage`` not :data:`OPEN`) off every listing."""
    kind, model = STAGES[c.stage], alt.gpu_model
    within = f"within {costs.fmt_ms(round(alt.rtt_bound_ms, 1))} RTT of {demand.origin}"
    cap = costs.fmt_cny(costs.money(alt.max_price_per_gpu_hour))
    head = label(alt)
    if kind == "none_listed":
        which = " among its measured listings" if alt.listing_ids is not None else ""
        return f"{head}: no {model} listed{which}", Blocked(kind="none_listed")
    if kind == "node_size":
        return f"{head}: no {model} with nodes of >= {alt.gpus_per_replica} GPUs", Blocked(kind="node_size")
    if kind == "too_far":
        if c.nearest is None:
            return f"{head}: no {model} {within}", Blocked(kind="too_far")
        region, rtt = c.nearest
        return (
            f"{head}: no {model} {within} (nearest: {region} at {costs.fmt_ms(rtt)})",
            Blocked(kind="too_far", region=region, rtt_ms=rtt),
        )
    if kind in ("price", "budget"):
        cheapest = costs.fmt_cny(costs.from_units(c.cheapest or 0))
        what = (
            f"at <= {cap} CNY/GPU-h" if kind == "price" else f"with one replica within {demand.budget_per_hour} CNY/h"
        )
        return f"{head}: no {model} {within} {what} (cheapest there: {cheapest})", Blocked(
            kind="price", cheapest=cheapest
        )
    if kind == "reliability":
        need = costs.reliability_text(demand.min_reliability or 0.0)
        return f"{head}: no {model} {within} with reliability >= {need}", Blocked(kind="reliability")
    if kind == "window":
        by = f"{demand.start_by:%Y-%m-%d %H:%M}"
        return (
            f"{head}: no {model} {within} free for {demand.duration_hours} h starting by {by} UTC",
            Blocked(kind="window"),
        )
    return f"{head}: no {model} {within} has a node with {alt.gpus_per_replica} free GPUs", Blocked(kind="node_free")


def alternative_costs(
    demand: InferenceDemand,
    options: Sequence[AnyCandidates],
    cache: dict[tuple[object, ...], AlternativeCost],
    chosen: list[int] | None = None,
) -> list[AlternativeCost]:
    """Each GPU model among ``demand``'s alternatives, as the quote's frontier shows them: its
    cheapest alternative per million tokens (at its cheapest listing before the round), or, when
    none of them can serve, what blocked the one that got furthest through the rules.

    One entry per GPU model keeps an explanation's size bounded (a demand has up to 4 replica sizes
    × 3 precisions per model). ``cache`` holds entries by everything they depend on. ``chosen``: the
    alternatives to show, already chosen this way (:meth:`matching.substitution_round.Round.frontier`)."""
    # Per GPU model (in the order its first alternative comes), its open alternative cheapest per
    # token/s (then first), else its alternative blocked furthest through the rules (then first).
    alts = demand.alternatives
    if chosen is None:
        best: dict[str, tuple[tuple[int, float, int], int]] = {}
        for k, alt in enumerate(alts):
            c = options[k]
            rank = (0, first_per_token(c.first_cost, alt), k) if c.stage == OPEN else (1, -c.stage, k)
            was = best.get(alt.gpu_model)
            if was is None or rank < was[0]:
                best[alt.gpu_model] = (rank, k)
        chosen = [k for _, k in best.values()]
    out: list[AlternativeCost] = []
    for k in chosen:
        alt, c = alts[k], options[k]
        key: tuple[object, ...]
        if c.stage == OPEN:  # (what an open entry depends on: cheaper to hash than the alternative)
            key = (alt.gpu_model, alt.gpus_per_replica, alt.precision, alt.source)
            key += (alt.tokens_per_second_per_replica, c.first_cost)
        else:
            key = (alt, c.stage, c.nearest, c.cheapest, demand.origin)
            if STAGES[c.stage] in ("reliability", "window", "budget"):
                key += (demand.min_reliability, demand.start_by, demand.duration_hours, demand.budget_per_hour)
        entry = cache.get(key)
        if entry is None:
            entry = AlternativeCost(
                gpu_model=alt.gpu_model,
                gpus_per_replica=alt.gpus_per_replica,
                precision=alt.precision,
                source=alt.source,
                price_per_million_tokens=costs.money_text(per_mtok(c.first_cost, alt)) if c.stage == OPEN else None,
                blocked="" if c.stage == OPEN else blocked_words(demand, alt, c)[0],
            )
            cache[key] = entry
        out.append(entry)
    return out


#: An inference placement's latency cost (none: the TTFT target is the buyer's whole latency value).
_NO_LATENCY_COST = costs.money_text(Decimal(0))


def explain(
    demand: InferenceDemand,
    alt: InferenceAlternative,
    a: Assignment,
    others: list[AlternativeCost],
    policy_words: str,
    texts: dict[int, tuple[str, str, str]],
) -> Explanation:
    """JSON-ready explanation of inference assignment ``a`` (alternative ``alt`` of ``demand``).
    ``texts``: the texts of a listing's price, energy cost and start (the same for every one of a
    round's assignments on it), by listing id, filled as listings come."""
    listing = texts.get(a.listing_id)
    if listing is None:
        listing = texts[a.listing_id] = (
            costs.money_text(a.price_per_gpu_hour),
            costs.money_text(a.energy_cost_per_gpu_hour),
            costs.utc_text(a.starts_at),
        )
    mine = per_mtok(int(costs.money_units(a.cost_per_gpu_hour)), alt)
    target = ttft_target_ms(alt)
    why = (
        f"{label(alt)} in {a.region}: {costs.fmt_cny(mine)} CNY per million tokens at full load, TTFT "
        f"{a.ttft_ms:,.0f} ms within {target:,.0f} ms; {policy_words}"
    )
    voucher = demand.voucher
    return {
        "region": a.region,
        "listing_id": a.listing_id,
        "replicas": a.replicas,
        "gpus": a.gpus,
        "price_per_gpu_hour": listing[0],
        "energy_cost_per_gpu_hour": listing[1],
        "subsidy_per_gpu_hour": costs.money_text(a.subsidy_per_gpu_hour),
        "voucher_program": voucher.program if voucher and a.subsidy_per_gpu_hour > 0 else "",
        "latency_cost_per_gpu_hour": _NO_LATENCY_COST,
        "cost_per_gpu_hour": costs.money_text(a.cost_per_gpu_hour),
        "rtt_ms": a.rtt_ms,
        "latency_class": str(a.latency_class),
        "bound_ms": round(alt.rtt_bound_ms, 1),
        "starts_at": listing[2],
        "rejected": [],
        "gpu_model": alt.gpu_model,
        "precision": alt.precision,
        "ttft_ms": round(a.ttft_ms or 0.0, 1),
        "price_per_million_tokens": costs.money_text(mine),
        "why": why,
        # (One entry per GPU model: only the one of this model can be this alternative.)
        "alternatives": [o for o in others if o["gpu_model"] != alt.gpu_model or not _same(o, alt)],
    }


def _same(entry: AlternativeCost, alt: InferenceAlternative) -> bool:
    return (entry["gpu_model"], entry["gpus_per_replica"], entry["precision"], entry["source"]) == (
        alt.gpu_model,
        alt.gpus_per_replica,
        alt.precision,
        alt.source,
    )


def unserved_words(
    demand: InferenceDemand, options: Sequence[AnyCandidates], placed: float, budget_bound: bool
) -> tuple[str, Blocked]:
    """What kept ``demand`` below its target (``placed`` tokens/s placed), in words and data.

    ``budget_bound``: a listing with room was left for an open alternative, but the demand's budget
    could not pay another replica there.
    """
    asked = demand.tokens_per_second
    head = f"{placed:,.0f} of {asked:,.0f} tokens/s placed; " if placed else ""
    if any(c.stage == OPEN for c in options):
        if budget_bound:
            return (
                head + f"the budget of {demand.budget_per_hour} CNY/h cannot pay another replica",
                Blocked(kind="price"),
            )
        return head + "capacity taken by higher-priority or cheaper-placed demand", Blocked(kind="capacity")
    if not demand.alternatives:
        return "no alternative can serve this model", Blocked(kind="none_listed")
    # The alternative that got furthest through the rules says the most.
    k = max(range(len(options)), key=lambda n: (options[n].stage, -n))
    words, blocked = blocked_words(demand, demand.alternatives[k], options[k])
    return f"no alternative can serve: {words}", blocked
