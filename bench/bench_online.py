"""Rounds online against the offline optimum: seeded arrival sequences fed one batch at a time.

    .venv/bin/python bench/bench_online.py [--sequences 5] [--listings 60] [--requests 300]
                                           [--batch 1] [--seed 1] [--scale 1] [--hold-minutes 60]

Each sequence is a market of ``--listings`` listings and two days of ``--requests`` requests drawn
by bench_matching's seeded generators (one replica size per GPU model): *yesterday* and *today*.
Today's requests arrive ``--batch`` at a time, one batch every 10 s (as when loaded through the
API with a worker running), and every arrival runs a round, as the marketplace does:

- a round solves every open request (those unserved earlier stay open until their ``start_by``
  passes) on the capacity left; placed capacity is consumed until its match ends (each match runs
  for its duration; durations are at least 8 h here, longer than any sequence, so no capacity
  comes back and the offline solve below is a true upper bound);
- *offline*: today's requests all at once, on the full capacity, by the same engine;
- *myopic*: today's engine, round after round;
- *look-ahead*: the same rounds with each listing's reservation (``matching.lookahead``) set from
  yesterday: the mean scarcity rent (``matching.prices``) per (region, GPU model) of yesterday's
  requests on the same capacity, times ``--scale``; and far-off requests (start_by more than an
  hour away) held for a call: those that arrive in one period of ``--hold-minutes`` are offered
  together to the rounds after it ends (``matching.lookahead.held``; sweep rounds every 10 min
  after the last arrival pick them up).

Rows: served replicas and cost (CNY, price − subsidy + latency cost over the durations; premiums
are not a cost to anyone) of each, online as a share of offline, and latency bounds broken (checked
again on every assignment against its request's bound; must be 0).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_matching import NOW, default_data_path, load_reference, make_listing, make_request  # noqa: E402
from matching import lookahead  # noqa: E402
from matching.flow.simplex import warm_up  # noqa: E402
from matching.prices import clearing_prices  # noqa: E402
from matching.problem import ListingSpec, Plan, Problem, RequestSpec  # noqa: E402
from matching.solver import solve  # noqa: E402

ARRIVAL_GAP = timedelta(seconds=10)
SWEEP_GAP = timedelta(minutes=10)
MIN_DURATION_HOURS = 8


@dataclass
class Outcome:
    served: int = 0
    cost: Decimal = Decimal(0)
    gpu_hours: int = 0
    bounds_broken: int = 0
    rounds: int = 0
    freed_gpus: int = 0  # GPUs whose match ended before the sequence did (0: offline is an upper bound)

    def add(self, other: Outcome) -> None:
        self.served += other.served
        self.cost += other.cost
        self.gpu_hours += other.gpu_hours
        self.bounds_broken += other.bounds_broken
        self.rounds += other.rounds
        self.freed_gpus += other.freed_gpus

    def cost_text(self) -> str:
        per = self.cost / self.gpu_hours if self.gpu_hours else Decimal(0)
        return f"{self.cost:.0f} ({per:.2f}/GPU-h)"


def sequence(
    ref: dict, seed: int, n_listings: int, n_requests: int
) -> tuple[list[ListingSpec], list[list[RequestSpec]]]:
    """Listings and two days of requests (yesterday, today), seeded."""
    rng = random.Random(f"online-{seed}-{n_listings}-{n_requests}")
    listings = [make_listing(rng, ref, k) for k in range(n_listings)]
    days = [[_long(make_request(rng, ref, k, False)) for k in range(n_requests)] for _ in range(2)]
    return listings, days


def _long(request: RequestSpec) -> RequestSpec:
    return replace(request, duration_hours=max(request.duration_hours, MIN_DURATION_HOURS))


def offline(ref: dict, listings: list[ListingSpec], requests: list[RequestSpec]) -> Outcome:
    problem = Problem(requests=tuple(requests), listings=tuple(listings), rtt_ms=ref["rtt"], now=NOW)
    out = Outcome(rounds=1)
    _count(out, problem, solve(problem))
    return out


def reservations_from(ref: dict, listings: list[ListingSpec], yesterday: list[RequestSpec], scale: Decimal):
    """Each listing's reservation: yesterday's mean rent of its (region, GPU model), × ``scale``."""
    problem = Problem(requests=tuple(yesterday), listings=tuple(listings), rtt_ms=ref["rtt"], now=NOW)
    prices = clearing_prices(problem, solve(problem), max_resolves=len(listings), max_component_requests=10**6)
    rents = lookahead.recent_rent((p.region, p.gpu_model, p.rent) for p in prices)
    return lookahead.reservations_by_listing(listings, rents, scale=scale)


def online(
    ref: dict,
    listings: list[ListingSpec],
    requests: list[RequestSpec],
    batch: int,
    reservations: dict[int, Decimal] | None = None,
    hold: timedelta | None = None,
) -> Outcome:
    """Rounds at each batch's arrival (and sweeps after the last while requests are held)."""
    free = {x.id: list(x.node_free) for x in listings}
    ends: list[tuple[datetime, int, tuple[int, ...], int]] = []  # (end, listing, nodes, GPUs per replica)
    pending: list[tuple[datetime, RequestSpec]] = []  # (arrived, open request with its remaining replicas)
    out = Outcome()
    for now, arriving in _events(requests, batch, hold):
        for _, listing_id, nodes, size in [e for e in ends if e[0] <= now]:
            out.freed_gpus += len(nodes) * size
            for node in nodes:
                free[listing_id][node] += size
        ends = [e for e in ends if e[0] > now]
        pending += [(now, replace(r, start_by=now + (r.start_by - NOW))) for r in arriving]
        pending = [(t, r) for t, r in pending if r.start_by >= now]
        offered = tuple(r for t, r in pending if not _held(r, now, t, hold))
        if not offered:
            continue
        snapshot = tuple(replace(x, node_free=tuple(free[x.id])) for x in listings)
        problem = Problem(requests=offered, listings=snapshot, rtt_ms=ref["rtt"], now=now)
        if reservations:
            problem = replace(problem, reservations=reservations)
        plan = solve(problem)
        out.rounds += 1
        _count(out, problem, plan)
        placed: dict[int, int] = {}
        hours = {r.id: r.duration_hours for r in offered}
        for a in plan.assignments:
            for node in a.nodes:
                free[a.listing_id][node] -= a.gpus_per_replica
            ends.append((a.starts_at + timedelta(hours=hours[a.request_id]), a.listing_id, a.nodes, a.gpus_per_replica))
            placed[a.request_id] = placed.get(a.request_id, 0) + a.replicas
        pending = [(t, replace(r, replicas=r.replicas - placed.get(r.id, 0))) for t, r in pending]
        pending = [(t, r) for t, r in pending if r.replicas > 0]
    return out


