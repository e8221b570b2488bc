"""Inference matching benchmark: seeded rounds of inference demand across 8 GPU models, the engine
beside the two baselines, plus an independent exact check.

    .venv/bin/python bench/bench_inference.py [--sizes 100x50,1kx500,10kx2k] [--seed 7] [--exact 100x50,300x150]

Listings are bench_matching's (the same generator: mostly western hubs, 8 GPU models, 1–8 nodes of
8 GPUs, windows). Each demand is an LLM from the shipped catalogue served from an eastern city at a
target of 200–10,000 output tokens/s (log-uniform), a TTFT of 0.5–3 s, prompts of 500–4,000 tokens,
a precision (or any), a cap of 1–20 CNY per million tokens, a duration and start-by like the GPU
form's, 10 % at priority 1, 10 % with a voucher; its alternatives come from
``matching.inference_quote.alternatives_of`` over all 8 GPU models (the throughput model), the
buyer's first choice first (cheapest per million tokens at the GPU models' indicative prices: what
``nearest`` fills).

Columns: wall and CPU time of ``solve_inference`` (the round's inference part alone, capacity as
listed), peak traced memory (a second, traced run), tokens/s served / asked and the proven upper
bound, cost (CNY over the demands' durations) against the proven lower bound, and the gap.
Exact check: on small rounds, (a) the engine's exact MILP (HiGHS) optimum, (b) an independent LP
relaxation built here from the problem's own data (scipy HiGHS; one column per feasible (demand,
listing) at the alternative with most tokens per GPU, GPUs of a listing ≤ its free GPUs): the fast
method's tokens must not exceed the MILP's, and its lower bound must not exceed the MILP's cost.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import tracemalloc
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_matching import DEMAND, NOW, default_data_path, load_reference, make_listing  # noqa: E402
from matching import costs, substitution_engine  # noqa: E402
from matching.compiled import warm_up  # noqa: E402
from matching.inference import GpuSpec, LlmSpec  # noqa: E402
from matching.inference_quote import InferenceTerms, alternatives_of  # noqa: E402
from matching.problem import InferenceDemand, Problem, VoucherTerms  # noqa: E402
from matching.substitution import demand_budget, engine_alternatives, solve_inference  # noqa: E402

SCALES = {"100x50": (100, 50), "300x150": (300, 150), "1kx500": (1000, 500), "10kx2k": (10_000, 2000)}
POLICIES = ("engine", "cheapest", "nearest")
LLM_SHARE = {
    "deepseek-r1-distill-qwen-32b": 20,
    "qwen2-5-7b-instruct": 12,
    "qwen3-32b": 12,
    "deepseek-r1-distill-qwen-14b": 10,
    "qwen2-5-72b-instruct": 10,
    "deepseek-r1-distill-qwen-7b": 8,
    "qwen3-30b-a3b": 8,
    "glm-4-9b-chat": 8,
    "qwen2-5-32b-instruct": 6,
    "qwen3-235b-a22b": 3,
    "deepseek-v3": 2,
    "deepseek-r1": 1,
}


def load_catalogue() -> tuple[dict[str, LlmSpec], list[GpuSpec], dict[str, float]]:
    data = json.loads((ROOT / "marketplace" / "reference" / "llm_models.json").read_text())
    llms = {
        m["code"]: LlmSpec(
            m["code"],
            m["params_b"],
            m["active_params_b"],
            m["layers"],
            m["kv_heads"],
            m["head_dim"],
            m["max_context"],
            tuple(m["precisions"]),
        )
        for m in data["llm_models"]
    }
    # The GPU models' performance figures ship with the repository's reference data (the shared copy
    # of the regions file may predate them).
    regions = json.loads((ROOT / "marketplace" / "reference" / "china_compute_regions.json").read_text())
    gpus = [
        GpuSpec(
            g["code"], g["vram_gb"], g["memory_bandwidth_gbps"], g["bf16_tflops"], g["fp8_tflops"], g["interconnect"]
        )
        for g in regions["gpu_models"]
    ]
    return llms, gpus, {g["code"]: g["indicative_price_cny_per_gpu_hour"] for g in regions["gpu_models"]}


class DemandMaker:
    """Seeded inference demands; alternatives cached per distinct terms (the roofline is the slow part)."""

    def __init__(self, llms: dict[str, LlmSpec], gpus: list[GpuSpec], price: dict[str, float]) -> None:
        self.llms, self.gpus, self.price = llms, gpus, price
        self._alts: dict[tuple[object, ...], list] = {}

    def make(self, rng: random.Random, k: int) -> InferenceDemand:
        llm = self.llms[rng.choices(list(LLM_SHARE), weights=list(LLM_SHARE.values()))[0]]
        precision = rng.choice(["", "", *llm.precisions])
        target = Decimal(round(math.exp(rng.uniform(math.log(200), math.log(10_000))) / 50) * 50)
        cap = Decimal(rng.choice([1, 2, 3, 5, 8, 12, 20]))
        terms = InferenceTerms(
            llm=llm,
            origin=rng.choices(list(DEMAND), weights=list(DEMAND.values()))[0],
            tokens_per_second=target,
            prompt_tokens=rng.choice([500, 1000, 2000, 4000]),
            output_tokens=rng.choice([200, 500, 1000]),
            ttft_ms=Decimal(rng.choice([500, 1000, 1500, 2000, 3000])),
            max_price_per_million_tokens=cap,
            duration_hours=rng.choice([1, 4, 8, 24, 72, 168]),
            start_by=NOW + timedelta(hours=rng.choice([0, 2, 12, 48])),
            precision=precision or None,
        )
        key = (llm.code, precision, terms.prompt_tokens, terms.output_tokens, terms.ttft_ms)
        if key not in self._alts:
            self._alts[key] = alternatives_of(terms, self.gpus, [], {})
        voucher = None
        if rng.random() < 0.1:
            voucher = VoucherTerms(
                code=f"V{rng.randint(1, max(1, k // 50 + 1))}",
                percent=Decimal(rng.choice([20, 30])),
                remaining_value=Decimal(rng.choice([1000, 20_000, 200_000])),
                program=f"{terms.origin}-compute-voucher",
            )
        # The buyer's first choice first (what `nearest` fills): the alternative cheapest per million
        # tokens at its GPU model's indicative price, as a quote would mostly rank them.
        alternatives = sorted(
            engine_alternatives(self._alts[key], cap),
            key=lambda a: self.price[a.gpu_model] * a.gpus_per_replica / a.tokens_per_second_per_replica,
        )
        return InferenceDemand(
            id=k + 1,
            origin=terms.origin,
            tokens_per_second=float(target),
            budget_per_hour=demand_budget(cap, target),
            duration_hours=terms.duration_hours,
            start_by=terms.start_by,
            alternatives=tuple(alternatives),
            priority=1 if rng.random() < 0.1 else 0,
            voucher=voucher,
        )


def generate(ref: dict, maker: DemandMaker, n_demands: int, n_listings: int, seed: int) -> Problem:
    """A seeded round: same seed, same round."""
    rng = random.Random(f"inference-{seed}-{n_demands}-{n_listings}")
    listings = tuple(make_listing(rng, ref, k) for k in range(n_listings))
    demands = tuple(maker.make(rng, k) for k in range(n_demands))
    return Problem(requests=(), listings=listings, rtt_ms=ref["rtt"], now=NOW, inference=demands)


def measure(problem: Problem, policy: str):
    t0, c0 = time.perf_counter(), time.process_time()
    result = solve_inference(problem, policy=policy)
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    tracemalloc.start()
    solve_inference(problem, policy=policy)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def row(label: str, policy: str, result, seconds, peak) -> str:
    _, _, s = result
    gap = s["gap"]
    cells = [
        label,
        policy,
        s["solver"],
        f"{seconds[0]:.2f}",
        f"{seconds[1]:.2f}",
        f"{peak / 2**20:.0f} MiB",
        f"{s['tokens_served']:,.0f} / {s['tokens_asked']:,.0f}",
        f"{s['tokens_upper_bound']:,.0f}",
        f"{Decimal(s['cost']):,.0f}",
        f"{Decimal(s['cost_lower_bound']):,.0f}",
        "—" if gap == float("inf") else f"{gap * 100:.2f} %",
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


HEADER = [
    "scale",
    "policy",
    "solver",
    "time s",
    "CPU s",
    "peak mem",
    "tokens/s served / asked",
    "tokens/s bound",
    "cost CNY",
    "cost bound CNY",
    "gap",
]


def independent_lp(problem: Problem) -> tuple[float, float]:
    """(max tokens/s, least cost at that many) of the LP relaxation, built from the scalar rules.

    One column per feasible (demand, listing): the alternative with most tokens per GPU among those
    the listing admits; GPUs continuous; per listing Σ GPUs ≤ its free GPUs; per demand tokens ≤ target
    and Σ price × GPUs ≤ budget. Cost at full subsidy, × hours, CNY.
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    cols = []  # (demand, listing, tokens per GPU, cost × hours per GPU, price per GPU)
    for i, d in enumerate(problem.inference):
        for j, x in enumerate(problem.listings):
            rtt = costs.rtt_between(problem.rtt_ms, d.origin, x.region)
            start = costs.start_on(x, problem.now)
            if rtt is None or start > d.start_by or start + timedelta(hours=d.duration_hours) > x.available_until:
                continue
            best = None
            for a in d.alternatives:
                ok = a.gpu_model == x.gpu_model and (a.listing_ids is None or x.id in a.listing_ids)
                ok = ok and a.gpus_per_replica <= max(x.node_free, default=0) and rtt <= a.rtt_bound_ms
                ok = ok and x.price_per_gpu_hour <= a.max_price_per_gpu_hour
                ok = ok and x.price_per_gpu_hour * a.gpus_per_replica <= d.budget_per_hour
                if ok:
                    r = a.tokens_per_second_per_replica / a.gpus_per_replica
                    best = r if best is None else max(best, r)
            if best is not None:
                cost = float(x.price_per_gpu_hour - costs.subsidy_per_gpu_hour(d.voucher, x)) * d.duration_hours
                cols.append((i, j, best, cost, float(x.price_per_gpu_hour)))
    if not cols:
        return 0.0, 0.0
    n, m, nl = len(cols), len(problem.inference), len(problem.listings)
    di = np.array([c[0] for c in cols])
    lj = np.array([c[1] for c in cols])
    r = np.array([c[2] for c in cols])
    cost = np.array([c[3] for c in cols])
    price = np.array([c[4] for c in cols])
    rows = np.concatenate([lj, nl + di, nl + m + di])
    vals = np.concatenate([np.ones(n), r, price])
    a = coo_matrix((vals, (rows, np.tile(np.arange(n), 3))), shape=(nl + 2 * m, n)).tocsr()
    b = np.concatenate(
        [
            [float(sum(x.node_free)) for x in problem.listings],
            [d.tokens_per_second for d in problem.inference],
            [float(d.budget_per_hour) for d in problem.inference],
        ]
    )
    first = linprog(-r, A_ub=a, b_ub=b, bounds=(0, None), method="highs")
    tokens = -float(first.fun)
    a2 = coo_matrix(np.vstack([a.toarray(), -r[None, :]])) if n * (nl + 2 * m) < 5e7 else None
    if a2 is None:
        return tokens, float("nan")
    second = linprog(cost, A_ub=a2.tocsr(), b_ub=np.append(b, -tokens * (1 - 1e-9)), bounds=(0, None), method="highs")
    return tokens, float(second.fun)


