"""Where the inference engine's gap lies: its plan and bound on the benchmark's rounds beside bounds
that no 3-second solve can reach, each solved offline by HiGHS.

    .venv/bin/python bench/inference_gap.py [--sizes 300x150,1kx500] [--seeds 7,8] [--milp-seconds 0]

Per round (``bench/bench_inference.py``'s generator, same seed), all against the engine's plan:

- **engine bound**: the lower bound the engine records (``solve_inference``'s ``cost_lower_bound``).
- **LP relaxation**: the exact program of :mod:`matching.substitution_milp` with its replicas
  continuous, serving at least the plan's tokens/s. A fractional replica serves a small demand at a
  fraction of a replica's price, so this "LP bound" sits far below any placement of whole replicas.
- **split LP**: the relaxation the engine's price steps work on (:class:`ListingPrices`: a replica's
  tokens counted up to its demand's cap, replicas split, a price per listing), solved to optimality:
  one column per (demand, listing) with its best served tokens per GPU, rows for each listing's free
  GPUs, each demand's cap and the plan's tokens/s. Its optimum is the most any prices per listing
  can make that relaxation give; the engine's 20 steps reach "steps" of it.
- **covers at its duals**: the engine's whole-replica covers bound at the split LP's prices per
  listing (× 1, 1.25, 1.5, 2; the best kept): the bound the engine would record with exact prices.
- **MILP** (``--milp-seconds`` > 0): the engine's exact program with that time limit per level,
  its incumbent's cost and HiGHS's dual bound. 1k × 500 needs ~15 min at 400 s per level.

Memory: the split LP of 10k × 2k has ~10 M columns and HiGHS needs > 14 GB for it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import LinearConstraint, linprog
from scipy.optimize import milp as milp_solve
from scipy.sparse import coo_matrix

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_inference import SCALES, DemandMaker, generate, load_catalogue  # noqa: E402
from bench.bench_matching import default_data_path, load_reference  # noqa: E402
from matching import costs  # noqa: E402
from matching import substitution_bound as bound  # noqa: E402
from matching import substitution_milp as milp  # noqa: E402
from matching.compiled import warm_up  # noqa: E402
from matching.problem import Problem  # noqa: E402
from matching.substitution import solve_inference  # noqa: E402
from matching.substitution_engine import engine_policy  # noqa: E402
from matching.substitution_round import Round  # noqa: E402

#: The multiples of the split LP's prices at which the covers' bound is taken.
SCALES_AT_DUALS = (1.0, 1.25, 1.5, 2.0)


def lp_relaxation(prog: milp.Program, served: float) -> float:
    """Least cost (units × hours) of the exact program with continuous replicas serving ≥ ``served``."""
    cost = prog.columns[4]
    served_row = np.concatenate([np.zeros(prog.n), np.ones(prog.m)])[None, :]
    res = milp_solve(
        np.concatenate([cost.astype(float), np.zeros(prog.m)]),
        constraints=[prog.rows, LinearConstraint(served_row, served * (1 - 1e-7), np.inf)],
        integrality=np.zeros(prog.n + prog.m),
        bounds=prog.bounds,
    )
    if res.status != 0:
        raise RuntimeError(f"LP relaxation: {res.message}")
    return float(res.fun)


def split_lp(rnd: Round, prog: milp.Program, served: float) -> tuple[float, np.ndarray]:
    """(optimum in units × hours, price per GPU of every listing) of the split relaxation."""
    d, _, j, size, cost, _ = prog.columns
    caps = np.asarray(bound.servable(rnd), dtype=float)
    per_gpu = np.minimum(prog.tps, np.maximum(caps[d], 1e-9)) / size  # served tokens/s per GPU
    cost_gpu = cost / size
    nl, m = len(rnd.problem.listings), len(rnd.demands)
    # One column per (demand, listing): its least cost per served token/s.
    key = d * nl + j
    order = np.lexsort((cost_gpu / per_gpu, key))
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    dd, jj, r, c = d[first], j[first], per_gpu[first], cost_gpu[first]
    n = len(first)
    a = coo_matrix(
        (
            np.concatenate([np.ones(n), r, -r]),
            (np.concatenate([jj, nl + dd, np.full(n, nl + m)]), np.tile(np.arange(n), 3)),
        ),
        shape=(nl + m + 1, n),
    )
    free = np.array([float(sum(f)) for f in rnd.pool.free])
    high = np.concatenate([free, caps, [-served * (1 - 1e-7)]])
    res = linprog(c, A_ub=a.tocsr(), b_ub=high, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"split LP: {res.message}")
    return float(res.fun), -res.ineqlin.marginals[:nl]


def measure(problem: Problem, milp_seconds: float) -> dict[str, float | str]:
    _, _, stats = solve_inference(problem)
    plan, served = float(stats["cost"]), float(stats["tokens_served"])
    cny = float(costs.from_units(1))  # CNY per unit
    out: dict[str, float | str] = {"plan": plan, "engine bound": float(stats["cost_lower_bound"])}
    t0 = time.perf_counter()
    rnd = Round(problem, None)  # (the free capacity: read, never placed on)
    prog = milp.program(rnd)
    out["LP relaxation"] = lp_relaxation(prog, served) * cny
    value, prices = split_lp(rnd, prog, served)
    out["split LP"] = value * cny
    out["LP s"] = time.perf_counter() - t0
    listings = bound.ListingPrices(bound.Lagrangian(rnd))
    pi = prices[listings.listings]
    shortfall = max(0.0, float(np.sum(bound.servable(rnd))) - served)
    planned = Round(problem, None)
    engine_policy(planned)  # (the plan again, for which demands may fall short: the engine's rule)
    planned_each = np.array([planned.served(i) for i in range(len(planned.demands))])
    may_fall_short = bound.demands_that_may_fall_short(planned, bound.servable(planned), planned_each)
    # The engine's own steps, from its class prices, for the same relaxation.
    lagrangian = listings.lagrangian
    class_value, class_pi = lagrangian.best(served, plan / cny, None, bound.LAGRANGE_STEPS)
    steps_value, _ = listings.best(
        served, class_value * bound.LISTING_TARGET, listings.expand(class_pi), bound.LISTING_STEPS
    )
    out["steps"] = steps_value * cny
    out["covers at duals"] = max(listings.covers(pi * s, shortfall, may_fall_short) for s in SCALES_AT_DUALS) * cny
    if milp_seconds > 0:
        counts, info = milp.solve_milp(rnd, time_limit=milp_seconds)
        d, k, j, _, cost, _ = prog.columns
        at = {(int(a), int(b), int(c)): o for o, (a, b, c) in enumerate(zip(d, k, j, strict=True))}
        out["MILP"] = sum(int(cost[at[key]]) * v for key, v in counts.items()) * cny
        placed = np.zeros(len(problem.inference))
        for (i, a, _), v in counts.items():
            placed[i] += problem.inference[i].alternatives[a].tokens_per_second_per_replica * v
        targets = np.array([dm.tokens_per_second for dm in problem.inference])
        out["MILP served"] = float(np.minimum(placed, targets).sum())
        out["served"] = served
        out["MILP bound"] = float(info["cost_lower_bound_units"]) * cny
        out["MILP status"] = str(info["status"])
    return out


def cells(got: dict[str, float | str]) -> list[str]:
    """A row's figures: each bound with its share of the plan's cost, or the plan's gap over it."""
    plan = float(got["plan"])

    def share(name: str) -> str:
        return f"{float(got[name]):,.0f} ({float(got[name]) / plan * 100:.1f} %)"

    def gap(name: str) -> str:
        return f"{float(got[name]):,.0f} ({(plan / float(got[name]) - 1) * 100:.2f} %)"

    out = [f"{plan:,.0f}", gap("engine bound"), share("LP relaxation"), share("split LP"), share("steps")]
    out.append(gap("covers at duals"))
    if "MILP" in got:
        served = f"{float(got['MILP served']):,.0f} tokens/s against the plan's {float(got['served']):,.0f}"
        out += [f"{share('MILP')}, {served}", f"{share('MILP bound')}, {got['MILP status']}"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300x150,1kx500")
    parser.add_argument("--seeds", default="7,8")
    parser.add_argument("--milp-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)
    ref = load_reference(default_data_path())
    maker = DemandMaker(*load_catalogue())
    warm_up()
    head = [
        "scale", "seed", "plan CNY", "engine bound (gap)", "LP relaxation", "split LP", "engine steps",
        "covers at split-LP duals (gap)",
    ]  # fmt: skip
    if args.milp_seconds > 0:
        head += ["MILP incumbent", "MILP dual bound"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label in args.sizes.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            got = measure(generate(ref, maker, *SCALES[label], seed), args.milp_seconds)
            print("| " + " | ".join([label, str(seed), *cells(got)]) + " |", flush=True)
    print("\nShares in brackets are of the plan's cost; gaps are the plan's cost over the bound, less 1.")


if __name__ == "__main__":
    main()