def _held(request: RequestSpec, now: datetime, arrived: datetime, hold: timedelta | None) -> bool:
    if hold is None:
        return False
    return lookahead.held(request, now, horizon=lookahead.HOLD_HORIZON, submitted_at=arrived, period=hold)


def _events(requests: list[RequestSpec], batch: int, hold: timedelta | None):
    """(time, arriving requests): one batch per ARRIVAL_GAP, then sweeps while anything may be held."""
    now = NOW
    for k in range(0, len(requests), batch):
        now = NOW + ARRIVAL_GAP * (k // batch)
        yield now, requests[k : k + batch]
    last = now
    while hold is not None and now < last + hold + SWEEP_GAP:
        now += SWEEP_GAP
        yield now, []


def _count(out: Outcome, problem: Problem, plan: Plan) -> None:
    by_id = {r.id: r for r in problem.requests}
    for a in plan.assignments:
        r = by_id[a.request_id]
        out.served += a.replicas
        out.cost += a.cost_per_gpu_hour * a.gpus * r.duration_hours
        out.gpu_hours += a.gpus * r.duration_hours
        if r.max_rtt_ms is not None and a.rtt_ms > r.max_rtt_ms:
            out.bounds_broken += 1


HEADER = [
    "sequence",
    "offline served",
    "offline cost CNY",
    "myopic served",
    "myopic cost CNY",
    "myopic %",
    "look-ahead served",
    "look-ahead cost CNY",
    "look-ahead %",
    "bounds broken",
]


def run(ref: dict, args: argparse.Namespace, k: int) -> tuple[Outcome, Outcome, Outcome]:
    seed = args.seed + k
    listings, (yesterday, today) = sequence(ref, seed, args.listings, args.requests)
    best = offline(ref, listings, today)
    myopic = online(ref, listings, today, args.batch)
    reservations = reservations_from(ref, listings, yesterday, Decimal(str(args.scale)))
    hold = timedelta(minutes=args.hold_minutes) if args.hold_minutes > 0 else None
    ahead = online(ref, listings, today, args.batch, reservations, hold)
    _print_row(f"seed {seed}", best, myopic, ahead)
    return best, myopic, ahead


def _print_row(label: str, best: Outcome, myopic: Outcome, ahead: Outcome) -> None:
    cells: list[object] = [label, best.served, best.cost_text()]
    for o in (myopic, ahead):
        cells += [o.served, o.cost_text(), _pct(o.served, best.served)]
    cells.append(myopic.bounds_broken + ahead.bounds_broken)
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=5)
    parser.add_argument("--listings", type=int, default=60)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1, help="requests per arrival (per round)")
    parser.add_argument("--seed", type=int, default=1)
    scale_help = "reservation = scale × yesterday's mean rent"
    parser.add_argument("--scale", type=float, default=float(lookahead.RESERVATION_SCALE), help=scale_help)
    hold_help = "the call period of far-off requests, minutes; 0: hold nothing"
    period = lookahead.HOLD_PERIOD // timedelta(minutes=1)
    parser.add_argument("--hold-minutes", type=int, default=period, help=hold_help)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args(argv)
    ref = load_reference(args.data or default_data_path())
    warm_up()
    started = time.perf_counter()
    print(
        f"Online vs offline, {args.listings} listings × {args.requests} requests arriving {args.batch} per round "
        f"every {ARRIVAL_GAP.seconds} s. Look-ahead: reservations = {args.scale:g} × yesterday's mean rent per "
        f"region and GPU model; far-off requests held for a call every {args.hold_minutes} min.\n"
    )
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    totals = (Outcome(), Outcome(), Outcome())
    for k in range(args.sequences):
        for total, o in zip(totals, run(ref, args, k), strict=True):
            total.add(o)
    _print_row("all", *totals)
    freed = sum(o.freed_gpus for o in totals)
    print(
        f"\nRounds: myopic {totals[1].rounds}, look-ahead {totals[2].rounds}. GPUs freed by a match ending "
        f"within a sequence: {freed} (0: nothing came back, so the offline solve bounds both). "
        f"{time.perf_counter() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