#: The engine's MILP runs in the exact check up to this many options (beyond, HiGHS needs minutes).
MILP_OPTIONS = 300_000


def exact_check(problem: Problem, label: str) -> str:
    fast = solve_inference(problem)[2]
    options = int(fast["options"])
    exact: dict | None = None
    exact_s = 0.0
    if options <= MILP_OPTIONS:
        saved = substitution_engine.EXACT_OPTIONS
        substitution_engine.EXACT_OPTIONS = 10**9
        try:
            t0 = time.perf_counter()
            exact = solve_inference(problem)[2]
            exact_s = time.perf_counter() - t0
        finally:
            substitution_engine.EXACT_OPTIONS = saved
    t0 = time.perf_counter()
    lp_tokens, lp_cost = independent_lp(problem)
    lp_s = time.perf_counter() - t0
    ok = fast["tokens_served"] <= lp_tokens + 1e-3
    milp_tokens, milp_cost, vs = "—", "—", "—"
    if exact is not None:
        ok = ok and fast["tokens_served"] <= exact["tokens_served"] + 1e-6 <= lp_tokens + 1e-3
        milp_tokens = f"{exact['tokens_served']:,.0f} ({exact['milp_status']}, {exact_s:.1f} s)"
        milp_cost = f"{Decimal(exact['cost_lower_bound']):,.0f}"
        if abs(fast["tokens_served"] - exact["tokens_served"]) < 1e-6:
            ok = ok and Decimal(fast["cost_lower_bound"]) <= Decimal(exact["cost_lower_bound"]) + Decimal("0.01")
            vs = f"{(Decimal(fast['cost']) / Decimal(exact['cost_lower_bound']) - 1) * 100:.2f} %"
    if abs(fast["tokens_served"] - lp_tokens) < 1e-3 and math.isfinite(lp_cost):
        ok = ok and float(Decimal(fast["cost"])) >= lp_cost - 1e-6
    return (
        f"| {label} | {options:,} | {fast['solver']} | {fast['tokens_served']:,.0f} | {milp_tokens} "
        f"| {lp_tokens:,.0f} ({lp_s:.1f} s) | {Decimal(fast['cost']):,.0f} | {milp_cost} | {lp_cost:,.0f} "
        f"| {Decimal(fast['cost_lower_bound']):,.0f} | {vs} | {'ok' if ok else 'MISMATCH'} |"
    )


