"""The exact inference round: a mixed-integer program over every (demand, alternative, listing) option,
solved by HiGHS (``scipy.optimize.milp``). Used on small rounds; also the reference the fast method's
bounds are tested against.

Variables: ``x_o`` replicas of option o (integer, at most the listing's slots for its size) and
``s_d`` tokens/s served of demand d (continuous, ≤ its target and ≤ Σ tokens/s of its replicas).
Per listing, for every replica size t present, the GPUs of replicas of size ≥ t are at most
t × Σ_nodes ⌊free / t⌋: for sizes in a divisibility chain (1 | 2 | 4 | 8, the only sizes quotes make)
that is exactly "the replicas fit on the nodes" (:mod:`matching.packing.transport`), so the
program is exact. Per demand, Σ price × GPUs ≤ its budget. Objective, lexicographic: Σ served at
the highest priority level, fixed, then the next, then least Σ (price − subsidy) × GPUs × hours.
The target rule (a replica only while below the target) is met afterwards by dropping replicas
that are not needed (:func:`matching.substitution_round.Round.trim`), which keeps served tokens
and never adds cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, OptimizeResult, milp
from scipy.sparse import coo_matrix

from matching.substitution_round import Round

#: Served tokens/s kept at a level's optimum, less this relative slack and this many tokens/s
#: (HiGHS's tolerances).
LEVEL_SLACK = 1e-7
LEVEL_SLACK_TOKENS = 1e-6
#: The same, when HiGHS declares a program with the levels kept infeasible (seen on a 14-demand
#: round: the level's own solution broke its rows by HiGHS's feasibility tolerance). Not the
#: default: the looser levels made the cost program of the benchmark's 100 × 50 round twice as slow.
RETRY_SLACK = 1e-6
RETRY_SLACK_TOKENS = 1e-3


def options(rnd: Round) -> tuple[NDArray[np.int64], ...]:
    """Every option as columns: (demand, alternative, listing, size, cost × hours units, price units
    per replica-hour); tokens/s separately (:func:`option_tps`)."""
    d, k, j, size, cost, price = [], [], [], [], [], []
    for i in range(len(rnd.demands)):
        f = rnd.flat(i)
        d.append(np.full(len(f.k), i, dtype=np.int64))
        k.append(f.k)
        j.append(f.j)
        size.append(f.size)
        cost.append(f.cost * rnd.demands[i].duration_hours)
        price.append(f.price)
    if not d:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z, z, z
    return tuple(np.concatenate(col) for col in (d, k, j, size, cost, price))


def option_tps(rnd: Round, d: NDArray[np.int64], k: NDArray[np.int64]) -> NDArray[np.float64]:
    return np.array(
        [
            rnd.demands[i].alternatives[a].tokens_per_second_per_replica
            for i, a in zip(d.tolist(), k.tolist(), strict=True)
        ],
        dtype=float,
    )


@dataclass(frozen=True)
class Program:
    """The exact program of a round (module docstring): its options (:func:`options`) and their
    tokens/s per replica, then ``n`` replica counts x and ``m`` served tokens/s s as variables, with
    their bounds and rows (integrality and objective are the caller's)."""

    columns: tuple[NDArray[np.int64], ...]
    tps: NDArray[np.float64]
    n: int
    m: int
    bounds: Bounds
    rows: LinearConstraint


def program(rnd: Round) -> Program:
    """The exact program of ``rnd`` on its free capacity."""
    columns = options(rnd)
    d, k, j, size, _, price = columns
    n, m = len(d), len(rnd.demands)
    tps = option_tps(rnd, d, k)
    nvar = n + m  # x then s
    next_row = 0
    r_idx, c_idx, vals, lo, hi = [], [], [], [], []

    def add(cols: NDArray[np.int64], coef: NDArray[np.float64], low: float, high: float) -> None:
        nonlocal next_row
        r_idx.append(np.full(len(cols), next_row, dtype=np.int64))
        c_idx.append(cols)
        vals.append(coef)
        lo.append(low)
        hi.append(high)
        next_row += 1

    free = rnd.pool.free
    for jj in np.unique(j).tolist():
        on = np.flatnonzero(j == jj)
        for t in np.unique(size[on]).tolist():
            big = on[size[on] >= t]
            slots = sum(f // t for f in free[jj])
            add(big, size[big].astype(float), -np.inf, float(t * slots))
    order = np.argsort(d, kind="stable")
    starts = np.searchsorted(d[order], np.arange(m + 1))
    for i in range(m):
        mine = order[starts[i] : starts[i + 1]]
        # s_i − Σ tps x ≤ 0
        add(np.append(mine, n + i), np.append(-tps[mine], 1.0), -np.inf, 0.0)
        if len(mine):
            add(mine, price[mine].astype(float), -np.inf, float(rnd.budget[i] - rnd.spent[i]))
    ub_x = np.array([sum(f // s for f in free[jj]) for jj, s in zip(j.tolist(), size.tolist(), strict=True)], float)
    targets = np.array([dm.tokens_per_second for dm in rnd.demands], dtype=float)
    a = coo_matrix((np.concatenate(vals), (np.concatenate(r_idx), np.concatenate(c_idx))), shape=(next_row, nvar))
    return Program(
        columns, tps, n, m, Bounds(np.zeros(nvar), np.concatenate([ub_x, targets])),
        LinearConstraint(a.tocsr(), np.array(lo), np.array(hi)),
    )  # fmt: skip


def solve_milp(rnd: Round, time_limit: float = 30.0) -> tuple[dict[tuple[int, int, int], int], dict[str, float | str]]:
    """Replica counts per (demand, alternative, listing) of the optimum, and the run's bounds:
    ``tokens_upper_bound`` (the first level's optimum summed over levels) and ``cost_lower_bound``
    (HiGHS's dual bound at the served tokens fixed, units × hours; equal to the cost when proven)."""
    prog = program(rnd) if rnd.demands else None
    if prog is None or prog.n == 0:
        return {}, {"tokens_upper_bound": 0.0, "cost_lower_bound_units": 0.0, "status": "optimal"}
    d, k, j, _, cost, _ = prog.columns
    n, m, bounds = prog.n, prog.m, prog.bounds
    nvar = n + m
    integrality = np.concatenate([np.ones(n), np.zeros(m)])
    constraints = [prog.rows]
    priorities = np.array([dm.priority for dm in rnd.demands])
    levels: list[tuple[NDArray[np.float64], float]] = []  # (row of a level's served, its optimum)

    def run(c: NDArray[np.float64]) -> OptimizeResult:
        for slack, tokens in ((LEVEL_SLACK, LEVEL_SLACK_TOKENS), (RETRY_SLACK, RETRY_SLACK_TOKENS)):
            kept = [LinearConstraint(row, best * (1 - slack) - tokens, np.inf) for row, best in levels]
            res = milp(
                c,
                constraints=[*constraints, *kept],
                integrality=integrality,
                bounds=bounds,
                options={"time_limit": time_limit},
            )
            if res.x is not None or not levels:
                break
        if res.x is None:
            raise RuntimeError(f"HiGHS found no solution: {res.message}")
        return res

    served_total = 0.0
    for level in sorted(set(priorities.tolist()), reverse=True):
        c = np.zeros(nvar)
        c[n + np.flatnonzero(priorities == level)] = -1.0
        best = -float(run(c).fun)
        served_total += best
        row = np.zeros(nvar)
        row[n + np.flatnonzero(priorities == level)] = 1.0
        levels.append((row, best))
    res = run(np.concatenate([cost.astype(float), np.zeros(m)]))
    x = np.round(res.x[:n]).astype(np.int64)
    counts = {(int(d[o]), int(k[o]), int(j[o])): int(x[o]) for o in np.flatnonzero(x > 0)}
    dual = getattr(res, "mip_dual_bound", None)
    return counts, {
        "tokens_upper_bound": served_total,
        "cost_lower_bound_units": float(res.fun if dual is None else dual),
        "status": "optimal" if res.status == 0 else str(res.message),
    }
