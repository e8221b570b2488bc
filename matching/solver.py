"""``solve(problem) -> Plan``: serve as much as possible by priority, then as cheaply as possible.

Objective, lexicographic:
1. served GPUs of the highest priority level, then of the next level, and so on (GPUs = replicas ×
   GPUs per replica, so a request of 8-GPU replicas is not crowded out by 1-GPU ones merely for
   being larger; within a shard of one replica size this is the same as counting replicas);
2. then total cost = Σ cost per GPU-hour × GPUs × duration hours, voucher subsidies capped by their
   budgets (:func:`matching.assemble.cap_vouchers`). The flow prices full subsidies; when a budget
   binds, the affected shards are re-planned without that subsidy and the better plan is kept,
   with a bound that accounts for the budgets (:mod:`matching.budgets`).

Per shard (:mod:`matching.shards`):
- one replica size: a transportation problem in replica units (listing capacity = Σ⌊free/size⌋
  over its nodes), solved exactly by min-cost flow; ``lower_bound`` = ``objective`` unless a voucher
  budget binds (then see :mod:`matching.budgets`).
- mixed sizes: multiple knapsack, NP-hard in general. A GPU-unit min-cost flow with per-listing
  size chains (:func:`matching.packing.relax`) is its relaxation: the upper bound on servable GPUs
  and the lower bound on cost. The plan is the *class dive* of :mod:`matching.repair` (size
  classes largest first: the relaxation's per-listing capacity for the class rounded to whole
  replicas, the class placed exactly, the relaxation re-solved for the smaller classes). When the
  dive serves fewer GPUs at some priority level than the relaxation, the plan is the best (by the
  objective above) of the dive, (b) the relaxation's whole replicas, re-solved on the residual a
  few times, refilled exactly and improved by exact re-solves of one size class at a time, and
  (c) the greedy baseline. The reported lower bound is the relaxation's min cost at exactly the
  GPUs per level the plan serves, so ``gap`` is honest. Small shards are first tried as an exact
  integer program (:mod:`matching.exact`): proven optimal, gap 0.
Both run on the compressed feasibility graph of :mod:`matching.chains` (exact), never on the dense
(request × listing) edge set.
Money is integer 0.0001 CNY inside the solver; deterministic for a given input.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field, replace

import numpy as np

from matching import budgets, costs, exact
from matching.assemble import Priced, assemble, price
from matching.edges import Arrays, build_arrays, edges_between, price_pairs
from matching.greedy import greedy_fill
from matching.packing import NodePool, Transport, levels_of, relax, retransport, transport
from matching.problem import Plan, Problem
from matching.repair import Pair, class_dive, place, round_and_refill
from matching.shards import Shard, feasibility, find_shards

#: Re-plan for binding voucher budgets only when the mixed-size shards to re-bound hold at most
#: this many requests: each costs another relaxation solve, and a round must stay well inside its
#: Celery time limit. One-size shards always re-plan: they restart from their first optimum
#: (:func:`matching.packing.retransport`, ~0.04 s at 10k × 2k). Deterministic (a size, not a clock).
REPLAN_MAX_REQUESTS = 12_000
EXACT = "mcf-exact"
EXACT_MILP = "mcf-exact+milp"  # mixed sizes, every mixed shard solved exactly (matching.exact)
REPAIRED = "mcf-relaxation+size-class-repair"
#: Shards solved at once, on threads: the simplex releases the GIL, so they use every core given to
#: this process. Shards share nothing (each owns its listings' nodes), so the plan does not depend on it.
SHARD_THREADS = max(1, min(8, len(os.sched_getaffinity(0))))


@dataclass
class ShardResult:
    placements: dict[Pair, list[int]]
    lower_bound: int  # 0.0001 CNY
    served_gpus_bound: int
    mixed: bool
    stats: dict = field(default_factory=dict)
    solved: Transport | None = None  # one-size shards: the flow, to re-price (:func:`_replan`)


def solve(problem: Problem) -> Plan:
    """The plan for one round. Never exceeds any node's free GPUs; every assignment is feasible."""
    with _collector_paused():
        return _solve(problem)


@contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while a round is solved, if it was on.

    A round allocates a few hundred thousand small acyclic objects (assignments, explanations), and
    each of the collector's passes over them walks every live object: measured at 10k × 2k, 30 %
    of the explanation time (~150 ms). Nothing the solver builds needs the collector to be freed.
    Concurrent solves on other threads at worst re-enable it early.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _solve(problem: Problem) -> Plan:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    arrays = build_arrays(problem)
    graph = feasibility(problem, arrays)
    shards = find_shards(problem, arrays, graph)
    timings["edges"] = _ms_since(t0)
    t1 = time.perf_counter()
    pool = NodePool(problem)
    results = _in_parallel(lambda shard: _solve_shard(problem, arrays, shard, pool), shards)
    best = _Candidate(results, pool, price(problem, arrays, _merged(results)), _lower(results))
    full_subsidy = (best.lower, best.priced.objective - best.priced.cut_cny)
    if best.priced.binding and _replan_size(problem, shards, best) <= REPLAN_MAX_REQUESTS:
        best = _choose(problem, best, _replan(problem, arrays, shards, best))
    elif best.priced.binding:
        best.replan = "skipped: too large"
    timings["solve"] = _ms_since(t1)
    mixed = sum(r.mixed for r in best.results)
    exact_shards = sum(r.stats.get("exact", 0) for r in best.results)
    stats = {
        "shards": len(shards),
        "mixed_shards": mixed,
        "served_gpus_bound": sum(r.served_gpus_bound for r in best.results),
        "class_dive": sum(r.stats.get("class_dive", 0) for r in best.results),
        "rounding": sum(r.stats.get("rounding", 0) for r in best.results),
        "greedy_won": sum(r.stats.get("greedy_won", 0) for r in best.results),
        "exact_shards": exact_shards,
        "budget_replan": best.replan,
        # Before budget refinement: the bound and the plan's cost with every subsidy paid in full
        # (for one-size shards the bound is the exact full-subsidy optimum, which the benchmark
        # checks against an independent LP).
        "full_subsidy_bound_cny": str(costs.from_units(full_subsidy[0])),
        "full_subsidy_cost_cny": str(full_subsidy[1]),
    }
    plan = assemble(
        problem,
        arrays,
        graph,
        _merged(best.results),
        best.pool,
        solver=EXACT if not mixed else EXACT_MILP if exact_shards == mixed else REPAIRED,
        lower_bound=costs.from_units(max(best.lower, 0)),
        stats=stats,
        timings=timings,
        priced=best.priced,
    )
    plan.timings_ms["total"] = _ms_since(t0)
    return plan


@dataclass
class _Candidate:
    results: list[ShardResult]
    pool: NodePool
    priced: Priced
    lower: int  # a valid lower bound (0.0001 CNY) on the capped cost at this plan's served GPUs
    replan: str = ""


def _in_parallel(solve_one: Callable[[Shard], ShardResult], shards: Sequence[Shard]) -> list[ShardResult]:
    """``[solve_one(s) for s in shards]``, on up to :data:`SHARD_THREADS` threads, results in order."""
    if SHARD_THREADS == 1 or len(shards) < 2:
        return [solve_one(s) for s in shards]
    # Largest first, so that the longest solve does not start last.
    order = sorted(range(len(shards)), key=lambda k: -len(shards[k].requests) * len(shards[k].listings))
    with ThreadPoolExecutor(max_workers=min(SHARD_THREADS, len(shards))) as threads:
        done = dict(zip(order, threads.map(solve_one, [shards[k] for k in order]), strict=True))
    return [done[k] for k in range(len(shards))]


def _per_shard(problem: Problem, c: _Candidate) -> list[dict[int, int]]:
    """GPUs served per priority, shard by shard."""
    out = []
    for r in c.results:
        gpus: dict[int, int] = {}
        for (i, _), nodes in r.placements.items():
            request = problem.requests[i]
            gpus[request.priority] = gpus.get(request.priority, 0) + len(nodes) * request.gpus_per_replica
        out.append(gpus)
    return out


