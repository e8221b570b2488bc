"""The fast inference engine's covers (:func:`matching.substitution_engine.cover`), their inner
loops compiled (numba):

- :func:`cover_items`: the items a cover searches, for a demand whose alternatives all lie in the
  batch: each alternative's few cheapest listings with a node that fits a replica, read straight
  from the batch's bit matrix (:class:`matching.substitution_batch.Batch`) without unpacking the
  pair's candidates, their slots, the cheapest alternatives kept and their items sorted, in one
  call. One call per cover replaces a dozen numpy calls per alternative, whose cost per call, not
  per listing, was most of the engine's time.
- :func:`search`: the branch and bound over a cover's items (iterative: a recursive compiled
  function called from compiled code crashes once loaded from numba's cache).
- :func:`cover_plan`: both, and the fill order, in one call; :func:`plan_of` for items made in
  Python.
- :func:`cheapest_option`: a top-up's next replica, read from the bit matrix.
- :func:`sort_segments`: each demand's items sorted within the demand.
- :func:`best_fit`: a fill's replicas put on a listing's nodes
  (:func:`matching.packing.transport.best_fit`'s rule, on the pool's matrix).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray


@njit(cache=True, nogil=True)
def _before(key: float, cost: int, j: int, key2: float, cost2: int, j2: int) -> bool:
    return key < key2 or (key == key2 and (cost < cost2 or (cost == cost2 and j < j2)))


@njit(cache=True, nogil=True)
def _select(
    bits: NDArray[np.uint8],
    cols: NDArray[np.int64],
    n_cols: NDArray[np.int64],
    r: int,
    m: int,
    size: int,
    price: NDArray[np.int64],
    subsidy: NDArray[np.int64],
    max_free: NDArray[np.int64],
    hours: float,
    shadow: NDArray[np.float64],
    in_order: bool,
    perm: NDArray[np.int64],
    out_j: NDArray[np.int64],
    out_key: NDArray[np.float64],
    out_cost: NDArray[np.int64],
    base: int,
    k: int,
) -> int:
    """Of the listings j that pair ``r`` of ``bits`` allows (model number ``m`` into ``cols`` and
    ``n_cols``) with ``max_free[j]`` ≥ ``size``: the ``k`` least by (cost × ``hours`` +
    ``shadow[j]``, cost, j), cost being ``price[j]`` − ``subsidy[j]``, into ``out_*[base : base +
    k]``, least first; returns how many. That is the order of a stable sort, by the first, of the
    pair's candidates (which are by cost, then listing). The columns are visited in ``perm[m]``'s
    order; ``in_order``: that is the order above (no subsidy), so the scan stops at the k-th."""
    have = 0
    for at in range(n_cols[m]):
        col = perm[m, at]
        if (bits[r, col >> 3] >> (7 - (col & 7))) & 1 == 0:
            continue
        j = cols[m, col]
        if max_free[j] < size:
            continue
        cost = price[j] - subsidy[j]
        key = float(cost) * hours + shadow[j]
        if have == k:
            if not _before(key, cost, j, out_key[base + k - 1], out_cost[base + k - 1], out_j[base + k - 1]):
                continue
            at = base + k - 1
        else:
            at = base + have
            have += 1
        while at > base and _before(key, cost, j, out_key[at - 1], out_cost[at - 1], out_j[at - 1]):
            out_key[at], out_cost[at], out_j[at] = out_key[at - 1], out_cost[at - 1], out_j[at - 1]
            at -= 1
        out_key[at], out_cost[at], out_j[at] = key, cost, j
        if in_order and have == k:
            break
    return have


@njit(cache=True, nogil=True)
def cover_items(
    bits: NDArray[np.uint8],
    cols: NDArray[np.int64],
    n_cols: NDArray[np.int64],
    ranked: NDArray[np.float64],
    pairs: NDArray[np.int64],
    price: NDArray[np.int64],
    subsidy: NDArray[np.int64],
    max_free: NDArray[np.int64],
    free: NDArray[np.int64],
    hours: float,
    shadow: NDArray[np.float64],
    in_order: bool,
    perm: NDArray[np.int64],
    k: int,
    wanted: int,
    missing: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The items a cover searches (:func:`matching.substitution_engine.cover`), for a demand whose
    alternatives all lie in the batch. ``ranked``: per alternative with a listing, cheapest first,
    (cost per token/s at its cheapest listing before the round, tokens/s per replica); ``pairs``:
    its (row, model number, GPUs, alternative). ``free``: free GPUs per node of each listing (0
    past its nodes).

    Alternatives are taken in order, each with its :func:`_select` listings (those up to
    the one whose slots carry ``missing`` tokens/s, at most ``k``), until ``wanted`` are found and
    the next cannot beat the ``wanted``-th (cost per token/s at its first listing, then alternative).
    Returns the ``wanted`` cheapest's items, by (cost per token/s, cost, alternative, listing):
    (alternative, listing, slots, GPUs, price × GPUs) as ints, (cost × GPUs, tokens/s) as floats."""
    n = len(pairs)
    sel_j, sel_key, sel_cost = np.zeros(k, dtype=np.int64), np.empty(k), np.empty(k, dtype=np.int64)
    f_ratio, f_alt = np.empty(n), np.empty(n, dtype=np.int64)
    f_start, f_len = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    ints, floats = np.empty((n * k, 5), dtype=np.int64), np.empty((n * k, 2))
    found = used = 0
    for p in range(n):
        if found >= wanted and ranked[p, 0] >= f_ratio[wanted - 1]:
            break
        size, alt, tps = pairs[p, 2], pairs[p, 3], ranked[p, 1]
        have = _select(
            bits, cols, n_cols, pairs[p, 0], pairs[p, 1], size, price, subsidy, max_free, hours, shadow, in_order,
            perm, sel_j, sel_key, sel_cost, 0, k,
        )  # fmt: skip
        if have == 0:
            continue
        start, carried = used, 0.0
        for q in range(have):
            j = sel_j[q]
            slots = 0
            for node in range(free.shape[1]):
                slots += free[j, node] // size
            ints[used, 0], ints[used, 1], ints[used, 2], ints[used, 3] = alt, j, slots, size
            ints[used, 4] = price[j] * size
            floats[used, 0], floats[used, 1] = sel_key[q] * size, tps
            used += 1
            carried += slots * tps
            if carried >= missing:
                break
        ratio = floats[start, 0] / tps / hours
        at = found
        while at > 0 and (ratio < f_ratio[at - 1] or (ratio == f_ratio[at - 1] and alt < f_alt[at - 1])):
            f_ratio[at], f_alt[at] = f_ratio[at - 1], f_alt[at - 1]
            f_start[at], f_len[at] = f_start[at - 1], f_len[at - 1]
            at -= 1
        f_ratio[at], f_alt[at], f_start[at], f_len[at] = ratio, alt, start, used - start
        found += 1
    total = 0
    for f in range(min(found, wanted)):
        total += f_len[f]
    order = np.empty(total, dtype=np.int64)
    at = 0
    for f in range(min(found, wanted)):
        for q in range(f_len[f]):
            order[at] = f_start[f] + q
            at += 1
    for a in range(1, total):  # insertion sort by (cost per token/s, cost, alternative, listing)
        item, b = order[a], a
        while b > 0 and _item_before(ints, floats, item, order[b - 1]):
            order[b] = order[b - 1]
            b -= 1
        order[b] = item
    return ints[order], floats[order]