EXACT_HEADER = [
    "scale",
    "options",
    "fast solver",
    "fast tokens/s",
    "MILP tokens/s",
    "LP tokens/s",
    "fast cost",
    "MILP cost",
    "LP cost",
    "fast bound",
    "fast vs MILP",
    "check",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100x50,1kx500,10kx2k")
    parser.add_argument("--exact", default="100x50,300x150,1kx500")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args(argv)
    path = args.data or default_data_path()
    ref = load_reference(path)
    maker = DemandMaker(*load_catalogue())
    warm_up()  # (the engine's compiled code loaded, as a worker loads it before its first round)
    print("Inference rounds (solve_inference alone, on the listings' free capacity):\n")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for label in [s for s in args.sizes.split(",") if s]:
        problem = generate(ref, maker, *SCALES[label], args.seed)
        for policy in POLICIES:
            print(row(label, policy, *measure(problem, policy)), flush=True)
    if args.exact:
        print("\nExact check (engine's MILP with HiGHS; independent LP relaxation from the scalar rules):\n")
        print("| " + " | ".join(EXACT_HEADER) + " |")
        print("|" + "---|" * len(EXACT_HEADER))
        for label in args.exact.split(","):
            problem = generate(ref, maker, *SCALES[label], args.seed)
            print(exact_check(replace(problem), label), flush=True)


if __name__ == "__main__":
    main()
