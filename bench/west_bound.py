"""How high can western utilisation go on a simulated scenario? An offline upper bound.

    .venv/bin/python bench/west_bound.py [--scenario default] [--days 3] [--seed 2026]
        [--served 53367] [--realtime 3709] [--integer]

The simulation's script (``marketplace.simulation.scenario.script_build``: the same seeded listings,
withdrawals and requests every variant replays) is solved offline, all of it at once, as one
time-indexed linear programme with HiGHS (``scipy.optimize.linprog``): choose, for every request,
how many replicas start on which listing at which half-hour step, to **maximise the GPU-hours held
on western listings in the utilisation window** (day 2 onwards, as ``measure.utilisation``), subject
to the rules every round keeps:

- a replica runs on a listing of the request's GPU model, in a region within the request's latency
  bound of its origin, on nodes at least as large as the replica, starting between its submission
  and its ``start_by`` and ending inside the listing's window, on a listing not yet withdrawn;
- a listing never holds more GPUs than it lists, at any step it is active;
- a request never gets more replicas than it asked for;
- the price: either the listings' own prices (``--prices listed``: the cap must cover the price), or
  the lowest price any provider would accept, its energy cost (``--prices energy``: a listing may be
  repriced anywhere down to TDP × PUE × tariff, never below) — the bound on what repricing can do;
- at least ``--served`` GPU-hours served in all (nearest-region-first's, by default) and at least
  ``--realtime`` real-time GPU-hours (today's engine's).

It is a relaxation, so a true upper bound on what any placement (online or offline) can reach:
replicas are fractional unless ``--integer``; a replica crossing a withdrawal keeps its GPU-hours
served though the listing's capacity no longer binds after it (the real run fails it over); nodes are
pooled (every replica size divides every node size here, so a listing's GPUs are its only limit at an
instant, though over time fragmentation could bind). Held GPU-hours count only while the listing is
active, as the simulation samples them.

Printed: the bound on western utilisation, per western (region, GPU model), the GPU-hours listed,
held at the bound, and the demand that can reach it at all (model, latency, price), and why the rest
stays idle even offline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import django
import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The demo providers and the western provinces are the product's own (one definition each); reading
# them imports Django's models, so Django is set up first (no database is opened).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django.setup()

from marketplace.demo import PROVIDERS  # noqa: E402
from marketplace.services.reference import WESTERN_PROVINCES  # noqa: E402
from marketplace.simulation.scenario import (  # noqa: E402
    LATENCY_BOUND_MS,
    SCENARIOS,
    Catalogue,
    ListCapacity,
    Submit,
    Withdraw,
    script_build,
)
from matching.costs import energy_cost_per_gpu_hour  # noqa: E402

REFERENCE = Path(__file__).resolve().parent.parent / "marketplace" / "reference" / "china_compute_regions.json"
START = datetime.fromisoformat("2026-03-02T00:00:00+08:00")


@dataclass(frozen=True)
class Reference:
    catalogue: Catalogue
    energy: dict[tuple[str, str], Decimal]  # (region, model) → CNY per GPU-hour


def reference_load() -> Reference:
    data = json.loads(REFERENCE.read_text(encoding="utf-8"))
    rtt: dict[tuple[str, str], float] = {}
    for a, row in data["rtt_ms"].items():
        for b, ms in row.items():
            rtt[a, b] = rtt[b, a] = float(Decimal(str(ms)))
    for region in data["regions"]:
        rtt[region["code"], region["code"]] = rtt.get((region["code"], region["code"]), 0.0)
    models = {m["code"]: m for m in data["gpu_models"]}
    regions = {r["code"]: r for r in data["regions"]}
    catalogue = Catalogue(
        indicative_price={code: Decimal(str(m["indicative_price_cny_per_gpu_hour"])) for code, m in models.items()},
        is_west={code: r["province"] in WESTERN_PROVINCES for code, r in regions.items()},
        rtt_ms=rtt,
    )
    energy = {
        (rc, mc): energy_cost_per_gpu_hour(m["tdp_w"], r["pue"], r["power_price_cny_kwh"])
        for rc, r in regions.items()
        for mc, m in models.items()
    }
    return Reference(catalogue=catalogue, energy=energy)


@dataclass
class Listing:
    event: ListCapacity
    active_from: int  # step
    active_until: int  # step (exclusive): window end or withdrawal
    window_end: int  # step (exclusive): the listing's available_until


@dataclass
class Request:
    event: Submit
    step: int


def script_read(args, ref: Reference):
    script = script_build(
        seed=args.seed,
        start=START,
        days=args.days,
        step_minutes=args.step_minutes,
        scale=1.0,
        catalogue=ref.catalogue,
        providers=PROVIDERS,
        scenario=SCENARIOS[args.scenario],
    )
    per_hour = 60 // args.step_minutes
    listings: dict[int, Listing] = {}
    requests: list[Request] = []
    for k, events in enumerate(script.steps):
        for event in events:
            if isinstance(event, ListCapacity):
                end = k + event.open_hours * per_hour
                listings[event.key] = Listing(event, k, end, end)
            elif isinstance(event, Withdraw):
                listing = listings[event.listing_key]
                if k < listing.window_end:
                    listing.active_until = min(listing.active_until, k)
            elif isinstance(event, Submit):
                requests.append(Request(event, k))
    return script, list(listings.values()), requests


def reaches(request: Submit, listing: ListCapacity, ref: Reference, prices: str) -> bool:
    """Every rule of a round but capacity and time: model, node size, latency bound, price."""
    if listing.gpu_model != request.gpu_model or listing.gpus_per_node < request.gpus_per_replica:
        return False
    bound = LATENCY_BOUND_MS[request.latency_class]
    if bound is not None and ref.catalogue.rtt_ms[request.origin, listing.region] > bound:
        return False
    floor = listing.price_per_gpu_hour if prices == "listed" else ref.energy[listing.region, listing.gpu_model]
    return request.max_price_per_gpu_hour >= floor


def bound_solve(args, ref: Reference, listings: list[Listing], requests: list[Request], steps: int) -> dict:
    per_hour = 60 // args.step_minutes
    step_h = 1 / per_hour
    warm = 24 * per_hour if args.days >= 2 else 0
    cols: list[tuple[int, int, int]] = []  # (request, listing, start step)
    for ri, r in enumerate(requests):
        latest = r.step + r.event.start_within_hours * per_hour
        span = r.event.duration_hours * per_hour
        if args.max_wait_hours is not None:
            latest = min(latest, r.step + round(args.max_wait_hours * per_hour))
        for li, lst in enumerate(listings):
            if not reaches(r.event, lst.event, ref, args.prices):
                continue
            for s in range(max(r.step, lst.active_from), min(latest, lst.active_until - 1) + 1):
                if s + span <= lst.window_end:
                    cols.append((ri, li, s))
    n = len(cols)
    if n == 0:  # nothing can be placed anywhere
        empty = {"x": np.zeros(0), "cols": cols, "served": 0.0, "realtime": 0.0, "west_held": 0.0}
        return {**empty, "variables": 0, "rows": 0, "seconds": 0.0, "warm": warm, "dual_bound": None}
    # Rows: capacity (listing, step) while active; one per request (replicas); served; real-time.
    cap_row: dict[tuple[int, int], int] = {}
    rows, colidx, vals = [], [], []
    objective = np.zeros(n)
    served = np.zeros(n)
    realtime = np.zeros(n)
    west_held = np.zeros(n)
    for j, (ri, li, s) in enumerate(cols):
        r, lst = requests[ri].event, listings[li]
        span = r.duration_hours * per_hour
        served[j] = r.gpus_per_replica * r.duration_hours
        if r.latency_class == "realtime":
            realtime[j] = served[j]
        for k in range(s, min(s + span, lst.active_until)):
            row = cap_row.setdefault((li, k), len(cap_row))
            rows.append(row)
            colidx.append(j)
            vals.append(r.gpus_per_replica)
            if warm <= k < steps and ref.catalogue.is_west[lst.event.region]:
                west_held[j] += r.gpus_per_replica * step_h
    cap_rhs = np.zeros(len(cap_row))
    for (li, _k), row in cap_row.items():
        cap_rhs[row] = listings[li].event.gpu_count
    base = len(cap_row)
    for j, (ri, _li, _s) in enumerate(cols):
        rows.append(base + ri)
        colidx.append(j)
        vals.append(1.0)
    req_rhs = np.array([r.event.replicas for r in requests], dtype=float)
    base += len(requests)
    for j in range(n):
        rows += [base, base + 1]
        colidx += [j, j]
        vals += [-served[j], -realtime[j]]
    rhs = np.concatenate([cap_rhs, req_rhs, [-args.served, -args.realtime]])
    a_ub = coo_matrix((vals, (rows, colidx)), shape=(base + 2, n)).tocsr()
    objective = -west_held
    started = time.monotonic()
    dual_bound = None
    if args.integer:
        # Whole replicas: HiGHS's branch and bound; within the time limit it returns its best
        # placement (a lower bound on the optimum) and its dual bound (an upper bound on it).
        result = milp(
            objective,
            constraints=LinearConstraint(a_ub, -np.inf, rhs),
            integrality=np.ones(n),
            bounds=Bounds(0, np.inf),
            options={"time_limit": args.time_limit, "mip_rel_gap": 1e-3},
        )
        if result.x is None:
            raise SystemExit(f"no whole-replica placement found: {result.message}")
        dual_bound = -float(result.mip_dual_bound)
    else:
        result = linprog(objective, A_ub=a_ub, b_ub=rhs, bounds=(0, None), method="highs")
        if result.status != 0:
            raise SystemExit(f"no solution: {result.message}")
    elapsed = time.monotonic() - started
    x = result.x
    return {
        "x": x,
        "cols": cols,
        "served": float(served @ x),
        "realtime": float(realtime @ x),
        "west_held": float(west_held @ x),
        "variables": n,
        "rows": base + 2,
        "seconds": elapsed,
        "warm": warm,
        "dual_bound": dual_bound,
    }


def listed_west(listings: list[Listing], ref: Reference, warm: int, steps: int, step_h: float):
    """GPU-hours listed per western (region, model) in the utilisation window."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for lst in listings:
        if ref.catalogue.is_west[lst.event.region]:
            active = max(0, min(lst.active_until, steps) - max(lst.active_from, warm))
            out[lst.event.region, lst.event.gpu_model] += lst.event.gpu_count * active * step_h
    return out