@njit(cache=True, nogil=True)
def _item_before(ints: NDArray[np.int64], floats: NDArray[np.float64], a: int, b: int) -> bool:
    ra: float = floats[a, 0] / floats[a, 1]
    rb: float = floats[b, 0] / floats[b, 1]
    ca: float = floats[a, 0]
    cb: float = floats[b, 0]
    ka: int = ints[a, 0]
    kb: int = ints[b, 0]
    ja: int = ints[a, 1]
    jb: int = ints[b, 1]
    return ra < rb or (ra == rb and (ca < cb or (ca == cb and (ka < kb or (ka == kb and ja < jb)))))


def search(
    cost: NDArray[np.float64],
    tps: NDArray[np.float64],
    slots: NDArray[np.int64],
    price: NDArray[np.int64],
    target: float,
    budget: int,
    nodes: int,
) -> NDArray[np.int64]:
    """Replica counts per item: most tokens/s up to ``target``, then least cost, within ``budget``
    (price units per hour: Σ counts × ``price`` ≤ it) and each item's ``slots``; at most ``nodes``
    nodes of the search, then the best found. Items (``cost``, ``tps`` per replica) are sorted by
    cost per token/s, so the rest of a cover costs at least (missing tokens/s) × the next item's
    ratio (the bound). Depth first, most replicas of each item first (:func:`_search`)."""
    best = np.zeros(len(cost), dtype=np.int64)
    _search(cost, tps, slots, price, target, budget, nodes, best)
    return best