def _merged(results: list[ShardResult]) -> dict[Pair, list[int]]:
    return {e: nodes for r in results for e, nodes in r.placements.items()}


def _lower(results: list[ShardResult]) -> int:
    return sum(r.lower_bound for r in results)


def _replan(problem: Problem, arrays: Arrays, shards: list[Shard], first: _Candidate) -> _Candidate:
    """Re-solve the shards of the binding voucher codes without their subsidy (:mod:`matching.budgets`)."""
    codes = first.priced.binding
    priced_arrays = budgets.without_subsidy(problem, arrays, codes)
    redo = budgets.touched(problem, shards, codes)
    pool = NodePool(problem)
    results = []
    for k, shard in enumerate(shards):
        if k in redo and not first.results[k].mixed:
            results.append(_repriced_uniform(priced_arrays, first.results[k], pool))
        elif k in redo:  # mixed: re-planning costs a full repair and rarely wins; re-bound the first plan
            results.append(_rebound(problem, priced_arrays, shard, first.results[k]))
            for j in shard.listings:
                pool.free[j] = first.pool.free[j]
        else:
            results.append(first.results[k])
            for j in shard.listings:
                pool.free[j] = first.pool.free[j]
    lower = _lower(results) - budgets.remaining_units(problem, codes)
    return _Candidate(results, pool, price(problem, arrays, _merged(results)), lower)


def _rebound(problem: Problem, arrays: Arrays, shard: Shard, result: ShardResult) -> ShardResult:
    """``result``'s placements with the relaxation bound under ``arrays``' prices, at its served GPUs."""
    served = np.array(_score(arrays, shard, result.placements)[0], dtype=np.int64)
    initial = [x.node_free for x in problem.listings]
    lower = relax(arrays, shard.requests, shard.listings, initial, targets=served).cost
    return replace(result, lower_bound=lower)


def _replan_size(problem: Problem, shards: list[Shard], first: _Candidate) -> int:
    """Requests in the mixed-size shards a re-plan would re-bound."""
    redo = budgets.touched(problem, shards, first.priced.binding)
    return sum(len(shards[k].requests) for k in redo if first.results[k].mixed)


def _choose(problem: Problem, first: _Candidate, second: _Candidate) -> _Candidate:
    """The better plan (served GPUs by level, then capped cost); bounds combine when service ties.

    Each bound holds at its plan's served GPUs per shard and level, so they combine only when the
    two plans serve exactly the same there (always, for one-size shards).
    """
    served = [budgets.served_by_level(problem, c.priced.assignments) for c in (first, second)]
    if served[0] != served[1]:
        return first if served[0] > served[1] else replace(second, replan="served more")
    if _per_shard(problem, first) != _per_shard(problem, second):
        better = second.priced.objective < first.priced.objective
        return replace(second, replan="cheaper") if better else first
    lower = max(first.lower, second.lower)
    if second.priced.objective < first.priced.objective:
        return replace(second, lower=lower, replan="cheaper")
    return replace(first, lower=lower, replan="bound only")


def _ms_since(t: float) -> float:
    return (time.perf_counter() - t) * 1000


def _solve_shard(problem: Problem, arrays: Arrays, shard: Shard, pool: NodePool) -> ShardResult:
    sizes = np.unique(arrays.r_size[shard.requests])
    if len(sizes) == 1:
        return _solve_uniform(arrays, shard, pool, int(sizes[0]))
    return _solve_mixed(problem, arrays, shard, pool)


def _solve_uniform(arrays: Arrays, shard: Shard, pool: NodePool, size: int) -> ShardResult:
    """Exact: min-cost flow in replica units; the flow's cost is the optimum."""
    demand = {int(i): int(arrays.r_replicas[i]) for i in shard.requests}
    counts, solved = transport(arrays, demand, shard.listings, pool, size)
    return _uniform_result(arrays, counts, solved, pool)


def _repriced_uniform(arrays: Arrays, first: ShardResult, pool: NodePool) -> ShardResult:
    """``first``'s one-size shard re-solved exactly under ``arrays``' subsidies, from its optimum."""
    counts, solved = retransport(arrays, first.solved)
    return _uniform_result(arrays, counts, solved, pool)


