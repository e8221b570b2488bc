"""Matching benchmark: seeded instances on the real region / RTT data, solver vs greedy, side by side.

    .venv/bin/python bench/bench_matching.py [--sizes 100x50,1kx500,10kx2k,50kx10k] [--seed 7]
                                             [--data path/to/china_compute_regions.json]

Instances: listings mostly in the western hubs (cheap power, lower prices), fewer in eastern hubs
and demand cities (dearer); requests from eastern demand cities with a mix of latency classes,
price caps, windows, priorities and vouchers. "uniform": one replica size per GPU model (8 for
H100/H800, 2 for A100/A800/H20, 1 otherwise), so every shard is a transportation problem;
"mixed": sizes 1/2/4/8 drawn per request. For uniform instances up to 1k × 500 the solver's
full-subsidy flow optimum is checked against an independent exact solve (scipy HiGHS LP of the
transportation problem, built from the scalar cost model, not the solver's compressed graph).
"gap to LB" is the plan's capped objective against its recorded bound (which accounts for binding
voucher budgets); "gap pre-cap" is the packing loss alone (first plan, full subsidies).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matching import costs  # noqa: E402
from matching.flow.simplex import warm_up  # noqa: E402
from matching.greedy import greedy  # noqa: E402
from matching.latency import LatencyClass, bound_of  # noqa: E402
from matching.problem import ListingSpec, Problem, RequestSpec, VoucherTerms  # noqa: E402
from matching.solver import COMPONENT_THREADS, solve  # noqa: E402

SCALES = {"100x50": (100, 50), "1kx500": (1000, 500), "10kx2k": (10_000, 2000), "50kx10k": (50_000, 10_000)}
NOW = datetime(2025, 6, 1, tzinfo=UTC)
WEST = ["inner-mongolia-horinger", "inner-mongolia-ulanqab", "guizhou-guian", "gansu-qingyang", "ningxia-zhongwei"]
DEMAND = {
    "beijing": 3,
    "shanghai": 3,
    "shenzhen": 2,
    "guangzhou": 2,
    "hangzhou": 2,
    "chengdu": 1,
    "wuhan": 1,
    "xian": 1,
    "zhengzhou": 1,
    "nanjing": 1,
}
MODEL_SHARE = {"h20": 25, "a800": 15, "h800": 10, "h100": 10, "a100": 10, "l40s": 10, "rtx4090": 10, "ascend-910b": 10}
UNIFORM_SIZE = {"h100": 8, "h800": 8, "a100": 2, "a800": 2, "h20": 2}
CLASS_SHARE = {
    LatencyClass.REALTIME: 15,
    LatencyClass.INTERACTIVE: 35,
    LatencyClass.STANDARD: 25,
    LatencyClass.BATCH: 25,
}


def default_data_path() -> Path:
    shared = ROOT.parent / "shared" / "reference" / "china_compute_regions.json"
    return shared if shared.exists() else ROOT / "marketplace" / "reference" / "china_compute_regions.json"


def load_reference(path: Path) -> dict:
    data = json.loads(path.read_text())
    rtt = {(a, b): float(v) for a, row in data["rtt_ms"].items() for b, v in row.items()}
    return {
        "regions": {r["code"]: r for r in data["regions"]},
        "rtt": rtt,
        "gpus": {g["code"]: g for g in data["gpu_models"]},
    }


def _pick(rng: random.Random, shares: dict):
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def make_listing(rng: random.Random, ref: dict, k: int) -> ListingSpec:
    model = _pick(rng, MODEL_SHARE)
    roll = rng.random()
    east = [c for c, r in ref["regions"].items() if r["kind"] in ("hub", "both") and c not in WEST]
    cities = [c for c, r in ref["regions"].items() if r["kind"] == "city"]
    region, factor = (
        (rng.choice(WEST), rng.uniform(0.75, 0.95))
        if roll < 0.6
        else (
            (rng.choice(east), rng.uniform(0.95, 1.15)) if roll < 0.85 else (rng.choice(cities), rng.uniform(1.05, 1.3))
        )
    )
    gpu, reg = ref["gpus"][model], ref["regions"][region]
    gpn = 8
    nodes = tuple(gpn if rng.random() < 0.6 else rng.randint(0, gpn) for _ in range(rng.randint(1, 8)))
    start = NOW + timedelta(hours=rng.choice([-48, -1, 0, 0, 6, 24]))
    return ListingSpec(
        id=k + 1,
        provider_id=rng.randint(1, 40),
        region=region,
        gpu_model=model,
        gpus_per_node=gpn,
        node_free=nodes,
        price_per_gpu_hour=Decimal(str(round(gpu["indicative_price_cny_per_gpu_hour"] * factor, 2))),
        energy_cost_per_gpu_hour=costs.energy_cost_per_gpu_hour(gpu["tdp_w"], reg["pue"], reg["power_price_cny_kwh"]),
        available_from=start,
        available_until=start + timedelta(days=rng.randint(3, 60)),
    )


def make_request(rng: random.Random, ref: dict, k: int, mixed: bool) -> RequestSpec:
    model = _pick(rng, MODEL_SHARE)
    size = rng.choices([1, 2, 4, 8], weights=[40, 25, 20, 15])[0] if mixed else UNIFORM_SIZE.get(model, 1)
    cls = _pick(rng, CLASS_SHARE)
    origin = _pick(rng, DEMAND)
    voucher = None
    if rng.random() < 0.15:
        voucher = VoucherTerms(
            code=f"V{rng.randint(1, max(1, k // 20 + 1))}",
            percent=Decimal(rng.choice([20, 30])),
            remaining_value=Decimal(rng.choice([1000, 20_000, 200_000])),
            program=f"{origin}-compute-voucher",
        )
    price = ref["gpus"][model]["indicative_price_cny_per_gpu_hour"]
    return RequestSpec(
        id=k + 1,
        gpu_model=model,
        gpus_per_replica=size,
        replicas=rng.randint(1, max(1, 12 // size)),
        origin=origin,
        max_rtt_ms=bound_of(cls),
        max_price_per_gpu_hour=Decimal(str(round(price * rng.uniform(0.85, 1.4), 2))),
        duration_hours=rng.choice([1, 4, 8, 24, 72, 168]),
        start_by=NOW + timedelta(hours=rng.choice([0, 2, 12, 48])),
        latency_weight=costs.default_latency_weight(cls),
        priority=1 if rng.random() < 0.1 else 0,
        voucher=voucher,
    )


def generate(ref: dict, n_requests: int, n_listings: int, seed: int, mixed: bool) -> Problem:
    """A seeded instance: same seed, same instance."""
    rng = random.Random(f"{seed}-{n_requests}-{n_listings}-{mixed}")
    listings = tuple(make_listing(rng, ref, k) for k in range(n_listings))
    requests = tuple(make_request(rng, ref, k, mixed) for k in range(n_requests))
    return Problem(requests=requests, listings=listings, rtt_ms=ref["rtt"], now=NOW)


def measure(fn, problem: Problem):
    """(plan, (wall s, CPU s), peak traced bytes): timed without tracing, then traced in a second run.

    CPU time is this process's (``time.process_time``): on a shared machine wall time also counts
    waiting for a core, CPU time does not.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    plan = fn(problem)
    elapsed = (time.perf_counter() - t0, time.process_time() - c0)
    tracemalloc.start()
    fn(problem)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return plan, elapsed, peak