@njit(cache=True, nogil=True)
def _search(
    cost: NDArray[np.float64],
    tps: NDArray[np.float64],
    slots: NDArray[np.int64],
    price: NDArray[np.int64],
    target: float,
    budget: int,
    nodes: int,
    best: NDArray[np.int64],
) -> None:
    """:func:`search` into ``best``: the depth-first search with an explicit stack (a recursive
    compiled function cannot be called from compiled code loaded from numba's cache: it crashes).
    A node is a depth (an item) and the counts chosen above it; visiting it may record its counts
    as the best, and stops there when it has the target, is past the last item, has used up
    ``nodes``, or cannot beat the best; else its children take the item's counts, most first."""
    n = len(cost)
    if n == 0:
        return
    counts = np.zeros(n, dtype=np.int64)
    nxt = np.zeros(n, dtype=np.int64)  # per depth, the count its next child takes
    placed, spent, left = np.zeros(n + 1), np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
    left[0] = budget
    best_served, best_neg_cost, visited = -1.0, 0.0, 0
    depth, entering = 0, True
    while True:
        if entering:
            visited += 1
            served = min(placed[depth], target)
            if served > best_served or (served == best_served and -spent[depth] > best_neg_cost):
                best_served, best_neg_cost = served, -spent[depth]
                best[:] = counts
            stop = placed[depth] >= target or depth == n or visited > nodes
            if not stop and best_served >= target:
                stop = spent[depth] + (target - placed[depth]) * (cost[depth] / tps[depth]) >= -best_neg_cost
            if stop:
                if depth == 0:
                    return
                depth -= 1
                entering = False
                continue
            most = min(slots[depth], max(0, math.ceil((target - placed[depth]) / tps[depth] - 1e-9)))
            if price[depth] > 0:
                most = min(most, left[depth] // price[depth])
            nxt[depth] = most
        else:
            nxt[depth] -= 1
        if nxt[depth] < 0:  # every count of this item tried: back to the item above
            counts[depth] = 0
            if depth == 0:
                return
            depth -= 1
            continue
        c = nxt[depth]
        counts[depth] = c
        placed[depth + 1] = placed[depth] + c * tps[depth]
        spent[depth + 1] = spent[depth] + c * cost[depth]
        left[depth + 1] = left[depth] - c * price[depth]
        depth += 1
        entering = True


@njit(cache=True, nogil=True)
def cover_plan(
    bits: NDArray[np.uint8],
    cols: NDArray[np.int64],
    n_cols: NDArray[np.int64],
    ranked: NDArray[np.float64],
    pairs: NDArray[np.int64],
    price: NDArray[np.int64],
    subsidy: NDArray[np.int64],
    max_free: NDArray[np.int64],
    free: NDArray[np.int64],
    hours: float,
    shadow: NDArray[np.float64],
    in_order: bool,
    perm: NDArray[np.int64],
    k: int,
    wanted: int,
    missing: float,
    budget: int,
    nodes: int,
) -> NDArray[np.int64]:
    """A cover in one call: :func:`cover_items` (its arguments up to ``missing``), their
    :func:`search` within ``budget`` and ``nodes``, and the items chosen as (alternative, listing,
    replicas), biggest replicas first (then in the items' order): what the cover fills."""
    ints, floats = cover_items(
        bits, cols, n_cols, ranked, pairs, price, subsidy, max_free, free, hours, shadow, in_order, perm, k, wanted,
        missing,
    )  # fmt: skip
    return plan_of(ints, floats, missing, budget, nodes)


@njit(cache=True, nogil=True)
def plan_of(
    ints: NDArray[np.int64], floats: NDArray[np.float64], missing: float, budget: int, nodes: int
) -> NDArray[np.int64]:
    """The cover of items (as :func:`cover_items` returns them) that :func:`search` finds, as
    (alternative, listing, replicas) of the items chosen, biggest replicas first (then in order)."""
    best = np.zeros(len(ints), dtype=np.int64)
    _search(
        floats[:, 0].copy(), floats[:, 1].copy(), ints[:, 2].copy(), ints[:, 4].copy(), missing, budget, nodes, best
    )
    chosen = np.flatnonzero(best)
    chosen = chosen[np.argsort(-ints[chosen, 3], kind="mergesort")]
    out = np.empty((len(chosen), 3), dtype=np.int64)
    for q in range(len(chosen)):
        out[q, 0], out[q, 1], out[q, 2] = ints[chosen[q], 0], ints[chosen[q], 1], best[chosen[q]]
    return out


@njit(cache=True, nogil=True)
def cheapest_option(
    bits: NDArray[np.uint8],
    cols: NDArray[np.int64],
    n_cols: NDArray[np.int64],
    ranked: NDArray[np.float64],
    pairs: NDArray[np.int64],
    price: NDArray[np.int64],
    subsidy: NDArray[np.int64],
    max_free: NDArray[np.int64],
    left: int,
    missing: float,
) -> tuple[int, int]:
    """Of a demand's options (``ranked`` and ``pairs`` as :func:`cover_items` takes them) with a
    node that fits a replica and a replica's price × GPUs within ``left``: the (alternative,
    listing) least by (cost × GPUs ÷ min(tokens/s, ``missing``), cost × GPUs, alternative,
    listing), cost being price − subsidy; (-1, -1) when there is none."""
    best_k, best_j, best_score, best_cost = -1, -1, np.inf, 0
    for p in range(len(pairs)):
        r, m, size, alt = pairs[p, 0], pairs[p, 1], pairs[p, 2], pairs[p, 3]
        tps = ranked[p, 1]
        for col in range(n_cols[m]):
            if (bits[r, col >> 3] >> (7 - (col & 7))) & 1 == 0:
                continue
            j = cols[m, col]
            if max_free[j] < size or price[j] * size > left:
                continue
            cost = (price[j] - subsidy[j]) * size
            score = cost / min(tps, missing)
            if best_k < 0 or (score, cost, alt, j) < (best_score, best_cost, best_k, best_j):
                best_k, best_j, best_score, best_cost = alt, j, score, cost
    return best_k, best_j


@njit(cache=True, nogil=True)
def sort_segments(at: NDArray[np.int64], key: NDArray[np.float64], then: NDArray[np.float64]) -> NDArray[np.int64]:
    """The permutation that sorts each segment (``at[s]`` to ``at[s + 1]``) by (``key``, ``then``),
    stably (ties in place): an insertion sort, as a demand has a few dozen items (one sort of all
    the round's items by demand first took longer)."""
    order = np.arange(len(key))
    for s in range(len(at) - 1):
        for q in range(at[s] + 1, at[s + 1]):
            item, b = order[q], q
            while b > at[s] and (
                key[item] < key[order[b - 1]] or (key[item] == key[order[b - 1]] and then[item] < then[order[b - 1]])
            ):
                order[b] = order[b - 1]
                b -= 1
            order[b] = item
    return order


@njit(cache=True, nogil=True)
def best_fit(nodes: NDArray[np.int64], max_free: NDArray[np.int64], j: int, size: int, count: int) -> NDArray[np.int64]:
    """:func:`matching.packing.transport.best_fit` on row ``j`` of ``nodes`` (free GPUs per node of
    each listing, 0 past its nodes, which no replica fits), updated in place with ``max_free[j]``:
    up to ``count`` replicas of ``size`` GPUs (≥ 1), each on the fullest node that still fits it
    (then the first), so whole nodes stay whole for larger replicas. Returns the node of each
    replica placed: fewer than ``count`` when out of room."""
    row = nodes[j]
    out = np.empty(count, dtype=np.int64)
    placed = 0
    while placed < count:
        best = -1
        for k in range(len(row)):
            if row[k] >= size and (best < 0 or row[k] < row[best]):
                best = k
        if best < 0:
            break
        take = min(count - placed, row[best] // size)
        for _ in range(take):
            out[placed] = best
            placed += 1
        row[best] -= take * size
    most = 0
    for k in range(len(row)):
        most = max(most, row[k])
    max_free[j] = most
    return out[:placed]


def warm_up() -> None:
    """Compile (or load from numba's cache) this module's functions, so that the first inference
    round of a process does not pay for it (~6 s to compile)."""
    one = np.zeros(1, dtype=np.int64)
    bits, cols = np.zeros((1, 1), dtype=np.uint8), one.reshape(1, 1)
    search(np.ones(1), np.ones(1), np.ones(1, dtype=np.int64), one, 1.0, 1, 1)
    ranked, pairs = np.ones((1, 2)), np.zeros((1, 4), dtype=np.int64)
    perm = np.zeros((1, 1), dtype=np.int64)
    cover_items(bits, cols, one, ranked, pairs, one, one, one, cols, 1.0, np.zeros(1), True, perm, 1, 1, 1.0)
    cover_plan(bits, cols, one, ranked, pairs, one, one, one, cols, 1.0, np.zeros(1), True, perm, 1, 1, 1.0, 1, 1)
    plan_of(np.zeros((1, 5), dtype=np.int64), np.ones((1, 2)), 1.0, 1, 1)
    cheapest_option(bits, cols, one, ranked, pairs, one, one, one, 1, 1.0)
    sort_segments(np.array([0, 1]), np.ones(1), np.ones(1))
    best_fit(cols.copy(), one.copy(), 0, 1, 1)
