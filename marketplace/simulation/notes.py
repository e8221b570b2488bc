"""The closing note of the report: what drives the differences between the policies, with figures."""

from __future__ import annotations

from marketplace.simulation.variants import MARKET
from matching.policies import CHEAPEST, ENGINE, NEAREST


def _share(o: dict, cls: str) -> float:
    row = o["demand"]["by_class"].get(cls)
    return row["served_gpu_hours"] / row["gpu_hours"] if row and row["gpu_hours"] else 0.0


def _pts(a: float, b: float) -> str:
    """A difference of two shares in percentage points, signed."""
    return f"{(a - b) * 100:+.1f} points"


def drivers(outcomes: dict, labels: dict) -> str:
    """Paragraphs comparing the engine with each baseline; needs all three policies' figures."""
    if not all(p in outcomes for p in (ENGINE, NEAREST, CHEAPEST)):
        return "Run all three policies (`--policy all`) for this note.\n"
    e, n, c = outcomes[ENGINE], outcomes[NEAREST], outcomes[CHEAPEST]
    return "\n".join(
        [
            _nearest_paragraph(e, n),
            "",
            _cheapest_paragraph(e, c),
            "",
            _limits_paragraph(e, n),
            "",
            *([_market_paragraph(outcomes[MARKET], e, n), ""] if MARKET in outcomes else []),
        ]
    )


def _nearest_paragraph(e: dict, n: dict) -> str:
    return (
        "**Against nearest region first.** A buyer who picks the closest data centre puts latency-tolerant "
        "work (interactive, standard) on the scarce, dear capacity of the eastern hubs and cities "
        f"(eastern utilisation {n['utilisation']['east']:.0%} against the engine's {e['utilisation']['east']:.0%}), "
        "so the real-time chat traffic that arrives in the evening finds the only capacity within "
        f"10 ms already taken: real-time GPU-hours served {_pts(_share(e, 'realtime'), _share(n, 'realtime'))} "
        "for the engine. The engine sends that work west, where power is cheap "
        f"(share of served GPU-hours in the west {e['west_share_of_gpu_hours']:.0%} against "
        f"{n['west_share_of_gpu_hours']:.0%}; energy {e['energy_cost_per_gpu_hour']:.3f} against "
        f"{n['energy_cost_per_gpu_hour']:.3f} CNY per GPU-hour), and buyers pay "
        f"{e['avg_price_paid']:.2f} instead of {n['avg_price_paid']:.2f} CNY per GPU-hour "
        f"({e['price_index']:.1%} of indicative prices instead of {n['price_index']:.1%})."
    )


def _cheapest_paragraph(e: dict, c: dict) -> str:
    return (
        "**Against cheapest first.** Sorting offers by price already sends tolerant work west, so the "
        "placements are close to the engine's; the engine's edge is that it solves each round as a "
        "whole — all requests against all capacity, most replicas first, then least cost — instead of "
        "letting the earliest request take the cheapest nodes a later, pickier one needed: replicas "
        f"served {e['demand']['served_replicas']} against {c['demand']['served_replicas']}, real-time "
        f"GPU-hours {_pts(_share(e, 'realtime'), _share(c, 'realtime'))}. Rounds here are every step, "
        "so each one sees only the demand of one step; the larger a round's batch of contending "
        "requests, the more this matters."
    )


def _limits_paragraph(e: dict, n: dict) -> str:
    return (
        "**What the engine does not do.** Each round is myopic: it does not hold capacity back for demand "
        "that has not arrived. Filling cheap western nodes with interactive and standard work by day "
        "can leave low-capped night batch jobs without a western node of their model "
        f"(batch GPU-hours served: engine {_share(e, 'batch'):.0%}, nearest-first {_share(n, 'batch'):.0%}), "
        "which is why nearest-first can serve as many or more GPU-hours in total while serving fewer "
        "replicas and less real-time demand. Demand nobody can serve — a real-time request from a city "
        "with no capacity of its GPU model within 10 ms, a cap below every listed price — is the same "
        "for all three policies. No policy broke a latency bound: the baselines differ only in the order "
        "of choice, never in what is feasible."
    )


def _market_paragraph(m: dict, e: dict, n: dict) -> str:
    """The engine with providers following the guidance, against the engine alone and nearest-first."""
    events = m["events"]
    down, up, kept = (events.get(k, 0) for k in ("reprices_down", "reprices_up", "reprices_kept"))
    features = m.get("features", [])
    return (
        "**Engine with market features.** The same engine with the features "
        f"{', '.join(f'`{name}`' for name in features)} on (`marketplace/simulation/variants.py`): once a day "
        "the providers move each idle listing's price halfway toward its suggested price "
        f"({down} cuts, {up} rises; {kept} times an idle listing had no price that would fill it — out of "
        "reach, wrong node size or window — and kept its price); with `look-ahead` the rounds price near "
        "capacity at its recent rent for requests that could go elsewhere and hold far-off requests to the "
        "end of the hour; with `interruptible-batch` every listing offers its idle GPUs as interruptible at "
        "60 % of its price and batch requests bid for them (pre-empted when on-demand demand needs the "
        "GPUs). Against the engine alone: GPU-hours served "
        f"{m['demand']['served_gpu_hours']:,.0f} against {e['demand']['served_gpu_hours']:,.0f}, real-time "
        f"{_pts(_share(m, 'realtime'), _share(e, 'realtime'))}, batch {_pts(_share(m, 'batch'), _share(e, 'batch'))}, "
        f"western utilisation {m['utilisation']['west']:.1%} against {e['utilisation']['west']:.1%} "
        f"(nearest-first {n['utilisation']['west']:.1%}), and buyers pay {m['avg_price_paid']:.2f} "
        f"against {e['avg_price_paid']:.2f} CNY per GPU-hour. None of the features creates reach: demand "
        "that no listing can reach within its latency bound, or whose replicas fit no node, stays unserved "
        "at any price, and idle western capacity of a GPU model the demand does not name stays idle."
    )