def exact_lp_objective(problem: Problem) -> Decimal:
    """Independent exact optimum for one-size-per-model instances: HiGHS LP, lexicographic stages.

    The transportation LP has a totally unimodular matrix and integral capacities, so its vertex
    optimum is integral; costs come from the scalar :func:`matching.costs.edge_cost`.
    """
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    edges = []
    for i, r in enumerate(problem.requests):
        for j, x in enumerate(problem.listings):
            rtt = costs.rtt_between(problem.rtt_ms, r.origin, x.region)
            if costs.infeasibility(r, x, rtt, problem.now) is None:
                edges.append((i, j, costs.edge_cost(r, x, rtt).cost * r.gpus_per_replica * r.duration_hours))
    if not edges:
        return Decimal(0)
    n_r, n_l, n_e = len(problem.requests), len(problem.listings), len(edges)
    rows = [i for i, _, _ in edges] + [n_r + j for _, j, _ in edges]
    a_ub = coo_matrix((np.ones(2 * n_e), (rows, list(range(n_e)) * 2)), shape=(n_r + n_l, n_e)).tocsr()
    b_ub = [r.replicas for r in problem.requests] + [
        costs.slots_on(x, _size_on(problem, j)) for j, x in enumerate(problem.listings)
    ]
    prios = sorted({problem.requests[i].priority for i, _, _ in edges}, reverse=True)
    fixed_rows, fixed_rhs = [], []
    for p in prios:
        mask = np.array([problem.requests[i].priority == p for i, _, _ in edges], dtype=float)
        res = linprog(-mask, A_ub=_stack(a_ub, fixed_rows), b_ub=b_ub + fixed_rhs, method="highs")
        fixed_rows.append(-mask)
        fixed_rhs.append(res.fun + 1e-6)  # served at level p >= optimum
    cost = np.array([float(c) for _, _, c in edges])
    res = linprog(cost, A_ub=_stack(a_ub, fixed_rows), b_ub=b_ub + fixed_rhs, method="highs")
    x = np.rint(res.x).astype(int)
    return sum((c * int(n) for (_, _, c), n in zip(edges, x, strict=True)), Decimal("0.0000"))


