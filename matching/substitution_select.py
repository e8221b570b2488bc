"""The fast inference engine's covers (:func:`matching.substitution_engine.cover`), their inner
loops compiled (numba):

- :func:`cheapest_with_room`: for each (demand, alternative) pair of a block, its few cheapest
  listings with a node that fits a replica, read straight from the batch's bit matrix
  (:class:`matching.substitution_batch.Batch`) without unpacking the pair's candidates. One call
  per block replaces a dozen numpy calls per pair, whose cost per call, not per listing, was most of
  the engine's time.
- :func:`search`: the branch and bound over a cover's items.
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
def cheapest_with_room(
    bits: NDArray[np.uint8],
    cols: NDArray[np.int64],
    n_cols: NDArray[np.int64],
    rows: NDArray[np.int64],
    models: NDArray[np.int64],
    sizes: NDArray[np.int64],
    price: NDArray[np.int64],
    subsidy: NDArray[np.int64],
    max_free: NDArray[np.int64],
    hours: float,
    shadow: NDArray[np.float64],
    in_order: bool,
    k: int,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """For pair p (its row ``rows[p]`` of ``bits``, its model's number ``models[p]`` into ``cols`` and
    ``n_cols``, replicas of ``sizes[p]`` GPUs): of the listings j its row allows with ``max_free[j]``
    ≥ the size, the ``k`` least by (cost × ``hours`` + ``shadow[j]``, cost, j), cost being
    ``price[j]`` − ``subsidy[j]``. That is the order of a stable sort, by the first, of the pair's
    candidates (which are by cost, then listing).

    ``in_order``: the columns already come in that order (no shadow price, no subsidy), so the scan
    stops at the k-th. Returns (listings, their first key, counts): pair p's are at [p·k, p·k +
    counts[p]), least first."""
    n = len(rows)
    out_j = np.zeros(n * k, dtype=np.int64)  # (zeros: every entry is a valid listing index)
    out_key = np.empty(n * k, dtype=np.float64)
    out_cost = np.empty(n * k, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    for p in range(n):
        r, m, size, base, have = rows[p], models[p], sizes[p], p * k, 0
        for col in range(n_cols[m]):
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
        counts[p] = have
    return out_j, out_key, counts


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
    ratio (the bound). Depth first, most replicas of each item first."""
    n = len(cost)
    best, counts = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    state = np.array([-1.0, 0.0, 0.0])  # best (served, −cost) so far, nodes visited
    if n:
        _visit(0, 0.0, 0.0, budget, cost, tps, slots, price, cost / tps, target, nodes, counts, best, state)
    return best


@njit(cache=True, nogil=True)
def _visit(
    idx: int,
    placed: float,
    spent: float,
    left: int,
    cost: NDArray[np.float64],
    tps: NDArray[np.float64],
    slots: NDArray[np.int64],
    price: NDArray[np.int64],
    ratio: NDArray[np.float64],
    target: float,
    nodes: int,
    counts: NDArray[np.int64],
    best: NDArray[np.int64],
    state: NDArray[np.float64],
) -> None:
    state[2] += 1
    served = min(placed, target)
    if served > state[0] or (served == state[0] and -spent > state[1]):
        state[0], state[1] = served, -spent
        best[:] = counts
    if placed >= target or idx == len(cost) or state[2] > nodes:
        return
    if state[0] >= target and spent + (target - placed) * ratio[idx] >= -state[1]:
        return
    most = min(slots[idx], max(0, math.ceil((target - placed) / tps[idx] - 1e-9)))
    if price[idx] > 0:
        most = min(most, left // price[idx])
    for count in range(most, -1, -1):
        counts[idx] = count
        _visit(
            idx + 1,
            placed + count * tps[idx],
            spent + count * cost[idx],
            left - count * price[idx],
            cost,
            tps,
            slots,
            price,
            ratio,
            target,
            nodes,
            counts,
            best,
            state,
        )
    counts[idx] = 0


def warm_up() -> None:
    """Compile (or load from numba's cache) this module's functions, so that the first inference
    round of a process does not pay for it (~2 s to compile)."""
    one = np.zeros(1, dtype=np.int64)
    bits, cols = np.zeros((1, 1), dtype=np.uint8), one.reshape(1, 1)
    cheapest_with_room(bits, cols, one, one, one, one, one, one, one, 1.0, np.zeros(1), True, 1)
    search(np.ones(1), np.ones(1), np.ones(1, dtype=np.int64), one, 1.0, 1, 1)