def _uniform_result(arrays: Arrays, counts: dict[Pair, int], solved: Transport, pool: NodePool) -> ShardResult:
    placements = place(arrays, counts, pool)
    served = int(solved.result.served.sum()) * solved.size
    return ShardResult(placements, solved.result.cost, served, mixed=False, solved=solved)


def _solve_mixed(problem: Problem, arrays: Arrays, shard: Shard, pool: NodePool) -> ShardResult:
    small = _solve_exact(problem, arrays, shard, pool)
    if small is not None:
        return small
    initial = [x.node_free for x in problem.listings]
    bound = relax(arrays, shard.requests, shard.listings, initial)
    trial = _fork(pool, shard)
    candidates = [(class_dive(arrays, shard, trial, bound.gpus), trial, "class_dive")]
    if _score(arrays, shard, candidates[0][0])[0] != tuple(int(s) for s in bound.served):
        # The dive left servable GPUs unserved at some level: try the other two as well.
        trial = _fork(pool, shard)
        candidates.append((round_and_refill(arrays, shard, trial, bound.gpus), trial, "rounding"))
        trial = _fork(pool, shard)
        candidates.append((greedy_fill(problem, arrays, shard.requests, trial), trial, "greedy_won"))
    scored = [(_score(arrays, shard, p), k, p, t, name) for k, (p, t, name) in enumerate(candidates)]
    best = max(scored, key=lambda c: (c[0][0], -c[0][1], -c[1]))
    served, _, placements, trial, name = best
    for j in shard.listings:
        pool.free[j] = trial.free[j]
    lower = bound.cost
    if tuple(int(s) for s in bound.served) != served[0]:
        targets = np.array(served[0], dtype=np.int64)
        lower = relax(arrays, shard.requests, shard.listings, initial, targets=targets).cost
    return ShardResult(placements, lower, int(bound.served.sum()), mixed=True, stats={name: 1})


def _solve_exact(problem: Problem, arrays: Arrays, shard: Shard, pool: NodePool) -> ShardResult | None:
    """A small shard's proven optimum by integer programming (:mod:`matching.exact`), if it gets one."""
    if len(shard.requests) * len(shard.listings) > 4 * exact.MAX_PAIRS:
        return None
    edges = edges_between(problem, arrays, shard.requests, shard.listings)
    found = exact.exact_counts(arrays, shard.requests, edges, pool.free)
    if found is None:
        return None
    counts, lower = found
    trial = _fork(pool, shard)
    placements = place(arrays, counts, trial)
    if sum(map(len, placements.values())) != sum(counts.values()):  # cannot happen for size chains
        return None
    for j in shard.listings:
        pool.free[j] = trial.free[j]
    served = sum(n * int(arrays.r_size[i]) for (i, _), n in counts.items())
    return ShardResult(placements, lower, served, mixed=True, stats={"exact": 1})


def _fork(pool: NodePool, shard: Shard) -> NodePool:
    """A pool whose shard listings can be changed without touching ``pool`` (others are shared)."""
    trial = NodePool.__new__(NodePool)
    trial.free = list(pool.free)
    for j in shard.listings:
        trial.free[j] = deepcopy(pool.free[j])
    return trial


def _score(arrays: Arrays, shard: Shard, placements: dict[Pair, list[int]]) -> tuple:
    """(served GPUs per priority level, highest first; total cost in 0.0001 CNY)."""
    reqs = shard.requests
    level, n_levels = levels_of(arrays.r_priority[reqs])
    served = np.zeros(n_levels, dtype=np.int64)
    if not placements:
        return tuple(int(s) for s in served), 0
    keys = list(placements)
    i = np.array([k[0] for k in keys], dtype=np.int64)
    j = np.array([k[1] for k in keys], dtype=np.int64)
    gpus = np.array([len(placements[k]) for k in keys], dtype=np.int64) * arrays.r_size[i]
    np.add.at(served, level[np.searchsorted(reqs, i)], gpus)
    cost = int(np.sum(price_pairs(arrays, i, j).cost * gpus * arrays.r_duration_h[i]))
    return tuple(int(s) for s in served), cost
