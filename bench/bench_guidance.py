"""Guidance benchmark: the cost of a listing's guidance (matching.guidance) on a seeded market.

    .venv/bin/python bench/bench_guidance.py [--requests 300] [--listings 60] [--seed 7] [--mixed]

The instance is bench_matching's (real regions and RTTs). For every listing the round leaves idle
(nothing placed at its own price), as the marketplace does it: the shard of its GPU model, one solve
at its own price, then the price search; printed: solves and milliseconds (median and worst), how many
got a suggested price, and each suggestion confirmed by re-solving at it and one fen above.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_matching import default_data_path, generate, load_reference
from matching import guidance as g
from matching.problem import sold_gpu_hours
from matching.solver import solve

PRICE_MAXIMUM = Decimal(1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--listings", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--mixed", action="store_true")
    args = parser.parse_args()
    market = generate(load_reference(default_data_path()), args.requests, args.listings, args.seed, args.mixed)
    times, solves, suggested, confirmed = [], [], 0, 0
    for listing in market.listings:
        shard = replace(
            market,
            requests=tuple(r for r in market.requests if r.gpu_model == listing.gpu_model),
            listings=tuple(x for x in market.listings if x.gpu_model == listing.gpu_model),
        )
        started = time.perf_counter()
        if sold_gpu_hours(shard, solve(shard), listing.id) > 0:
            continue  # not idle
        g.diagnose(shard, listing.id, 0)
        ceiling = g.price_ceiling(shard, listing.id, PRICE_MAXIMUM)
        floor = max(listing.energy_cost_per_gpu_hour, g.FEN)
        found = g.suggest_price(shard, listing.id, solve, floor=floor, ceiling=ceiling)
        times.append((time.perf_counter() - started) * 1000)
        solves.append(1 + len(found.probes))
        if found.price is not None:
            suggested += 1
            at = g.at_price(shard, listing.id, found.price)
            above = g.at_price(shard, listing.id, found.price + g.FEN)
            if sold_gpu_hours(at, solve(at), listing.id) > 0 and sold_gpu_hours(above, solve(above), listing.id) == 0:
                confirmed += 1
    kind = "mixed" if args.mixed else "uniform"
    print(f"{args.requests} requests × {args.listings} listings ({kind}, seed {args.seed}): {len(times)} idle listings")
    if times:
        print(f"  solves per guidance: median {statistics.median(solves):g}, worst {max(solves)}")
        print(f"  ms per guidance:     median {statistics.median(times):.0f}, worst {max(times):.0f}")
    print(f"  suggested a price: {suggested}; confirmed by re-solving at it and one fen above: {confirmed}")


if __name__ == "__main__":
    main()
