"""What clearing prices add to a round: bench_matching's instances, split per GPU model as the rounds
are (one shard per model), solved, then priced (matching.prices), side by side.

    .venv/bin/python bench/bench_prices.py [--sizes 1kx500,10kx2k] [--seed 7] [--max-resolves 16] [--budget-seconds 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_matching import SCALES, default_data_path, generate, load_reference  # noqa: E402
from matching.flow.simplex import warm_up  # noqa: E402
from matching.prices import clearing_prices  # noqa: E402
from matching.solver import solve  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1kx500,10kx2k")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-resolves", type=int, default=16)
    parser.add_argument(
        "--budget-seconds", type=float, default=1.0, help="per shard (round), as PRICE_TIME_BUDGET_SECONDS"
    )
    args = parser.parse_args(argv)
    ref = load_reference(default_data_path())
    warm_up()
    print("| instance | shards | solve s | prices s | added | saturated listings | priced | unavailable |")
    print("|---|---|---|---|---|---|---|---|")
    for label in args.sizes.split(","):
        for mixed in (False, True):
            problem = generate(ref, *SCALES[label], args.seed, mixed)
            solve_s = prices_s = 0.0
            saturated = priced = unavailable = shards = 0
            for model in sorted({x.gpu_model for x in problem.listings}):
                shard = replace(
                    problem,
                    requests=tuple(r for r in problem.requests if r.gpu_model == model),
                    listings=tuple(x for x in problem.listings if x.gpu_model == model),
                )
                shards += 1
                t0 = time.perf_counter()
                plan = solve(shard)
                t1 = time.perf_counter()
                prices = clearing_prices(
                    shard, plan, max_resolves=args.max_resolves, budget_seconds=args.budget_seconds
                )
                t2 = time.perf_counter()
                solve_s += t1 - t0
                prices_s += t2 - t1
                saturated += sum(1 for p in prices if p.rent is None or p.rent > 0 or (p.unit_gpus and not p.free_gpus))
                priced += sum(1 for p in prices if p.rent is not None and p.rent > 0)
                unavailable += sum(1 for p in prices if p.rent is None)
            kind = "mixed" if mixed else "uniform"
            print(
                f"| {label} {kind} | {shards} | {solve_s:.2f} | {prices_s:.2f} | {prices_s / solve_s:+.0%} | "
                f"{saturated} | {priced} with rent > 0 | {unavailable} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
