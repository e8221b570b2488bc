"""The rules of :mod:`matching.substitution_index` over every pair of one GPU model and its listings,
in one compiled (numba) pass: what :class:`matching.substitution_batch.Batch` keeps of each pair.

One pass per cell, no temporaries: the rules applied with numpy made a dozen (pairs × listings)
arrays per chunk, and at 10k demands × 2k listings that was most of the round's set-up time.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

from matching.substitution_index import BUDGET, NODE_FREE, NODE_SIZE, OPEN, PRICE, RELIABILITY, TOO_FAR, WINDOW

NO_PRICE = np.iinfo(np.int32).max
NONE = np.iinfo(np.int64).max


@njit(cache=True, nogil=True)
def rules_matrix(
    bits: NDArray[np.uint8],
    size: NDArray[np.int64],
    bound: NDArray[np.float64],
    cap: NDArray[np.int64],
    origin: NDArray[np.int64],
    need_rel: NDArray[np.int64],
    start_by: NDArray[np.int64],
    hours: NDArray[np.int64],
    budget: NDArray[np.int64],
    rtt: NDArray[np.float64],
    price: NDArray[np.int64],
    gpn: NDArray[np.int64],
    region: NDArray[np.int64],
    rel: NDArray[np.int64],
    start: NDArray[np.int64],
    until: NDArray[np.int64],
    room: NDArray[np.int64],
    col_class: NDArray[np.int64],
    n_classes: int,
) -> tuple[
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.int32],
    NDArray[np.int64],
    NDArray[np.int64],
]:
    """Pairs (``size`` … ``budget``, one entry each; ``origin`` a row of ``rtt``) against columns
    (listings by price: ``price`` … ``room``, one entry each; ``region`` a column of ``rtt``),
    each rule checked in :data:`matching.substitution_index.STAGES`' order. Writes into ``bits``
    (a row per pair, zeros, at least (columns + 7) ÷ 8 wide) the columns passing every rule,
    bit-packed as :func:`numpy.packbits` packs; returns per pair:

    - ``stage``: ``OPEN`` if some column passes them all, else the first rule that left none;
    - ``count``: how many pass; ``first``: the first that does (0 when none);
    - ``class_min``: per class of ``col_class``, the least ``price`` (capped at ``NO_PRICE`` − 1)
      of those passing (``NO_PRICE``: none);
    - ``nearest``: for a pair stopped by the RTT rule, the column of least RTT among those with a
      node big enough (-1: none finite); for the others, not meaningful (the scan stops at the
      first column priced past the cap or the budget: every later one is too);
    - ``cheapest``: for a pair stopped by the price rule, the least price within the RTT bound; for
      one stopped by the budget, the least price that passed the node-free rule (else ``NONE``).
    """
    n, m = len(size), len(price)
    stage = np.empty(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    first = np.zeros(n, dtype=np.int64)
    class_min = np.full((n, n_classes), NO_PRICE, dtype=np.int32)
    nearest = np.full(n, -1, dtype=np.int64)
    cheapest = np.full(n, NONE, dtype=np.int64)
    rtt_col = np.empty((rtt.shape[0], m))  # RTT from each origin to each column, contiguous
    for o in range(rtt.shape[0]):
        for j in range(m):
            rtt_col[o, j] = rtt[o, region[j]]
    span = until - start  # how long each column's window lasts from its start
    row_min = np.empty(n_classes, dtype=np.int64)
    for r in range(n):
        # The furthest rule any column got to (its failing rule's number; OPEN: passed them all):
        # the pair's stage, since rule k leaves none exactly when every column failed before it.
        # (The pair's figures are read into locals: the loop writes arrays, so the compiler would
        # read them again on every column.)
        far = NODE_SIZE
        near_price, free_price, best_rtt, near_at = NONE, NONE, np.inf, -1
        s, o, b, c_cap, c_rel = size[r], origin[r], bound[r], cap[r], need_rel[r]
        c_by, c_hours, c_budget = start_by[r], hours[r], budget[r]
        n_ok, first_ok, byte, byte_at = 0, 0, 0, 0
        row_min[:] = NONE
        for j in range(m):
            if j >> 3 != byte_at:  # the byte of columns before j is complete
                bits[r, byte_at] = byte
                byte, byte_at = 0, j >> 3
            if gpn[j] < s:
                continue
            t = rtt_col[o, j]
            if t < best_rtt:
                best_rtt, near_at = t, j
            if not t <= b:
                far = max(far, TOO_FAR)
                continue
            p = price[j]
            near_price = min(near_price, p)
            if p > c_cap:  # (and so is every column after: they are by price)
                far = max(far, PRICE)
                break
            if rel[j] < c_rel:
                far = max(far, RELIABILITY)
            elif start[j] > c_by or c_hours > span[j]:
                far = max(far, WINDOW)
            elif room[j] < s:
                far = max(far, NODE_FREE)
            else:
                free_price = min(free_price, p)
                if p * s > c_budget:  # (and so is every column after)
                    far = max(far, BUDGET)
                    break
                far = OPEN
                if n_ok == 0:
                    first_ok = j
                n_ok += 1
                byte |= 0x80 >> (j & 7)
                c = col_class[j]
                if p < row_min[c]:
                    row_min[c] = p
        if m:
            bits[r, byte_at] = byte
        for c in range(n_classes):
            if row_min[c] != NONE:  # (a price that high blocks nothing real: kept below NO_PRICE)
                class_min[r, c] = min(row_min[c], NO_PRICE - 1)
        stage[r], count[r], first[r], nearest[r] = far, n_ok, first_ok, near_at
        if far == PRICE:
            cheapest[r] = near_price
        elif far == BUDGET:
            cheapest[r] = free_price
    return stage, count, first, class_min, nearest, cheapest


def warm_up() -> None:
    """Compile (or load from numba's cache) :func:`rules_matrix`."""
    one, zero, f = np.ones(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.ones(1)
    pairs = (one, f, one, zero, one, one, one, one)  # size … budget
    columns = (one, one, zero, one, one, one, one)  # price … room
    rules_matrix(np.zeros((1, 1), dtype=np.uint8), *pairs, np.ones((1, 1)), *columns, zero, 1)
