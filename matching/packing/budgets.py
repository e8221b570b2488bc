"""Voucher budgets that bind: re-plan without their subsidy, and a lower bound that counts them.

The flow prices every voucher at its full subsidy; :func:`matching.assemble.cap_vouchers` then cuts
what a code's ``remaining_value`` cannot pay. When a budget binds, the full-subsidy bound is loose
and the plan may lean on subsidy that is never paid. For any set B of codes and any plan P::

    capped cost(P) ≥ cost(P, no subsidy for B, full for the rest) − Σ_{v∈B} remaining_v

(each code in B pays at most its remaining value; subsidies outside B are at most full). So the
minimum of the middle term at the plan's served GPUs, minus Σ remaining_v, is a valid lower bound;
and when every code of B still binds in the re-planned P (and no other code does), P attains it:
the plan is then proven optimal (gap 0). :func:`matching.solver.solve` re-plans once with B = the
codes that bound in the first plan and keeps the better plan and the best valid bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal

import numpy as np

from matching import costs
from matching.graph.components import Component
from matching.graph.edges import Arrays
from matching.problem import Assignment, Problem


def without_subsidy(problem: Problem, arrays: Arrays, codes: frozenset[str]) -> Arrays:
    """``arrays`` with the requests holding one of ``codes`` priced as if they had no voucher."""
    hit = np.array([r.voucher is not None and r.voucher.code in codes for r in problem.requests], dtype=bool)
    return replace(arrays, request_voucher=np.where(hit, 0, arrays.request_voucher))


def touched(problem: Problem, components: list[Component], codes: frozenset[str]) -> set[int]:
    """Indices of the components holding a request with one of ``codes``."""
    return {
        k
        for k, component in enumerate(components)
        if any((v := problem.requests[int(i)].voucher) is not None and v.code in codes for i in component.requests)
    }


def remaining_units(problem: Problem, codes: frozenset[str]) -> int:
    """Σ remaining value of ``codes`` in 0.0001 CNY (per code, the least any of its requests states,
    as :func:`matching.assemble.cap_vouchers` uses)."""
    left: dict[str, Decimal] = {}
    for r in problem.requests:
        if r.voucher is not None and r.voucher.code in codes:
            v = r.voucher
            left[v.code] = min(left.get(v.code, v.remaining_value), v.remaining_value)
    return sum(costs.money_units(max(value, Decimal(0))) for value in left.values())


def served_by_level(problem: Problem, assignments: Iterable[Assignment]) -> tuple[int, ...]:
    """GPUs served per priority level, highest first (levels of the whole problem)."""
    levels = sorted({r.priority for r in problem.requests}, reverse=True)
    prio = {r.id: r.priority for r in problem.requests}
    gpus = dict.fromkeys(levels, 0)
    for a in assignments:
        gpus[prio[a.request_id]] += a.gpus
    return tuple(gpus[q] for q in levels)