def report(args, ref, listings, requests, steps, solved) -> dict:
    per_hour = 60 // args.step_minutes
    step_h = 1 / per_hour
    warm = solved["warm"]
    listed = listed_west(listings, ref, warm, steps, step_h)
    held: dict[tuple[str, str], float] = defaultdict(float)
    for j, (ri, li, s) in enumerate(solved["cols"]):
        lst, r = listings[li], requests[ri].event
        if not ref.catalogue.is_west[lst.event.region] or solved["x"][j] < 1e-9:
            continue
        overlap = max(0, min(s + r.duration_hours * per_hour, lst.active_until, steps) - max(s, warm))
        held[lst.event.region, lst.event.gpu_model] += solved["x"][j] * r.gpus_per_replica * overlap * step_h
    # Demand that can reach a (region, model) at all, in GPU-hours asked, by latency class.
    reach: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for key in listed:
        sample = next(lst.event for lst in listings if (lst.event.region, lst.event.gpu_model) == key)
        for r in requests:
            if reaches(r.event, sample, ref, args.prices):
                e = r.event
                reach[key][e.latency_class] += e.replicas * e.gpus_per_replica * e.duration_hours
    total_listed = sum(listed.values())
    asked = [r.event for r in requests]
    rows = []
    for key in sorted(listed):
        rows.append(
            {
                "region": key[0],
                "gpu_model": key[1],
                "listed": round(listed[key]),
                "held_at_bound": round(held[key]),
                "utilisation_at_bound": round(100 * held[key] / listed[key], 1) if listed[key] else None,
                "demand_in_reach_by_class": {c: round(v) for c, v in sorted(reach[key].items())},
            }
        )
    return {
        "scenario": args.scenario,
        "seed": args.seed,
        "days": args.days,
        "prices": args.prices,
        "integer": args.integer,
        "max_wait_hours": args.max_wait_hours,
        "served_at_least": args.served,
        "realtime_at_least": args.realtime,
        "listings": len(listings),
        "requests": len(requests),
        "asked_gpu_hours": round(sum(e.replicas * e.gpus_per_replica * e.duration_hours for e in asked)),
        "west_listed_gpu_hours": round(total_listed),
        "west_held_at_bound": round(solved["west_held"]),
        "west_utilisation_bound": round(100 * solved["west_held"] / total_listed, 1),
        "west_utilisation_dual_bound": (
            None if solved["dual_bound"] is None else round(100 * solved["dual_bound"] / total_listed, 1)
        ),
        "served_at_bound": round(solved["served"]),
        "realtime_at_bound": round(solved["realtime"]),
        "variables": solved["variables"],
        "rows": solved["rows"],
        "seconds": round(solved["seconds"], 1),
        "by_listing": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="default", choices=sorted(SCENARIOS))
    parser.add_argument("--days", type=float, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--step-minutes", type=int, default=30)
    parser.add_argument("--prices", choices=("listed", "energy"), default="energy")
    parser.add_argument("--served", type=float, default=53367, help="GPU-hours served at least (nearest-first's)")
    parser.add_argument("--realtime", type=float, default=3709, help="real-time GPU-hours at least (engine's)")
    parser.add_argument(
        "--max-wait-hours",
        type=float,
        help="a replica starts at most this long after its request is submitted (0: in that step or never)",
    )
    parser.add_argument("--integer", action="store_true", help="whole replicas (a MILP; slower)")
    parser.add_argument("--time-limit", type=float, default=300, help="seconds for the MILP (with --integer)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    ref = reference_load()
    script, listings, requests = script_read(args, ref)
    steps = len(script.steps)
    solved = bound_solve(args, ref, listings, requests, steps)
    out = report(args, ref, listings, requests, steps, solved)
    waiting = "" if args.max_wait_hours is None else f", waiting at most {args.max_wait_hours:g} h"
    print(
        f"{args.scenario}, seed {args.seed}, {args.days:g} days, prices {args.prices}"
        f"{', whole replicas' if args.integer else ''}{waiting}: {out['listings']} listings, {out['requests']} requests"
        f" ({out['asked_gpu_hours']:,} GPU-hours asked); LP {out['variables']:,} variables × {out['rows']:,} rows,"
        f" {out['seconds']} s"
    )
    if out["west_utilisation_dual_bound"] is None:
        print(
            f"western utilisation ≤ {out['west_utilisation_bound']} %  ({out['west_held_at_bound']:,} of"
            f" {out['west_listed_gpu_hours']:,} GPU-hours listed from day 2), serving {out['served_at_bound']:,}"
            f" GPU-hours (≥ {args.served:,.0f}), real-time {out['realtime_at_bound']:,} (≥ {args.realtime:,.0f})"
        )
    else:
        print(
            f"western utilisation ≤ {out['west_utilisation_dual_bound']} % (HiGHS's dual bound on whole replicas);"
            f" the best whole-replica placement found in the time limit reaches {out['west_utilisation_bound']} %"
            f" ({out['west_held_at_bound']:,} of {out['west_listed_gpu_hours']:,} GPU-hours), serving"
            f" {out['served_at_bound']:,} GPU-hours, real-time {out['realtime_at_bound']:,}; per listing:"
        )
    print(f"{'region':28} {'model':12} {'listed':>8} {'held':>8} {'util':>6}  demand in reach (GPU-h asked, 3 days)")
    for row in out["by_listing"]:
        reach = ", ".join(f"{c} {v:,}" for c, v in row["demand_in_reach_by_class"].items()) or "none"
        print(
            f"{row['region']:28} {row['gpu_model']:12} {row['listed']:>8,} {row['held_at_bound']:>8,}"
            f" {row['utilisation_at_bound']:>5} %  {reach}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    if not math.isfinite(out["west_utilisation_bound"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
