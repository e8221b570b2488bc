"""Whole-replica plans from the GPU-unit relaxation of a mixed-size component (see :mod:`matching.solver`).

**Class dive** (:func:`class_dive`, tried first). The relaxation (:func:`matching.packing.transport.relax`)
is loose only in that a request's GPUs on a listing need not be whole replicas; once each
listing's capacity is split between the size classes in whole replicas, every class is an exact
transportation problem. So, size class by size class, largest first:

1. solve the relaxation for the classes not yet placed, on the capacity left;
2. round the GPUs it gives the current class on each listing to whole replicas (down, then up on
   the listings with the largest remainders until the class's total is rounded to nearest);
3. place the class exactly (lexicographic transportation) within those per-listing caps.

The smallest class takes whatever is left, exactly; then step 2 below refills what is left.
Measured (bench instances, seed 7, full subsidies): gap to the relaxation bound 0.03 % at
10k × 2k (1.63 % with the rounding below) and 0.05 % at 2k × 400 (1.20 %), where HiGHS proves the
integer optimum of each component within 0.01 % of the bound: the bound is tight, the loss was the
rounding.

**Rounding** (:func:`round_and_refill`, the fallback when the dive does not serve as many GPUs
per priority level as the relaxation):

1. Place the relaxation's whole replicas per (request, listing) (this always fits, see
   :mod:`matching.packing.transport`), and round up a fractional replica where the relaxation gave it at least
   :data:`ROUND_UP` of its GPUs and it still fits; re-solve the relaxation on what is left and
   repeat, :data:`DIVES` times in all.
2. Refill what is left with exact transportation stages, priority level by level (highest first),
   and within a level size class by size class (largest first), on the capacity left.
3. Improve by coordinate descent over size classes: take one class's replicas out and re-solve that
   class's transportation problem exactly on what the other classes leave. Each step keeps or
   improves (served GPUs per priority level, then cost), because the old placement of the class is
   feasible for the new problem and the new one is its lexicographic optimum; the loop stops when a
   full pass changes nothing or after :data:`PASSES` passes.

Heuristic overall (the problem is NP-hard); the solver records the gap to the relaxation's bound.
"""

from __future__ import annotations

import numpy as np

from matching.graph.components import Component
from matching.graph.edges import Arrays
from matching.packing.transport import NodePool, levels_of, relax, transport

Pair = tuple[int, int]  # (request index, listing index)

#: At most this many improvement passes over the size classes.
PASSES = 3
#: Relaxation re-solves on the residual ("dives"), the first one included.
DIVES = 3
#: Round a fractional replica up when the relaxation gave it at least this share of its GPUs.
ROUND_UP = 0.8


def place(arrays: Arrays, counts: dict[Pair, int], pool: NodePool) -> dict[Pair, list[int]]:
    """Put counted replicas on nodes, listing by listing, largest replicas first.

    Largest-first any-fit is exact for divisible sizes (see :mod:`matching.packing.transport`), so every
    count the flow proposed fits; with other sizes what does not fit is dropped (never overbooked).
    """
    order = sorted(counts, key=lambda e: (e[1], -int(arrays.request_size[e[0]]), e[0]))
    placements = {}
    for e in order:
        nodes = pool.place(e[1], int(arrays.request_size[e[0]]), counts[e])
        if nodes:
            placements[e] = nodes
    return placements


def round_and_refill(
    arrays: Arrays, component: Component, pool: NodePool, gpus: dict[Pair, int]
) -> dict[Pair, list[int]]:
    """Rounding steps 1–3 of the module docstring; consumes ``pool``."""
    placements: dict[Pair, list[int]] = {}
    left = {int(i): int(arrays.request_replicas[i]) for i in component.requests}
    for it in range(DIVES):
        if it:
            reqs = np.array(sorted(i for i, n in left.items() if n > 0), dtype=np.int64)
            if not len(reqs):
                break
            replicas = np.array([left[int(i)] for i in reqs], dtype=np.int64)
            gpus = relax(arrays, reqs, component.listings, pool.free, replicas=replicas).gpus
        if not _fix(arrays, pool, gpus, left, placements):
            break
    sizes = sorted({int(s) for s in arrays.request_size[component.requests]}, reverse=True)
    _refill(arrays, component, pool, sizes, left, placements)
    improve(arrays, component, pool, placements, sizes)
    return placements


def class_dive(
    arrays: Arrays, component: Component, pool: NodePool, relaxed: dict[Pair, int] | None = None
) -> dict[Pair, list[int]]:
    """The class dive of the module docstring, then the refill stages; consumes ``pool``.

    ``relaxed``: the relaxation's GPU flow for the whole component on ``pool`` as it is, if the caller
    has it (saves solving it again for the largest class). No improvement passes: measured, they
    never changed a dive's plan (10k × 2k, 2k × 400).
    """
    placements: dict[Pair, list[int]] = {}
    left = {int(i): int(arrays.request_replicas[i]) for i in component.requests}
    sizes = sorted({int(s) for s in arrays.request_size[component.requests]}, reverse=True)
    for size in sizes:
        mine = {i: n for i, n in left.items() if n > 0 and arrays.request_size[i] == size}
        if not mine:
            continue
        caps = None
        if size != sizes[-1]:
            if relaxed is not None and not placements:  # nothing placed yet: ``relaxed`` still holds
                flow = relaxed
            else:
                flow = _relax_left(arrays, component, pool, left, size)
            caps = _class_caps(arrays, flow, size)
        counts, _ = transport(arrays, mine, component.listings, pool, size, caps)
        _put(arrays, pool, counts, left, placements)
    _refill(arrays, component, pool, sizes, left, placements)
    return placements


