"""``solve(problem) -> Plan``: serve as much as possible by priority, then as cheaply as possible.

Objective, lexicographic:
1. served GPUs of the highest priority level, then of the next level, and so on (GPUs = replicas ×
   GPUs per replica, so a request of 8-GPU replicas is not crowded out by 1-GPU ones merely for
   being larger; within a component of one replica size this is the same as counting replicas);
2. then total cost = Σ cost per GPU-hour × GPUs × duration hours, voucher subsidies capped by their
   budgets (:func:`matching.assemble.cap_vouchers`). The flow prices full subsidies; when a budget
   binds, the affected components are re-planned without that subsidy and the better plan is kept,
   with a bound that accounts for the budgets (:mod:`matching.packing.budgets`).

Per component (:mod:`matching.graph.components`):
- one replica size: a transportation problem in replica units (listing capacity = Σ⌊free/size⌋
  over its nodes), solved exactly by min-cost flow; ``lower_bound`` = ``objective`` unless a voucher
  budget binds (then see :mod:`matching.packing.budgets`).
- mixed sizes: multiple knapsack, NP-hard in general. A GPU-unit min-cost flow with per-listing
  size chains (:func:`matching.packing.transport.relax`) is its relaxation: the upper bound on servable GPUs
  and the lower bound on cost. The plan is the *class dive* of :mod:`matching.packing.repair` (size
  classes largest first: the relaxation's per-listing capacity for the class rounded to whole
  replicas, the class placed exactly, the relaxation re-solved for the smaller classes). When the
  dive serves fewer GPUs at some priority level than the relaxation, the plan is the best (by the
  objective above) of the dive, (b) the relaxation's whole replicas, re-solved on the residual a
  few times, refilled exactly and improved by exact re-solves of one size class at a time, and
  (c) the greedy baseline. The reported lower bound is the relaxation's min cost at exactly the
  GPUs per level the plan serves, so ``gap`` is honest. Small components are first tried as an exact
  integer program (:mod:`matching.packing.exact`): proven optimal, gap 0.
Both run on the compressed feasibility graph of :mod:`matching.graph.chains` (exact), never on the dense
(request × listing) edge set.
Money is integer 0.0001 CNY inside the solver; deterministic for a given input.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field, replace

import numpy as np

from matching import costs
from matching.assemble import Priced, assemble, price
from matching.graph.components import Component, feasibility, find_components
from matching.graph.edges import Arrays, build_arrays, edges_between, price_pairs
from matching.greedy import greedy_fill
from matching.packing import budgets, exact
from matching.packing.repair import Pair, class_dive, place, round_and_refill
from matching.packing.transport import NodePool, Transport, levels_of, relax, retransport, transport
from matching.problem import Plan, Problem
from matching.timings import ms_since

#: Re-plan for binding voucher budgets only when the mixed-size components to re-bound hold at most
#: this many requests: each costs another relaxation solve, and a round must stay well inside its
#: Celery time limit. One-size components always re-plan: they restart from their first optimum
#: (:func:`matching.packing.transport.retransport`, ~0.04 s at 10k × 2k). Deterministic (a size, not a clock).
REPLAN_MAX_REQUESTS = 12_000
EXACT = "mcf-exact"
EXACT_MILP = "mcf-exact+milp"  # mixed sizes, every mixed component solved exactly (matching.packing.exact)
REPAIRED = "mcf-relaxation+size-class-repair"
#: Components solved at once, on threads: the simplex releases the GIL, so they use every core given to
#: this process. Components share nothing (each owns its listings' nodes), so the plan does not depend on it.
COMPONENT_THREADS = max(1, min(8, len(os.sched_getaffinity(0))))


@dataclass
class ComponentResult:
    placements: dict[Pair, list[int]]
    lower_bound: int  # 0.0001 CNY
    served_gpus_bound: int
    mixed: bool
    stats: dict[str, int] = field(default_factory=dict)
    solved: Transport | None = None  # one-size components: the flow, to re-price (:func:`_replan`)


def solve(problem: Problem) -> Plan:
    """The plan for one round. Never exceeds any node's free GPUs; every assignment is feasible."""
    with _collector_paused():
        return _solve(problem)


