"""Why an inference demand's replicas went where they did, and what blocked the rest, in words and data.

An assignment's explanation carries the GPU-form keys (:class:`matching.problem.Explanation`) plus
why this GPU model and region won (``why``) and, under ``alternatives``, every other alternative of
the demand: its cost per million output tokens at its cheapest listing with free capacity before
the round, or what blocked it.
"""

from __future__ import annotations

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
from matching.substitution_index import OPEN, STAGES, Candidates


def label(alt: InferenceAlternative) -> str:
    """``h20 ×2 FP8`` (and ``measured`` when its figures are a provider's measurement)."""
    measured = " measured" if alt.source == "measured" else ""
    return f"{alt.gpu_model} ×{alt.gpus_per_replica} {alt.precision}{measured}"


def per_mtok(cost_units: int, alt: InferenceAlternative) -> Decimal:
    """CNY per million output tokens of one replica costing ``cost_units`` per GPU-hour."""
    per_hour = costs.from_units(cost_units) * alt.gpus_per_replica
    mtok = Decimal(str(alt.tokens_per_second_per_replica)) * MTOK_PER_TOKEN_PER_SECOND_HOUR
    return costs.money(per_hour / mtok)


def ttft_target_ms(alt: InferenceAlternative) -> float:
    """The TTFT target an alternative's RTT bound came from: bound + prefill + queueing margin."""
    return alt.rtt_bound_ms + alt.prefill_ms + QUEUEING_MARGIN_MS


def blocked_words(demand: InferenceDemand, alt: InferenceAlternative, c: Candidates) -> tuple[str, Blocked]:
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


def alternative_costs(demand: InferenceDemand, options: list[Candidates]) -> list[AlternativeCost]:
    """Every alternative of ``demand``: its cheapest cost per million tokens, or what blocked it."""
    out: list[AlternativeCost] = []
    for alt, c in zip(demand.alternatives, options, strict=True):
        entry = AlternativeCost(
            gpu_model=alt.gpu_model, gpus_per_replica=alt.gpus_per_replica, precision=alt.precision, source=alt.source
        )
        if c.stage == OPEN:
            entry["price_per_million_tokens"] = costs.money_text(per_mtok(int(c.cost[0]), alt))
            entry["blocked"] = ""
        else:
            entry["price_per_million_tokens"] = None
            entry["blocked"] = blocked_words(demand, alt, c)[0]
        out.append(entry)
    return out


def explain(
    demand: InferenceDemand,
    alt: InferenceAlternative,
    a: Assignment,
    others: list[AlternativeCost],
    policy_words: str,
) -> Explanation:
    """JSON-ready explanation of inference assignment ``a`` (alternative ``alt`` of ``demand``)."""
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
        "price_per_gpu_hour": costs.money_text(a.price_per_gpu_hour),
        "energy_cost_per_gpu_hour": costs.money_text(a.energy_cost_per_gpu_hour),
        "subsidy_per_gpu_hour": costs.money_text(a.subsidy_per_gpu_hour),
        "voucher_program": voucher.program if voucher and a.subsidy_per_gpu_hour > 0 else "",
        "latency_cost_per_gpu_hour": costs.money_text(Decimal(0)),
        "cost_per_gpu_hour": costs.money_text(a.cost_per_gpu_hour),
        "rtt_ms": a.rtt_ms,
        "latency_class": str(a.latency_class),
        "bound_ms": round(alt.rtt_bound_ms, 1),
        "starts_at": costs.utc_text(a.starts_at),
        "rejected": [],
        "gpu_model": alt.gpu_model,
        "precision": alt.precision,
        "ttft_ms": round(a.ttft_ms or 0.0, 1),
        "price_per_million_tokens": costs.money_text(mine),
        "why": why,
        "alternatives": [o for o in others if not _same(o, alt)],
    }


def _same(entry: AlternativeCost, alt: InferenceAlternative) -> bool:
    return (entry["gpu_model"], entry["gpus_per_replica"], entry["precision"], entry["source"]) == (
        alt.gpu_model,
        alt.gpus_per_replica,
        alt.precision,
        alt.source,
    )


def unserved_words(
    demand: InferenceDemand, options: list[Candidates], placed: float, budget_bound: bool
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