def _relax_left(
    arrays: Arrays, component: Component, pool: NodePool, left: dict[int, int], size: int
) -> dict[Pair, int]:
    """The relaxation's GPU flow for the replicas left of classes ≤ ``size``, on ``pool``."""
    reqs = np.array(sorted(i for i, n in left.items() if n > 0 and arrays.request_size[i] <= size), dtype=np.int64)
    replicas = np.array([left[int(i)] for i in reqs], dtype=np.int64)
    return relax(arrays, reqs, component.listings, pool.free, replicas=replicas).gpus


def _class_caps(arrays: Arrays, flow: dict[Pair, int], size: int) -> dict[int, int]:
    """Replicas of ``size`` per listing: the GPUs ``flow`` gives the class there, rounded to whole
    replicas (down, then up where the remainder is largest) with the class total rounded to nearest."""
    gpus: dict[int, int] = {}
    for (i, j), g in flow.items():
        if arrays.request_size[i] == size:
            gpus[j] = gpus.get(j, 0) + g
    caps = {j: g // size for j, g in gpus.items()}
    extra = (sum(gpus.values()) + size // 2) // size - sum(caps.values())
    remainders = sorted((-(g % size), j) for j, g in gpus.items() if g % size)  # largest first
    for _, j in remainders[: max(extra, 0)]:
        caps[j] += 1
    return caps


def _put(
    arrays: Arrays, pool: NodePool, counts: dict[Pair, int], left: dict[int, int], placements: dict[Pair, list[int]]
) -> None:
    """Place counted replicas on ``pool`` and book them in ``placements`` and ``left``."""
    for e, nodes in place(arrays, counts, pool).items():
        placements.setdefault(e, []).extend(nodes)
        left[e[0]] -= len(nodes)


def _refill(
    arrays: Arrays,
    component: Component,
    pool: NodePool,
    sizes: list[int],
    left: dict[int, int],
    placements: dict[Pair, list[int]],
) -> None:
    """Exact transportation stages on what is left: level by level, size class by size class."""
    level, _ = levels_of(arrays.request_priority[component.requests])
    for q in range(int(level.max(initial=-1)) + 1):
        members = {int(i) for i in component.requests[level == q]}
        for size in sizes:
            _stage(arrays, component, pool, size, {i: n for i, n in left.items() if i in members}, left, placements)


def _fix(
    arrays: Arrays, pool: NodePool, gpus: dict[Pair, int], left: dict[int, int], placements: dict[Pair, list[int]]
) -> bool:
    """Place the relaxation's whole replicas, then round up its largest fractions where they fit."""
    counts = {e: g // int(arrays.request_size[e[0]]) for e, g in gpus.items()}
    placed = 0
    for e, nodes in place(arrays, {e: c for e, c in counts.items() if c}, pool).items():
        placements.setdefault(e, []).extend(nodes)
        left[e[0]] -= len(nodes)
        placed += len(nodes)
    size_of = {e: int(arrays.request_size[e[0]]) for e in gpus}
    fractions = sorted(((g % size_of[e]) / size_of[e], e) for e, g in gpus.items())
    for frac, e in reversed(fractions):
        if frac < ROUND_UP or not left[e[0]]:
            continue
        nodes = pool.place(e[1], int(arrays.request_size[e[0]]), 1)
        if nodes:
            placements.setdefault(e, []).extend(nodes)
            left[e[0]] -= 1
            placed += 1
    return placed > 0


def _stage(
    arrays: Arrays,
    component: Component,
    pool: NodePool,
    size: int,
    wanted: dict[int, int],
    left: dict[int, int],
    placements: dict[Pair, list[int]],
) -> None:
    """One exact transportation stage for the size-``size`` requests of ``wanted`` with replicas left."""
    demand = {i: n for i, n in wanted.items() if n > 0 and arrays.request_size[i] == size}
    if not demand:
        return
    counts, _ = transport(arrays, demand, component.listings, pool, size)
    _put(arrays, pool, counts, left, placements)


def improve(
    arrays: Arrays, component: Component, pool: NodePool, placements: dict[Pair, list[int]], sizes: list[int]
) -> None:
    """Step 3: re-solve one size class at a time, exactly, against the others' placements."""
    if len(sizes) < 2:
        return
    for _ in range(PASSES):
        changed = False
        for size in sizes:
            changed |= _resolve_class(arrays, component, pool, placements, size)
        if not changed:
            return


def _resolve_class(
    arrays: Arrays, component: Component, pool: NodePool, placements: dict[Pair, list[int]], size: int
) -> bool:
    mine = [e for e in placements if arrays.request_size[e[0]] == size]
    before = {e: len(placements[e]) for e in mine}
    for e in mine:
        free = pool.free[e[1]]
        for k in placements.pop(e):
            free[k] += size
    reqs = component.requests[arrays.request_size[component.requests] == size]
    demand = {int(i): int(arrays.request_replicas[i]) for i in reqs}
    counts, _ = transport(arrays, demand, component.listings, pool, size)
    placements.update(place(arrays, counts, pool))
    after = {e: len(n) for e, n in placements.items() if arrays.request_size[e[0]] == size}
    return after != before