@contextmanager
def _collector_paused() -> Iterator[None]:
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
    components = find_components(problem, arrays, graph)
    timings["edges"] = ms_since(t0)
    t1 = time.perf_counter()
    pool = NodePool(problem)
    results = _in_parallel(lambda component: _solve_component(problem, arrays, component, pool), components)
    best = _Candidate(results, pool, price(problem, arrays, _merged(results)), _lower(results))
    full_subsidy = (best.lower, best.priced.objective - best.priced.cut_cny)
    if best.priced.binding and _replan_size(problem, components, best) <= REPLAN_MAX_REQUESTS:
        best = _choose(problem, best, _replan(problem, arrays, components, best))
    elif best.priced.binding:
        best.replan = "skipped: too large"
    timings["solve"] = ms_since(t1)
    mixed = sum(r.mixed for r in best.results)
    exact_components = sum(r.stats.get("exact", 0) for r in best.results)
    stats: dict[str, int | str] = {
        "components": len(components),
        "mixed_components": mixed,
        "served_gpus_bound": sum(r.served_gpus_bound for r in best.results),
        "class_dive": sum(r.stats.get("class_dive", 0) for r in best.results),
        "rounding": sum(r.stats.get("rounding", 0) for r in best.results),
        "greedy_won": sum(r.stats.get("greedy_won", 0) for r in best.results),
        "exact_components": exact_components,
        "budget_replan": best.replan,
        # Before budget refinement: the bound and the plan's cost with every subsidy paid in full
        # (for one-size components the bound is the exact full-subsidy optimum, which the benchmark
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
        solver=EXACT if not mixed else EXACT_MILP if exact_components == mixed else REPAIRED,
        lower_bound=costs.from_units(max(best.lower, 0)),
        stats=stats,
        timings=timings,
        priced=best.priced,
    )
    plan.timings_ms["total"] = ms_since(t0)
    return plan


@dataclass
class _Candidate:
    results: list[ComponentResult]
    pool: NodePool
    priced: Priced
    lower: int  # a valid lower bound (0.0001 CNY) on the capped cost at this plan's served GPUs
    replan: str = ""


def _in_parallel(
    solve_one: Callable[[Component], ComponentResult], components: Sequence[Component]
) -> list[ComponentResult]:
    """``[solve_one(s) for s in components]``, on up to :data:`COMPONENT_THREADS` threads, results in order."""
    if COMPONENT_THREADS == 1 or len(components) < 2:
        return [solve_one(s) for s in components]
    # Largest first, so that the longest solve does not start last.
    order = sorted(range(len(components)), key=lambda k: -len(components[k].requests) * len(components[k].listings))
    with ThreadPoolExecutor(max_workers=min(COMPONENT_THREADS, len(components))) as threads:
        done = dict(zip(order, threads.map(solve_one, [components[k] for k in order]), strict=True))
    return [done[k] for k in range(len(components))]


def _per_component(problem: Problem, c: _Candidate) -> list[dict[int, int]]:
    """GPUs served per priority, component by component."""
    out = []
    for r in c.results:
        gpus: dict[int, int] = {}
        for (i, _), nodes in r.placements.items():
            request = problem.requests[i]
            gpus[request.priority] = gpus.get(request.priority, 0) + len(nodes) * request.gpus_per_replica
        out.append(gpus)
    return out


def _merged(results: list[ComponentResult]) -> dict[Pair, list[int]]:
    return {e: nodes for r in results for e, nodes in r.placements.items()}


def _lower(results: list[ComponentResult]) -> int:
    return sum(r.lower_bound for r in results)