def _size_on(problem: Problem, j: int) -> int:
    model = problem.listings[j].gpu_model
    sizes = {r.gpus_per_replica for r in problem.requests if r.gpu_model == model}
    return sizes.pop() if len(sizes) == 1 else 1


def _stack(a_ub, extra_rows):
    from scipy.sparse import csr_matrix, vstack

    return vstack([a_ub, csr_matrix(extra_rows)]) if extra_rows else a_ub


def run(ref: dict, label: str, seed: int, mixed: bool) -> list[str]:
    n_req, n_lst = SCALES[label]
    problem = generate(ref, n_req, n_lst, seed, mixed)
    ours, t_ours, m_ours = measure(solve, problem)
    base, t_base, m_base = measure(greedy, problem)
    kind = "mixed" if mixed else "uniform"
    check = exact_check(problem, ours) if not mixed and n_req <= 1000 else "-"
    bound = ours.stats["served_gpus_bound"]
    gaps = (_pct(ours.gap), _pct(pre_cap_gap(ours)), check)
    return [
        _row(problem, (label, kind, "ours"), ours, t_ours, m_ours, bound, gaps),
        _row(problem, (label, kind, "greedy"), base, t_base, m_base, bound, ("-", "-", "-")),
    ]


def pre_cap_gap(plan) -> float:
    """Gap before voucher budgets: the first plan's cost with full subsidies over its full-subsidy
    bound − 1 (packing loss alone; 0 for one replica size)."""
    pre, bound = (Decimal(plan.stats[k]) for k in ("full_subsidy_cost_cny", "full_subsidy_bound_cny"))
    return float(pre / bound - 1) if bound > 0 else 0.0


def exact_check(problem: Problem, plan) -> str:
    """Our full-subsidy flow optimum against the independent exact LP, to 1e-9.

    (The final plan may differ: when a voucher budget binds the solver re-plans without that
    subsidy; ``gap to LB`` then says how far the capped objective is from its bound.)
    """
    exact = exact_lp_objective(problem)
    ours = Decimal(plan.stats["full_subsidy_bound_cny"])
    return "ok" if abs(exact - ours) <= Decimal("1e-9") else f"MISMATCH {exact} vs {ours}"


def _row(problem, head, plan, seconds, peak, bound, gaps) -> str:
    hours = {r.id: r.duration_hours for r in problem.requests}
    gpu_hours = sum(a.gpus * hours[a.request_id] for a in plan.assignments)
    per_gpu_h = plan.objective / gpu_hours if gpu_hours else Decimal(0)
    solve_s = plan.timings_ms.get("solve", 0) / 1000
    cells = [
        *head,
        f"{seconds[0]:.2f} ({solve_s:.2f})",
        f"{seconds[1]:.2f}",
        f"{peak / 2**20:.0f} MiB",
        f"{plan.objective:.0f}",
        f"{per_gpu_h:.3f}",
        plan.served_replicas,
        f"{plan.stats['served_gpus']}/{bound}",
        *gaps,
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


HEADER = [
    "scale",
    "sizes",
    "solver",
    "time s (solve)",
    "CPU s",
    "peak mem",
    "objective CNY",
    "CNY/GPU-h",
    "replicas",
    "GPUs / bound",
    "gap to LB",
    "gap pre-cap",
    "exact check",
]


def _pct(gap: float) -> str:
    return f"{gap * 100:.3f} %"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SCALES), help="comma-separated: " + ",".join(SCALES))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--kinds", default="uniform,mixed")
    args = parser.parse_args(argv)
    ref = load_reference(args.data or default_data_path())
    started = time.perf_counter()
    warm_up()
    print(
        f"Loading the compiled simplex (once per process, as a worker does at its first round): "
        f"{time.perf_counter() - started:.2f} s. Components solve on {COMPONENT_THREADS} thread(s); "
        f"'time' is wall clock, 'CPU' this process's CPU time over all its threads.\n"
    )
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for label in args.sizes.split(","):
        for kind in args.kinds.split(","):
            for line in run(ref, label, args.seed, kind == "mixed"):
                print(line, flush=True)


if __name__ == "__main__":
    main()