def _replan(problem: Problem, arrays: Arrays, components: list[Component], first: _Candidate) -> _Candidate:
    """Re-solve the components of the binding voucher codes without their subsidy (:mod:`matching.packing.budgets`)."""
    codes = first.priced.binding
    priced_arrays = budgets.without_subsidy(problem, arrays, codes)
    redo = budgets.touched(problem, components, codes)
    pool = NodePool(problem)
    results = []
    for k, component in enumerate(components):
        if k in redo and not first.results[k].mixed:
            results.append(_repriced_uniform(priced_arrays, first.results[k], pool))
        elif k in redo:  # mixed: re-planning costs a full repair and rarely wins; re-bound the first plan
            results.append(_rebound(problem, priced_arrays, component, first.results[k]))
            for j in component.listings:
                pool.free[j] = first.pool.free[j]
        else:
            results.append(first.results[k])
            for j in component.listings:
                pool.free[j] = first.pool.free[j]
    lower = _lower(results) - budgets.remaining_units(problem, codes)
    return _Candidate(results, pool, price(problem, arrays, _merged(results)), lower)


def _rebound(problem: Problem, arrays: Arrays, component: Component, result: ComponentResult) -> ComponentResult:
    """``result``'s placements with the relaxation bound under ``arrays``' prices, at its served GPUs."""
    served = np.array(_score(arrays, component, result.placements)[0], dtype=np.int64)
    initial = [x.node_free for x in problem.listings]
    lower = relax(arrays, component.requests, component.listings, initial, targets=served).cost
    return replace(result, lower_bound=lower)


def _replan_size(problem: Problem, components: list[Component], first: _Candidate) -> int:
    """Requests in the mixed-size components a re-plan would re-bound."""
    redo = budgets.touched(problem, components, first.priced.binding)
    return sum(len(components[k].requests) for k in redo if first.results[k].mixed)


def _choose(problem: Problem, first: _Candidate, second: _Candidate) -> _Candidate:
    """The better plan (served GPUs by level, then capped cost); bounds combine when service ties.

    Each bound holds at its plan's served GPUs per component and level, so they combine only when the
    two plans serve exactly the same there (always, for one-size components).
    """
    served = [budgets.served_by_level(problem, c.priced.assignments) for c in (first, second)]
    if served[0] != served[1]:
        return first if served[0] > served[1] else replace(second, replan="served more")
    if _per_component(problem, first) != _per_component(problem, second):
        better = second.priced.objective < first.priced.objective
        return replace(second, replan="cheaper") if better else first
    lower = max(first.lower, second.lower)
    if second.priced.objective < first.priced.objective:
        return replace(second, lower=lower, replan="cheaper")
    return replace(first, lower=lower, replan="bound only")


def _solve_component(problem: Problem, arrays: Arrays, component: Component, pool: NodePool) -> ComponentResult:
    sizes = np.unique(arrays.request_size[component.requests])
    if len(sizes) == 1:
        return _solve_uniform(arrays, component, pool, int(sizes[0]))
    return _solve_mixed(problem, arrays, component, pool)


def _solve_uniform(arrays: Arrays, component: Component, pool: NodePool, size: int) -> ComponentResult:
    """Exact: min-cost flow in replica units; the flow's cost is the optimum."""
    demand = {int(i): int(arrays.request_replicas[i]) for i in component.requests}
    counts, solved = transport(arrays, demand, component.listings, pool, size)
    return _uniform_result(arrays, counts, solved, pool)


def _repriced_uniform(arrays: Arrays, first: ComponentResult, pool: NodePool) -> ComponentResult:
    """``first``'s one-size component re-solved exactly under ``arrays``' subsidies, from its optimum."""
    if first.solved is None:
        raise ValueError("only a one-size component's result keeps its flow to re-solve")
    counts, solved = retransport(arrays, first.solved)
    return _uniform_result(arrays, counts, solved, pool)


def _uniform_result(arrays: Arrays, counts: dict[Pair, int], solved: Transport, pool: NodePool) -> ComponentResult:
    placements = place(arrays, counts, pool)
    served = int(solved.result.served.sum()) * solved.size
    return ComponentResult(placements, solved.result.cost, served, mixed=False, solved=solved)


def _solve_mixed(problem: Problem, arrays: Arrays, component: Component, pool: NodePool) -> ComponentResult:
    small = _solve_exact(problem, arrays, component, pool)
    if small is not None:
        return small
    initial = [x.node_free for x in problem.listings]
    bound = relax(arrays, component.requests, component.listings, initial)
    trial = _fork(pool, component)
    candidates = [(class_dive(arrays, component, trial, bound.gpus), trial, "class_dive")]
    if _score(arrays, component, candidates[0][0])[0] != tuple(int(s) for s in bound.served):
        # The dive left servable GPUs unserved at some level: try the other two as well.
        trial = _fork(pool, component)
        candidates.append((round_and_refill(arrays, component, trial, bound.gpus), trial, "rounding"))
        trial = _fork(pool, component)
        candidates.append((greedy_fill(problem, arrays, component.requests, trial), trial, "greedy_won"))
    scored = [(_score(arrays, component, p), k, p, t, name) for k, (p, t, name) in enumerate(candidates)]
    best = max(scored, key=lambda c: (c[0][0], -c[0][1], -c[1]))
    served, _, placements, trial, name = best
    for j in component.listings:
        pool.free[j] = trial.free[j]
    lower = bound.cost
    if tuple(int(s) for s in bound.served) != served[0]:
        targets = np.array(served[0], dtype=np.int64)
        lower = relax(arrays, component.requests, component.listings, initial, targets=targets).cost
    return ComponentResult(placements, lower, int(bound.served.sum()), mixed=True, stats={name: 1})


def _solve_exact(problem: Problem, arrays: Arrays, component: Component, pool: NodePool) -> ComponentResult | None:
    """A small component's proven optimum by integer programming (:mod:`matching.packing.exact`), if it gets one."""
    if len(component.requests) * len(component.listings) > 4 * exact.MAX_PAIRS:
        return None
    edges = edges_between(problem, arrays, component.requests, component.listings)
    found = exact.exact_counts(arrays, component.requests, edges, pool.free)
    if found is None:
        return None
    counts, lower = found
    trial = _fork(pool, component)
    placements = place(arrays, counts, trial)
    if sum(map(len, placements.values())) != sum(counts.values()):  # cannot happen for size chains
        return None
    for j in component.listings:
        pool.free[j] = trial.free[j]
    served = sum(n * int(arrays.request_size[i]) for (i, _), n in counts.items())
    return ComponentResult(placements, lower, served, mixed=True, stats={"exact": 1})


def _fork(pool: NodePool, component: Component) -> NodePool:
    """A pool whose component listings can be changed without touching ``pool`` (others are shared)."""
    trial = NodePool.__new__(NodePool)
    trial.free = list(pool.free)
    for j in component.listings:
        trial.free[j] = deepcopy(pool.free[j])
    return trial


def _score(arrays: Arrays, component: Component, placements: dict[Pair, list[int]]) -> tuple[tuple[int, ...], int]:
    """(served GPUs per priority level, highest first; total cost in 0.0001 CNY)."""
    reqs = component.requests
    level, n_levels = levels_of(arrays.request_priority[reqs])
    served = np.zeros(n_levels, dtype=np.int64)
    if not placements:
        return tuple(int(s) for s in served), 0
    keys = list(placements)
    i = np.array([k[0] for k in keys], dtype=np.int64)
    j = np.array([k[1] for k in keys], dtype=np.int64)
    gpus = np.array([len(placements[k]) for k in keys], dtype=np.int64) * arrays.request_size[i]
    np.add.at(served, level[np.searchsorted(reqs, i)], gpus)
    cost = int(np.sum(price_pairs(arrays, i, j).cost * gpus * arrays.request_duration_hours[i]))
    return tuple(int(s) for s in served), cost
